// The parts of HTTP caching (RFC 9110, RFC 9111) the response cache needs: what is stored, validators, Vary.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1), headers that describe this delivery rather than the response, and ours:
 * never stored. Headers named in the response's `Connection` header are hop-by-hop too (see `storedHeaderFilter`).
 */
const neverStored = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'x-cache',
]);

/** The tokens of a `Connection` header value (lower case). */
function connectionTokens(value: OutgoingHttpHeaders[string]): string[] {
  if (value === undefined) return [];
  const text = Array.isArray(value) ? value.join(',') : String(value);
  return text
    .split(',')
    .map((token) => token.trim().toLowerCase())
    .filter((token) => token !== '');
}

/** Whether a header of this response may be stored: not hop-by-hop, and not named in its `Connection` header. */
export function storedHeaderFilter(connection: OutgoingHttpHeaders[string]): (name: string) => boolean {
  const listed = connectionTokens(connection);
  return (name) => {
    const lower = name.toLowerCase();
    return !neverStored.has(lower) && !listed.includes(lower);
  };
}

/** Response headers as stored: `[name, value]` lines in the order sent, repeats as separate lines. */
export type HeaderLines = readonly [string, string][];

/** Whether header name `key` (any case) is `name` (lower case): compared by length first, lower-cased only then. */
const isNamed = (key: string, name: string) =>
  key === name || (key.length === name.length && key.toLowerCase() === name);

/** The first value of header `name` (lower case) among `headers`, or `undefined`. */
export function firstHeader(headers: HeaderLines, name: string): string | undefined {
  for (const [key, value] of headers) if (isNamed(key, name)) return value;
  return undefined;
}

/** Every line of header `name` (lower case) among `headers`, in order. */
export function headerLines(headers: HeaderLines, name: string): string[] {
  const found: string[] = [];
  for (const [key, value] of headers) if (isNamed(key, name)) found.push(value);
  return found;
}

/** Response headers as `[name, value]` lines (a list value as one line per item). */
export function headerPairs(headers: OutgoingHttpHeaders): [string, string][] {
  const pairs: [string, string][] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) pairs.push([name, item]);
    else pairs.push([name, String(value)]);
  }
  return pairs;
}

/**
 * Whether an `Accept-Encoding` names any content coding besides identity (RFC 9110 §12.5.3), whatever its weight:
 * middleware in front parses weights its own way, so only a client that names none is sure to get identity bytes.
 */
export function acceptsEncoding(value: string | undefined): boolean {
  if (value === undefined) return false;
  return value.split(',').some((part) => {
    const coding = part.split(';')[0].trim().toLowerCase();
    return coding !== '' && coding !== 'identity';
  });
}

/** The directives of a `Cache-Control` value (lower case names, without their arguments). */
function directives(cacheControl: string): string[] {
  return cacheControl
    .split(',')
    .map((part) => part.split('=')[0].trim().toLowerCase())
    .filter((name) => name !== '');
}

/** Cache-Control directives that forbid storing a response in a shared cache (RFC 9111 §3, §5.2.2). */
export function forbidsStoring(cacheControl: string | undefined): boolean {
  if (!cacheControl) return false;
  return directives(cacheControl).some((name) => name === 'no-store' || name === 'no-cache' || name === 'private');
}

/**
 * The request header names listed by a response's `Vary` lines (lower case, sorted, unique); `['*']` for `*`. Every
 * line counts: `res.append('Vary', …)` twice, or an array, is one list (RFC 9110 §5.3).
 */
export function varyNames(vary: string | readonly string[] | undefined): string[] {
  if (Array.isArray(vary)) vary = vary.join(',');
  if (!vary) return [];
  const names = new Set(
    (vary as string)
      .split(',')
      .map((name) => name.trim().toLowerCase())
      .filter((name) => name !== ''),
  );
  return names.has('*') ? ['*'] : [...names].sort();
}

/**
 * A request header's value as `Vary` compares it (RFC 9111 §4.1): repeated lines combined, whitespace around the
 * commas of a list dropped, `Accept-Language` without regard to case; an absent header differs from an empty one.
 */
export function varyValue(headers: IncomingHttpHeaders, name: string): string {
  const value = Object.hasOwn(headers, name) ? headers[name] : undefined;
  if (typeof value !== 'string' && !Array.isArray(value)) return '\u0000';
  // Split and trimmed piece by piece: linear in the length of the value, whatever it holds.
  const text = (Array.isArray(value) ? value.join(',') : value)
    .split(',')
    .map((item) => item.trim())
    .join(',');
  return name === 'accept-language' ? text.toLowerCase() : text;
}

/**
 * The entity-tags of an `If-None-Match` value (RFC 9110 §8.8.3 and §13.1.2): `*`, or a list of entity-tags, each
 * `"opaque"` or `W/"opaque"`, whose opaque part may itself hold commas. Returns `'*'`, or the tags as written.
 * Anything that is not an entity-tag ends the list (a malformed header matches nothing after it).
 */
export function entityTags(header: string): '*' | string[] {
  if (header.trim() === '*') return '*';
  const tags: string[] = [];
  const tag = /\s*(W\/)?"([^"]*)"\s*(?:,|$)/y;
  tag.lastIndex = 0;
  while (tag.lastIndex < header.length) {
    const start = tag.lastIndex;
    const match = tag.exec(header);
    if (!match) {
      // Skip empty list elements (`, ,`), stop at anything else.
      const comma = /\s*,/y;
      comma.lastIndex = start;
      if (!comma.exec(header)) break;
      tag.lastIndex = comma.lastIndex;
      continue;
    }
    tags.push(`${match[1] ?? ''}"${match[2]}"`);
  }
  return tags;
}

/** The opaque part of an entity-tag, for weak comparison (RFC 9110 §8.8.3.2). */
const opaque = (tag: string) => (tag.startsWith('W/') ? tag.slice(2) : tag);

/** Whether `If-None-Match` matches `etag` by weak comparison (RFC 9110 §13.1.2); `*` matches any. */
export function ifNoneMatchMatches(ifNoneMatch: string | undefined, etag: string | undefined): boolean {
  if (!ifNoneMatch || !etag) return false;
  const tags = entityTags(ifNoneMatch);
  if (tags === '*') return true;
  const target = opaque(etag.trim());
  return tags.some((tag) => opaque(tag) === target);
}

/**
 * Whether a GET for a response with these validators is answered 304 (RFC 9110 §13.1.2, §13.1.3, §13.2.2):
 * `If-None-Match` when present, else `If-Modified-Since` against `Last-Modified`.
 */
export function notModified(
  headers: IncomingHttpHeaders,
  etag: string | undefined,
  lastModified: string | undefined,
): boolean {
  const ifNoneMatch = headers['if-none-match'];
  if (ifNoneMatch !== undefined) return ifNoneMatchMatches(ifNoneMatch, etag);
  const ifModifiedSince = headers['if-modified-since'];
  if (ifModifiedSince === undefined || lastModified === undefined) return false;
  const since = Date.parse(ifModifiedSince);
  const modified = Date.parse(lastModified);
  return !Number.isNaN(since) && !Number.isNaN(modified) && modified <= since;
}

/** Request headers that would let the handler answer 304 instead of producing the full response. */
export const conditionalRequestHeaders = ['if-none-match', 'if-modified-since'] as const;

/** What a 304 keeps of the full response's headers (RFC 9110 §15.4.5): validators and metadata, no content headers. */
export const droppedBy304 = new Set(['content-length', 'content-type', 'content-encoding', 'content-range']);

/** Statuses whose responses never have a body, nor a `Content-Length` that would claim one (RFC 9110 §6.4.1). */
export function hasNoBody(status: number): boolean {
  return status === 204 || status === 304 || (status >= 100 && status < 200);
}

/**
 * Methods defined as safe (RFC 9110 §9.2.1, and WebDAV's read-only ones): any other method that succeeds
 * invalidates what is stored for its URL (RFC 9111 §4.4), a method of an extension included (PURGE, M-SEARCH, …).
 */
export const safeMethods = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'REPORT', 'SEARCH', 'QUERY']);
