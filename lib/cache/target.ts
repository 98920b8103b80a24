// Where a request was sent, as the cache keys and invalidates it: origins validated as RFC 3986 has them (anything
// else is not cached at all), the query in one canonical order, and the URL in the form invalidation compares.
import { isIPv6 } from 'node:net';
import type { Request } from 'express';
import type { Target } from './keys.js';

/** RFC 3986 §3.2.2: `reg-name = *( unreserved / pct-encoded / sub-delims )`; IPv4 addresses are of this form too. */
const regName = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$/;
/** RFC 3986 §3.2.2: `IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`. */
const ipFuture = /^v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+$/;
const digits = /^[0-9]*$/;
/** The longest host a name can be (RFC 1035's 255 octets; RFC 3986 sets none, and a key needs no longer one). */
const maxHostLength = 255;

/**
 * `host [":" port]` (RFC 3986 §3.2.2–3: a reg-name, an IPv4 address or an IP-literal, and a port of digits), the
 * host at most 255 characters and lower-cased, the port without leading zeros and at most 65535 (`''` when none).
 * `undefined` for anything else: a user part, a path, a query, spaces, a stray `%`, an unclosed or invalid literal.
 */
export function parseAuthority(value: string): { host: string; port: string } | undefined {
  let host: string;
  let port: string;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close === -1) return undefined;
    const literal = value.slice(1, close);
    if (!isIPv6(literal) && !ipFuture.test(literal)) return undefined;
    host = value.slice(0, close + 1);
    const rest = value.slice(close + 1);
    if (rest !== '' && rest[0] !== ':') return undefined;
    port = rest.slice(1);
  } else {
    const colon = value.lastIndexOf(':');
    host = colon === -1 ? value : value.slice(0, colon);
    port = colon === -1 ? '' : value.slice(colon + 1);
    if (host.length > maxHostLength || !regName.test(host)) return undefined;
  }
  if (host.length > maxHostLength || port.length > 5 || !digits.test(port)) return undefined;
  if (port !== '') {
    const number = Number(port);
    if (number > 65_535) return undefined;
    port = String(number);
  }
  return { host: host.toLowerCase(), port };
}

/** The host a request names: a trusted proxy's X-Forwarded-Host (its first value), else Host (as Express has it). */
function namedHost(req: Request): string | undefined {
  const forwarded = req.headers['x-forwarded-host'];
  if (forwarded === undefined) return req.headers.host;
  const trust = req.app?.get('trust proxy fn') as ((address: string | undefined, hop: number) => boolean) | undefined;
  if (typeof forwarded === 'string' && trust?.(req.socket?.remoteAddress, 0)) {
    const comma = forwarded.indexOf(',');
    return (comma === -1 ? forwarded : forwarded.slice(0, comma)).trim();
  }
  return req.headers.host;
}

/**
 * The port as a key holds it: `''` when it is the scheme's default or the one the server listens on
 * (`Host: shop.example:8080` on a server listening on 8080 is `shop.example`, the same site).
 */
function keyedPort(scheme: string, port: string, localPort: number | undefined): string {
  if (port === '' || port === String(localPort)) return '';
  if ((scheme === 'http' && port === '80') || (scheme === 'https' && port === '443')) return '';
  return port;
}

/** The path and canonical query of a URL's path-and-query part (`/a?b=1`). */
function splitPathAndQuery(url: string): { path: string; query: string } {
  const start = url.indexOf('?');
  if (start === -1) return { path: url, query: '' };
  return { path: url.slice(0, start), query: canonicalQuery(url.slice(start + 1)) };
}

/**
 * Where `req` was sent, as its scheme (`req.protocol`, so `trust proxy` decides whether X-Forwarded-Proto counts),
 * validated host and port (see {@link parseAuthority}), path and canonical query; `undefined` when it is not a
 * request the cache may key: another scheme, a host that is not `host[:port]`, a target not in origin form.
 */
export function requestTarget(req: Request): Target | undefined {
  const scheme = String(req.protocol).toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') return undefined;
  const named = namedHost(req);
  const authority = named === undefined ? undefined : parseAuthority(named);
  if (!authority) return undefined;
  const url = req.originalUrl ?? req.url;
  if (!url.startsWith('/')) return undefined;
  const { path, query } = splitPathAndQuery(url);
  return { scheme, host: authority.host, port: keyedPort(scheme, authority.port, req.socket?.localPort), path, query };
}

/**
 * A URL's target the way {@link requestTarget} gives a request's, for comparing a `Location` with the request that
 * sent it: `undefined` when it is not an http(s) URL with a valid authority.
 */
export function urlTarget(url: URL, req: Request): Target | undefined {
  const scheme = url.protocol.slice(0, -1);
  if (scheme !== 'http' && scheme !== 'https') return undefined;
  const authority = parseAuthority(url.host);
  if (!authority) return undefined;
  const port = keyedPort(scheme, authority.port, req.socket?.localPort);
  return { scheme, host: authority.host, port, path: url.pathname, query: canonicalQuery(url.search.slice(1)) };
}

/** A parameter name no query parser reads as anything but itself (no escape, bracket, dot or plus). */
const plainName = /^[A-Za-z0-9_~-]+$/;

/**
 * A query in one canonical form, without decoding anything (its bytes are what a handler or an upstream gets): its
 * parameters sorted by name when that changes nothing a handler can see — every name plain and none repeated —
 * and as sent otherwise (`?id=3&id=1` is not `?id=1&id=3`; `id[]=6&id=1` is not `id=1&id[]=6` to qs; `%FF` is not
 * `%FE`). `''` for none.
 */
export function canonicalQuery(query: string): string {
  if (query === '') return '';
  const pairs = query.split('&');
  const names = pairs.map((pair) => {
    const equals = pair.indexOf('=');
    return equals === -1 ? pair : pair.slice(0, equals);
  });
  if (!names.every((name) => plainName.test(name)) || new Set(names).size !== names.length) return query;
  const order = names.map((_, i) => i).sort((a, b) => (names[a] < names[b] ? -1 : names[a] > names[b] ? 1 : 0));
  return order.map((i) => pairs[i]).join('&');
}

const unreserved = /^[A-Za-z0-9\-._~]$/;

/**
 * A path and canonical query in the form invalidation compares: every spelling Express may route to one handler
 * is one URL here. Percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2), the path is lower-cased
 * and loses its trailing slashes (Express routes without regard to case or a trailing slash unless `case sensitive
 * routing` or `strict routing` are on; a router may have its own, so the loosest reading is taken: a write then
 * invalidates a few more spellings than it must, never fewer).
 */
export function invalidationUrl(path: string, query: string): string {
  let normal = path.replace(/%([0-9A-Fa-f]{2})/g, (encoded, hex: string) => {
    const char = String.fromCharCode(Number.parseInt(hex, 16));
    return unreserved.test(char) ? char : encoded;
  });
  normal = normal.toLowerCase();
  let end = normal.length;
  while (end > 1 && normal[end - 1] === '/') end--;
  normal = normal.slice(0, end);
  return query === '' ? normal : `${normal}?${query}`;
}

/**
 * {@link invalidationUrl} of a path-and-query string (`/users/1?b=2&a=1`), or of an absolute URL's (a request
 * target in absolute form, which Express routes by its path).
 */
export function invalidationUrlOf(url: string): string {
  let pathAndQuery = url;
  if (!url.startsWith('/')) {
    try {
      const parsed = new URL(url);
      pathAndQuery = `${parsed.pathname}${parsed.search}`;
    } catch {
      // Not a URL: compared as it is.
    }
  }
  const { path, query } = splitPathAndQuery(pathAndQuery);
  return invalidationUrl(path, query);
}
