// What the response cache tells `onEvent`: how each request was answered, and what was invalidated — never a key, a
// query string or a header value a request supplied (keys are hashed, URLs reported without their query).
import type { Request } from 'express';
import { isBackground } from '../http/marks.js';
import type { Lookup } from './context.js';
import { hashForEvents, type RouteContext, routeOf } from './context.js';
import type { Tag } from './keys.js';

/** Reports how a client's request was answered (background refreshes are not client requests). */
export function reportLookup(
  ctx: RouteContext,
  req: Request,
  lookup: Lookup,
  type: 'cache.hit' | 'cache.stale' | 'cache.miss',
  size?: number,
): void {
  if (!ctx.emit || isBackground(req)) return;
  ctx.emit({ type, route: lookup.route, path: lookup.path, key: lookup.eventKey, durationMs: lookup.redisMs, size });
}

/** Reports a request the cache let through without looking. */
export function reportBypass(
  ctx: RouteContext,
  req: Request,
  reason: 'method' | 'authorization' | 'redis-error' | 'origin',
): void {
  if (!ctx.emit) return;
  ctx.emit({
    type: 'cache.bypass',
    route: routeOf(req, ctx.middleware),
    path: `${req.baseUrl ?? ''}${req.path}`,
    reason,
  });
}

/** A tag as events show it: a URL without its query, a key as its hash, an app's tag as given. */
export function tagForEvents(tag: Tag): string {
  if (tag.kind === 'url') {
    const query = tag.url.indexOf('?');
    return `url:${query === -1 ? tag.url : tag.url.slice(0, query)}`;
  }
  if (tag.kind === 'key') return `key:${hashForEvents(tag.key)}`;
  return tag.tag;
}
