// `freshness: 'http'`: whether and how a response is stored, following RFC 9111 for a shared cache (and RFC 9213's
// CDN-Cache-Control, RFC 5861's stale-while-revalidate / stale-if-error). Decided once, when the response is
// stored; a HIT only compares the times and flags kept in the entry.
import {
  type Directives,
  deltaSeconds,
  parseAge,
  parseCacheControl,
  parseHttpDate,
  parseTargetedCacheControl,
  qualifiedFields,
} from './directives.js';
import { type HeaderLines, headerLines } from './http.js';

/** What a HIT needs to know of a stored response's directives (kept in the entry, compactly). */
export interface EntryPolicy {
  /** `no-cache`: stored, but revalidated with the handler before every use (RFC 9111 §5.2.2.4). */
  noCache?: boolean;
  /** `must-revalidate`, `proxy-revalidate` or `s-maxage`: never served stale (§4.2.4, §5.2.2.2, §5.2.2.8). */
  mustRevalidate?: boolean;
  /** How long past its freshness it may be served while refreshed in the background (ms). */
  staleWhileRevalidate: number;
  /** How long past its freshness it may be served when the handler fails (ms). */
  staleIfError: number;
  /** It may answer requests that carry `Authorization` (§3.5: `public`, `s-maxage` or `must-revalidate`). */
  shareAuthorized?: boolean;
}

/** A response that may be stored, and how. */
export interface HttpStorage {
  policy: EntryPolicy;
  /** Until when it is fresh (ms since the epoch); at most the cache's `ttl` from now. */
  freshUntil: number;
  /** Its age as it is stored, in seconds (§4.2.3's corrected initial age). */
  initialAge: number;
  /** Header names not to store (`private="…"`, `no-cache="…"`), lower case. */
  strip: string[];
  /** It has a validator the handler can be asked about (ETag or Last-Modified). */
  validator: boolean;
  /** When the response came (ms): its age is `initialAge` then. */
  responseTime: number;
}

/** What the policy needs to know about how the response was obtained. */
export interface ResponseFacts {
  status: number;
  /** The handler's headers, `[name, value]` in order, repeats as separate lines. */
  headers: HeaderLines;
  /** The request carried `Authorization`. */
  authorized: boolean;
  /** When the handler was asked (ms): §4.2.3's request_time. */
  requestTime: number;
  /** When its response came (ms): §4.2.3's response_time. */
  responseTime: number;
}

/** The options of `cache.response()` the policy uses. */
export interface PolicyOptions {
  ttlMs: number;
  /** Fraction of the time since Last-Modified used as a heuristic lifetime (§4.2.2); 0 for none. */
  heuristic: number;
  cdnCacheControl: boolean;
  /** The route's own windows, used when the response states none. */
  staleWhileRevalidate: number;
  staleIfError: number;
  /** Statuses the route allows (`statuses`), when given. */
  statuses?: ReadonlySet<number>;
}

/** Statuses a cache may give a heuristic lifetime (RFC 9110 §15.1). */
const heuristicallyCacheable = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501]);

/** Status codes whose caching semantics this cache implements (those RFC 9110 defines): for `must-understand`. */
const understood = new Set([
  200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409,
  410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426, 500, 501, 502, 503, 504, 505,
]);

/** The directives that decide: CDN-Cache-Control when present and valid (RFC 9213 §2.1), else Cache-Control. */
function governingDirectives(
  headers: HeaderLines,
  cdnCacheControl: boolean,
): { directives: Directives; targeted: boolean } {
  if (cdnCacheControl) {
    const targeted = headerLines(headers, 'cdn-cache-control');
    if (targeted.length) {
      const directives = parseTargetedCacheControl(targeted);
      if (directives) return { directives, targeted: true };
    }
  }
  return { directives: parseCacheControl(headerLines(headers, 'cache-control')), targeted: false };
}

/**
 * The freshness lifetime in seconds (RFC 9111 §4.2.1): `s-maxage`, else `max-age`, else `Expires` minus `Date`
 * (only without a targeted field), else a heuristic; `undefined` when nothing gives one. A directive or `Expires`
 * that is present but invalid gives 0 (stale).
 */
function lifetimeOf(
  facts: ResponseFacts,
  directives: Directives,
  targeted: boolean,
  options: PolicyOptions,
): number | undefined {
  for (const name of ['s-maxage', 'max-age']) {
    if (directives.has(name)) return deltaSeconds(directives.get(name)) ?? 0;
  }
  const date = parseHttpDate(headerLines(facts.headers, 'date')[0]) ?? facts.responseTime;
  if (!targeted) {
    const expires = headerLines(facts.headers, 'expires');
    if (expires.length) {
      const expiresAt = expires.length === 1 ? parseHttpDate(expires[0]) : undefined;
      return expiresAt === undefined ? 0 : Math.max(0, (expiresAt - date) / 1000);
    }
  }
  if (options.heuristic > 0 && (heuristicallyCacheable.has(facts.status) || directives.has('public'))) {
    const lastModified = parseHttpDate(headerLines(facts.headers, 'last-modified')[0]);
    if (lastModified !== undefined && lastModified < date) return ((date - lastModified) / 1000) * options.heuristic;
  }
  return undefined;
}

/**
 * The age of the response as it is stored, in seconds (RFC 9111 §4.2.3): the larger of the time since its `Date`
 * and its `Age` plus the time the handler took.
 */
export function correctedInitialAge(facts: ResponseFacts): number {
  const date = parseHttpDate(headerLines(facts.headers, 'date')[0]);
  const apparentAge = date === undefined ? 0 : Math.max(0, (facts.responseTime - date) / 1000);
  const responseDelay = Math.max(0, (facts.responseTime - facts.requestTime) / 1000);
  const correctedAgeValue = (parseAge(headerLines(facts.headers, 'age')) ?? 0) + responseDelay;
  return Math.max(apparentAge, correctedAgeValue);
}

/**
 * Whether and how a final response may be stored by a shared cache (RFC 9111 §3), or `undefined` when it must
 * not be: `no-store` (unless `must-understand` and a status this cache implements), `private`, a request with
 * `Authorization` without a directive that shares it, a partial response, or nothing that makes storing it worth
 * anything (no freshness, no validator, no stale window).
 */
export function httpStorage(facts: ResponseFacts, options: PolicyOptions): HttpStorage | undefined {
  const { status } = facts;
  if (status < 200 || status === 206 || status === 304 || status > 599) return undefined;
  if (options.statuses && !options.statuses.has(status)) return undefined;
  const { directives, targeted } = governingDirectives(facts.headers, options.cdnCacheControl);
  if (directives.has('must-understand')) {
    if (!understood.has(status)) return undefined;
  } else if (directives.has('no-store')) {
    return undefined;
  }
  const strip: string[] = [];
  if (directives.has('private')) {
    const fields = qualifiedFields(directives.get('private'));
    if (!fields) return undefined;
    strip.push(...fields);
  }
  const noCacheFields = directives.has('no-cache') ? qualifiedFields(directives.get('no-cache')) : undefined;
  if (noCacheFields) strip.push(...noCacheFields);
  const noCache = directives.has('no-cache') && !noCacheFields;
  const mustRevalidate =
    directives.has('must-revalidate') || directives.has('proxy-revalidate') || directives.has('s-maxage');
  const shareAuthorized = directives.has('public') || directives.has('s-maxage') || directives.has('must-revalidate');
  if (facts.authorized && !shareAuthorized) return undefined;

  const stated = lifetimeOf(facts, directives, targeted, options);
  // Without a stated lifetime, only statuses cacheable by default (or `public`) are stored, to be revalidated.
  if (stated === undefined && !heuristicallyCacheable.has(status) && !directives.has('public')) return undefined;
  const lifetime = stated ?? 0;
  const initialAge = correctedInitialAge(facts);
  const stale = (name: string, route: number) =>
    noCache || mustRevalidate ? 0 : directives.has(name) ? (deltaSeconds(directives.get(name)) ?? 0) * 1000 : route;
  const policy: EntryPolicy = {
    staleWhileRevalidate: stale('stale-while-revalidate', options.staleWhileRevalidate),
    staleIfError: stale('stale-if-error', options.staleIfError),
  };
  if (noCache) policy.noCache = true;
  if (mustRevalidate) policy.mustRevalidate = true;
  if (shareAuthorized) policy.shareAuthorized = true;
  const validator =
    headerLines(facts.headers, 'etag').length > 0 ||
    parseHttpDate(headerLines(facts.headers, 'last-modified')[0]) !== undefined;
  const freshUntil = Math.min(facts.responseTime + (lifetime - initialAge) * 1000, facts.responseTime + options.ttlMs);
  const usableFor = noCache ? 0 : freshUntil - facts.responseTime;
  if (usableFor <= 0 && !validator && policy.staleWhileRevalidate === 0 && policy.staleIfError === 0) return undefined;
  return { policy, freshUntil, initialAge, strip, validator, responseTime: facts.responseTime };
}

/** How long a stored entry is worth keeping (ms): while it can be served, revalidated, or served stale. */
export function keepFor(storage: HttpStorage, now: number, ttlMs: number): number {
  if (storage.validator) return ttlMs;
  const windows = Math.max(storage.policy.staleWhileRevalidate, storage.policy.staleIfError);
  return Math.ceil(Math.max(1000, Math.min(ttlMs, storage.freshUntil - now + windows)));
}
