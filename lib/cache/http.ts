import type { IncomingHttpHeaders } from 'node:http';

/** Hop-by-hop headers (RFC 9110 §7.6.1) and headers that describe this hop's delivery: never stored. */
const notStored = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'date',
  'x-cache',
]);

export function isStoredHeader(name: string): boolean {
  return !notStored.has(name.toLowerCase());
}

/** Cache-Control directives that forbid storing a response in a shared cache. */
export function forbidsStoring(cacheControl: string | undefined): boolean {
  if (!cacheControl) return false;
  return /(?:^|,)\s*(?:no-store|no-cache|private)\s*(?:=|,|$)/i.test(cacheControl);
}

/** The request header names listed by a response `Vary` header (lower case); `['*']` for `Vary: *`. */
export function varyNames(vary: string | undefined): string[] {
  if (!vary) return [];
  return vary
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== '');
}

/** The value of a request header as one string (repeats joined), or '' when absent. */
export function requestHeader(headers: IncomingHttpHeaders, name: string): string {
  const value = headers[name];
  if (value === undefined) return '';
  return Array.isArray(value) ? value.join(', ') : value;
}

/** Weak comparison (RFC 9110 §13.1.2): `If-None-Match` lists ETags, or is `*`. */
export function ifNoneMatchMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  if (ifNoneMatch.trim() === '*') return true;
  const opaque = (tag: string) => tag.trim().replace(/^W\//, '');
  const target = opaque(etag);
  return ifNoneMatch.split(',').some((candidate) => opaque(candidate) === target);
}

/** Methods RFC 9111 §4.4 says invalidate the stored response for their URL when they succeed. */
export const unsafeMethods = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
