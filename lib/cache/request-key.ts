import type { Request } from 'express';
import { requestHeader } from './http.js';

/** The internal tag of every response stored for one path and query, whatever its origin or variant. */
export const urlTag = (path: string) => `url:${path}`;

/** A host and port, split: `[::1]:3000` → `['[::1]', '3000']`, `shop.example` → `['shop.example', '']`. */
function splitHost(host: string): [string, string] {
  const colon = host.lastIndexOf(':');
  if (colon === -1 || host.endsWith(']')) return [host, ''];
  return [host.slice(0, colon), host.slice(colon + 1)];
}

/**
 * The origin of a request as Express resolves it: `req.protocol` and the host, both honouring `trust proxy`
 * (X-Forwarded-Proto, X-Forwarded-Host from a trusted proxy), lower case. The port is part of it unless it is the
 * protocol's default or the one the server listens on (`Host: shop.example:8080` on a server listening on 8080 is
 * `shop.example`, the same site), so a request cannot poison another's entry by naming another port, while every
 * request of one site shares its entries.
 */
export function originOf(req: Request): string {
  let host: string | undefined;
  const trust = req.app.get('trust proxy fn') as ((address: string | undefined, hop: number) => boolean) | undefined;
  const forwarded = req.headers['x-forwarded-host'];
  if (forwarded !== undefined && trust?.(req.socket?.remoteAddress, 0)) {
    host = (Array.isArray(forwarded) ? forwarded[0] : forwarded).split(',')[0].trim();
  }
  host ||= requestHeader(req.headers, 'host');
  const [name, port] = splitHost(host.toLowerCase());
  return origin(req.protocol, name, port, req);
}

/** `protocol://host[:port]`, the port left out when it is implied (see {@link originOf}). */
function origin(protocol: string, name: string, port: string, req: Request): string {
  const implied =
    port === '' ||
    (protocol === 'http' && port === '80') ||
    (protocol === 'https' && port === '443') ||
    port === String(req.socket?.localPort);
  return `${protocol}://${implied ? name : `${name}:${port}`}`;
}

/** The origin of `url` in the form {@link originOf} gives a request's (for comparing the two). */
export function urlOrigin(url: URL, req: Request): string {
  return origin(url.protocol.replace(/:$/, ''), url.hostname.toLowerCase(), url.port, req);
}

/** `<path>?<query sorted by name>`: a URL in the form every key of it uses. */
export function pathKey(url: string): string {
  const queryStart = url.indexOf('?');
  const path = queryStart === -1 ? url : url.slice(0, queryStart);
  if (queryStart === -1) return path;
  // By name only, and stably: the order of a repeated parameter's values is part of what it means (`?id=3&id=1`).
  const params = [...new URLSearchParams(url.slice(queryStart + 1))].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return params.length ? `${path}?${new URLSearchParams(params).toString()}` : path;
}

/** The path a request's URL names, in {@link pathKey} form. */
export function requestPath(req: Request): string {
  return pathKey(req.originalUrl ?? req.url);
}

/**
 * The default cache key of a request: method class (GET and HEAD share), origin, canonical path and query, and the
 * values of the `vary` option's headers.
 */
export function requestKey(req: Request, varyHeaders: readonly string[] = []): string {
  let key = `GET ${originOf(req)}${requestPath(req)}`;
  for (const name of varyHeaders) key += `\n${name.toLowerCase()}: ${requestHeader(req.headers, name.toLowerCase())}`;
  return key;
}

/** The path in a key given to `cache.delete()` as a URL: `/users/1?b=2&a=1` or `GET /users/1`, or `undefined`. */
export function deletedPath(key: string): string | undefined {
  if (key.startsWith('/')) return pathKey(key);
  if (key.startsWith('GET /')) return pathKey(key.slice(4));
  return undefined;
}
