// How a stored entry may answer a request now: fresh, stale within a window the entry or the client allows, or only
// once the handler confirmed it. Pure: the times and flags kept in the entry, and the request's own Cache-Control.
import { ageOf } from './answer.js';
import type { RequestDirectives } from './directives.js';
import type { StoredResponse } from './entry.js';

/** The route's stale windows, for entries stored without `freshness: 'http'` (whose own directives decide). */
export interface StaleWindows {
  staleWhileRevalidate: number;
  staleIfError: number;
}

/**
 * What to do with an entry found for a request:
 * - `hit`: answer with it;
 * - `stale`: answer with it stale (the client's `max-stale` accepts it);
 * - `stale-refresh`: answer with it stale, and have it refreshed in the background (`staleWhileRevalidate`);
 * - `revalidate`: ask the handler, with the entry's validators.
 * `fallback`: should the handler fail, the entry may answer instead (it is fresh, or within `staleIfError`).
 */
export interface Serving {
  use: 'hit' | 'stale' | 'stale-refresh' | 'revalidate';
  fallback: boolean;
}

/** Whether `entry` may answer without asking the handler (and without the client asking for more). */
export const isFresh = (entry: StoredResponse, now: number): boolean =>
  entry.freshUntil > now && !entry.policy?.noCache;

const staleWhileRevalidateOf = (entry: StoredResponse, windows: StaleWindows) =>
  entry.policy ? entry.policy.staleWhileRevalidate : windows.staleWhileRevalidate;

/** How long past its freshness `entry` may replace a failed response (`staleIfError`). */
export const staleIfErrorOf = (entry: StoredResponse, windows: StaleWindows): number =>
  entry.policy ? entry.policy.staleIfError : windows.staleIfError;

/**
 * Whether the request's `no-cache`, `max-age` or `min-fresh` refuses `entry` unless it is validated first
 * (RFC 9111 §5.2.1).
 */
function refusedBy(asked: RequestDirectives, entry: StoredResponse, now: number): boolean {
  if (asked.noCache) return true;
  if (asked.maxAge !== undefined && ageOf(entry, now) > asked.maxAge) return true;
  return asked.minFresh !== undefined && entry.freshUntil - now < asked.minFresh * 1000;
}

/** Whether the request's `max-stale` accepts `entry`, stale as it is, and the entry allows it. */
function acceptsStale(asked: RequestDirectives | undefined, entry: StoredResponse, now: number): boolean {
  if (asked?.maxStale === undefined || entry.policy?.mustRevalidate || entry.policy?.noCache) return false;
  return now - entry.freshUntil <= asked.maxStale * 1000;
}

/** Whether `entry` may answer a request that asked for something (`requestCacheControl`) without the handler. */
export function usableFor(asked: RequestDirectives, entry: StoredResponse, now: number): boolean {
  return !refusedBy(asked, entry, now) && (isFresh(entry, now) || acceptsStale(asked, entry, now));
}

/** How `entry` answers a request now (see {@link Serving}); `asked`: the request's directives, when honoured. */
export function servingOf(
  entry: StoredResponse,
  now: number,
  asked: RequestDirectives | undefined,
  windows: StaleWindows,
): Serving {
  const staleFor = now - entry.freshUntil;
  const fallback = !entry.policy?.noCache && staleFor < staleIfErrorOf(entry, windows);
  if (asked && refusedBy(asked, entry, now)) return { use: 'revalidate', fallback };
  if (isFresh(entry, now)) return { use: 'hit', fallback };
  if (acceptsStale(asked, entry, now)) return { use: 'stale', fallback };
  if (!entry.policy?.noCache && staleFor < staleWhileRevalidateOf(entry, windows)) {
    return { use: 'stale-refresh', fallback };
  }
  return { use: 'revalidate', fallback };
}
