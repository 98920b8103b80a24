// What the parts of the response middleware share: the route's context (its cache, options and rules), made once
// per `cache.response()`, and one request's lookup, made as the request enters the cache.
import { createHash } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import type { Emit } from '../events.js';
import type { Coalescer } from './coalesce.js';
import type { StoredResponse } from './entry.js';
import type { Tag, Target } from './keys.js';
import type { ResponseConfig } from './options.js';
import type { SharingRules } from './sharing.js';
import type { CacheStore } from './store.js';

/** One `cache.response()` middleware: its cache and its options, resolved. */
export interface RouteContext {
  readonly store: CacheStore;
  readonly coalescer: Coalescer<StoredResponse>;
  readonly config: ResponseConfig;
  readonly rules: SharingRules;
  /** Coalescing of concurrent misses, `undefined` when turned off. */
  readonly lock: { wait: number; ttl: number } | undefined;
  readonly emit: Emit | undefined;
  /**
   * Invalidates tags the way `cache.invalidateTags()` does (reporting to `onEvent`, `also.key` hashed; what Redis
   * cannot take now is held until it answers again), and deletes `also.entries`: entry keys the caller could name
   * itself (so that it reaches them even if a tag set was evicted, or on Redis Cluster its node is down).
   */
  invalidate(tags: readonly Tag[], also: { key?: string; entries?: readonly string[] }): Promise<number>;
  /** The middleware itself, once made: tells whether a matched route is this cache's (see `routeOf`). */
  middleware?: RequestHandler;
}

/** One request's way through the cache: where its entry lives, whose it is, and what the response had at entry. */
export interface Lookup {
  /** The key of the entry (or of its URL's variants). */
  base: string;
  /** Where the request was sent (see `familyOf`: the tags its entries have). */
  target: Target;
  /** The route's `key` for it, when the route has one. */
  key: string | undefined;
  /** Entries are kept per session here (`perSession`, with a session middleware in front). */
  perSession: boolean;
  /** The stored session the request came with: its id, `''` for none, `undefined` without a session middleware. */
  cameWith: string | undefined;
  /** The headers on the response when the cache was entered (outer middleware's): never stored. */
  snapshot: Map<string, string>;
  /** Redis's clock when the lookup read (µs): what it produces is dated from then (see `CacheStore.store`). */
  since?: string;
  /** How long the lookup waited on Redis, in ms. This and the event fields are set only with an `onEvent` hook. */
  redisMs: number;
  /** The events' `route`, `path` and `key` (see `CacheEventBase`), fixed as the cache is entered. */
  route: string;
  path: string;
  eventKey: string;
}

/** A short hash of a key, for events and logs: they never carry a key, which may hold what a request sent. */
export const hashForEvents = (text: string): string =>
  createHash('sha256').update(text).digest('base64url').slice(0, 16);

/**
 * The route of an event, read as the cache is entered (later, the handler's route has been matched): the route's
 * pattern when the cache is on one (`/users/:id`), else where it is mounted, followed by `*`.
 */
export function routeOf(req: Request, middleware: RequestHandler | undefined): string {
  // `req.route` is still set after an earlier route passed the request on: it counts only if this is its cache.
  const route = req.route as { path?: unknown; stack?: { handle?: unknown }[] } | undefined;
  const ours = route?.stack?.some((layer) => layer.handle === middleware) === true;
  const pattern = ours ? route?.path : undefined;
  return `${req.baseUrl ?? ''}${pattern === undefined ? '/*' : String(pattern)}`;
}
