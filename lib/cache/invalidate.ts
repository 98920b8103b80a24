// A successful unsafe request invalidates what is stored for what it changed (RFC 9111 §4.4): its URL, the
// same-origin `Location` and `Content-Location` of its response, and — on a route with a `key` — its key.
import type { Request, Response } from 'express';
import { holdEnd } from '../http/response.js';
import type { RouteContext } from './context.js';
import type { Tag, Target } from './keys.js';
import { entryOf, type RequestEntry } from './lookup.js';
import { invalidationUrl, invalidationUrlOf, requestTarget, urlTarget } from './target.js';

/** The URLs a response's `Location` and `Content-Location` name on the request's own origin. */
function namedUrls(req: Request, res: Response): string[] {
  const origin = requestTarget(req);
  if (!origin) return [];
  const port = origin.port === '' ? '' : `:${origin.port}`;
  const base = `${origin.scheme}://${origin.host}${port}${origin.path}`;
  const urls: string[] = [];
  for (const name of ['location', 'content-location']) {
    const value = res.getHeader(name);
    if (value === undefined) continue;
    let target: Target | undefined;
    try {
      target = urlTarget(new URL(String(value), base), req);
    } catch {
      continue; // not a URL: nothing to invalidate
    }
    if (target && target.scheme === origin.scheme && target.host === origin.host && target.port === origin.port) {
      urls.push(invalidationUrl(target.path, target.query));
    }
  }
  return urls;
}

/**
 * Holds the end of an unsafe request's response until what it changed is invalidated, so that a client that reads
 * right after its own write never gets the old copy. A route `key` that throws is reported, and the URL is
 * invalidated all the same (every entry is tagged with its URL too). The response is never turned into an error: an
 * invalidation Redis cannot take now (down, slow, or on Redis Cluster a tag set's node down) is held in the process
 * and applied before it reads from Redis again, and the request's own entry is deleted by its key meanwhile.
 */
export function invalidateOnSuccess(ctx: RouteContext, req: Request, res: Response): void {
  holdEnd(res, (proceed) => {
    if (res.statusCode >= 400) return proceed();
    const tags: Tag[] = [{ kind: 'url', url: invalidationUrlOf(req.originalUrl ?? req.url) }];
    for (const url of namedUrls(req, res)) tags.push({ kind: 'url', url });
    // The request's own entry (its key, or a GET of its URL), named directly as well as through its tags.
    let entry: RequestEntry | undefined;
    try {
      entry = entryOf(ctx, req);
    } catch (error) {
      ctx.store.logger.error(
        `redisware cache: the 'key' function failed on ${req.method} (its URL is invalidated all the same): ${(error as Error).message}`,
      );
    }
    const key = entry?.key;
    if (key !== undefined) tags.push({ kind: 'key', key });
    const also = { key, entries: entry ? [entry.base] : [] };
    ctx.invalidate(tags, also).then(
      () => proceed(),
      () => proceed(), // refused by Redis: reported by `invalidate`
    );
  });
}
