import type { Request } from 'express';
import { requestHeader } from './http.js';

/** The internal tag grouping every `vary` variant of one URL, so an unsafe request can invalidate them all. */
export const urlTag = (url: string) => `url:${url}`;

/** Canonical cache key of a request: method class, path, query parameters sorted by name then value. */
export function canonicalRequestKey(req: Request, varyHeaders: readonly string[] = []): string {
  let key = canonicalUrlKey(req.originalUrl ?? req.url);
  for (const name of varyHeaders) key += `\n${name.toLowerCase()}: ${requestHeader(req.headers, name.toLowerCase())}`;
  return key;
}

/** `GET <path>?<query sorted by name, then value>`: the key of a URL's entry (without `vary` headers). */
export function canonicalUrlKey(url: string): string {
  const queryStart = url.indexOf('?');
  const path = queryStart === -1 ? url : url.slice(0, queryStart);
  let key = `GET ${path}`;
  if (queryStart !== -1) {
    const params = [...new URLSearchParams(url.slice(queryStart + 1))].sort(([a, x], [b, y]) =>
      a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0,
    );
    if (params.length) key += `?${new URLSearchParams(params).toString()}`;
  }
  return key;
}
