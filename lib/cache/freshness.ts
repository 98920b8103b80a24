// How long a response may be served without asking its handler again (RFC 9111 §4.2): at most the cache's `ttl`,
// and never longer than the response itself says.

import { parseCacheControl, deltaSeconds as strictDeltaSeconds } from './directives.js';
import { firstHeader, type HeaderLines, headerLines } from './http.js';

/** A delta-seconds value (RFC 9111 §1.2.2), tolerating spaces around it; `undefined` when malformed or absent. */
function deltaSeconds(argument: string | true | undefined): number | undefined {
  return typeof argument === 'string' ? strictDeltaSeconds(argument.trim()) : undefined;
}

/**
 * The freshness lifetime the response states for a shared cache, in seconds: `s-maxage`, else `max-age`, else
 * `Expires` less `Date` (an invalid `Expires` means already expired). `undefined` when it states none: the cache's
 * `ttl` alone then decides.
 */
export function statedLifetime(headers: HeaderLines): number | undefined {
  const cacheControl = headerLines(headers, 'cache-control');
  if (cacheControl.length) {
    const directives = parseCacheControl(cacheControl);
    for (const directive of ['s-maxage', 'max-age']) {
      const seconds = deltaSeconds(directives.get(directive));
      if (seconds !== undefined) return seconds;
    }
  }
  const expires = firstHeader(headers, 'expires');
  if (expires === undefined) return undefined;
  const expiresAt = Date.parse(expires);
  if (Number.isNaN(expiresAt)) return 0;
  const date = Date.parse(firstHeader(headers, 'date') ?? '');
  return Math.max(0, (expiresAt - (Number.isNaN(date) ? Date.now() : date)) / 1000);
}

/**
 * How old the response already is as it is stored, in seconds (RFC 9111 §4.2.3): its `Age` (the first value; a
 * malformed one is ignored), or the time since its `Date`, whichever is larger.
 */
export function initialAge(headers: HeaderLines, now: number): number {
  const age = deltaSeconds(firstHeader(headers, 'age')?.split(',')[0]) ?? 0;
  const date = Date.parse(firstHeader(headers, 'date') ?? '');
  const apparent = Number.isNaN(date) ? 0 : Math.max(0, Math.floor((now - date) / 1000));
  return Math.max(age, apparent);
}

/** Until when (ms since the epoch) a response stored `now` is fresh: `ttlMs` from now, or less if it says so. */
export function freshUntil(headers: HeaderLines, now: number, ttlMs: number): number {
  const lifetime = statedLifetime(headers);
  if (lifetime === undefined) return now + ttlMs;
  return now + Math.min(ttlMs, (lifetime - initialAge(headers, now)) * 1000);
}
