// Where a request's entry lives: the name of its entry (its target or the app's key, its audience, the `vary`
// headers), the tags it is found by, and — as the request enters the cache — its lookup.
import type { Request, Response } from 'express';
import { markPersonal } from '../http/marks.js';
import { sessionIdOf } from '../http/session-view.js';
import { headerSnapshot } from './capture.js';
import { hashForEvents, type Lookup, type RouteContext, routeOf } from './context.js';
import { varyValue } from './http.js';
import type { Audience, Tag, Target } from './keys.js';
import { invalidationUrl, requestTarget } from './target.js';

/** The entry a request is answered from and stored as. */
export interface RequestEntry {
  /** Its key (or the key of its URL's variants). */
  base: string;
  /** Where the request was sent. */
  target: Target;
  /** The route's `key` for it, when the route has one. */
  key: string | undefined;
  /** The stored session the request came with, with `perSession`: its id, `''` for none; else `undefined`. */
  cameWith: string | undefined;
}

/**
 * The tags every entry of a request has: its URL's, and its key's when the route has a `key` (computed only when
 * an entry is stored or invalidated, never on a HIT).
 */
export function familyOf(entry: { target: Target; key: string | undefined }): Tag[] {
  const family: Tag[] = [{ kind: 'url', url: invalidationUrl(entry.target.path, entry.target.query) }];
  if (entry.key !== undefined) family.push({ kind: 'key', key: entry.key });
  return family;
}

/**
 * The entry of `req` (see {@link RequestEntry}), or `undefined` when the request cannot be keyed: its origin is not
 * `host[:port]`, or its target not in origin form. Throws a `TypeError` when the route's `key` returns no string.
 */
export function entryOf(ctx: RouteContext, req: Request): RequestEntry | undefined {
  const { config, store } = ctx;
  const target = requestTarget(req);
  if (!target) return undefined;
  let key: string | undefined;
  if (config.key) {
    key = config.key(req);
    if (typeof key !== 'string' || key === '') {
      throw new TypeError(`cache.response: the 'key' function returned ${String(key)} (expected a non-empty string)`);
    }
  }
  // With `perSession`, one entry per stored session, and one for every client without one (a new session is
  // nobody's yet). With no session middleware in front, there is no session to key by.
  const cameWith = config.perSession ? sessionIdOf(req) : undefined;
  const audience: Audience =
    cameWith === undefined
      ? { kind: 'shared' }
      : cameWith === ''
        ? { kind: 'anonymous' }
        : { kind: 'session', id: cameWith };
  const vary = config.vary.map((name) => {
    const lower = name.toLowerCase();
    return [lower, varyValue(req.headers, lower)] as const;
  });
  const base = store.keys.response({ request: key === undefined ? { target } : { key }, audience, vary });
  return { base, target, key, cameWith };
}

/** The lookup of a request as it enters the cache (see {@link Lookup}), or `undefined` when it cannot be keyed. */
export function lookupOf(ctx: RouteContext, req: Request, res: Response): Lookup | undefined {
  const entry = entryOf(ctx, req);
  if (!entry) return undefined;
  const { base, target, key, cameWith } = entry;
  // Whatever answers a request keyed by its session is that session's own: a cache in front of this one (an
  // app-wide one, say) must never store it for anyone else.
  if (cameWith !== undefined) markPersonal(req);
  const { emit } = ctx;
  return {
    base,
    target,
    key,
    perSession: cameWith !== undefined,
    cameWith,
    snapshot: headerSnapshot(res),
    redisMs: 0,
    route: emit ? routeOf(req, ctx.middleware) : '',
    path: emit ? `${req.baseUrl ?? ''}${req.path}` : '',
    eventKey: emit ? hashForEvents(base) : '',
  };
}
