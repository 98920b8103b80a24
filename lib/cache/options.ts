import type { Request, Response } from 'express';
import { z } from 'zod';
import {
  durationMs,
  fn,
  loggerSchema,
  onEventOption,
  positiveDurationMs,
  redisSchema,
  timerDurationMs,
} from '../options.js';

/** Options of `createCache()`. */
export const cacheSchema = z.strictObject({
  /** An ioredis client; defaults to the shared `defaultRedis()`. */
  redis: redisSchema.optional(),
  /**
   * First part of every key (`cache:r:{…}`, `cache:d:<key>`, `cache:t:{…}`), used verbatim. It may hold a Redis
   * Cluster hash tag of its own (`{tenant}`: every key of the cache in one slot), but not an empty `{}`, which would
   * keep a response's variants from its slot. @default 'cache'
   */
  prefix: z
    .string()
    .min(1)
    .refine((prefix) => !prefix.includes('{}'), { message: 'expected a prefix without an empty hash tag "{}"' })
    .default('cache'),
  /** Default time to live of entries. @default '5m' */
  ttl: positiveDurationMs.default(5 * 60_000),
  /** The longest a request waits on Redis before the cache is bypassed. @default '250ms' */
  timeout: timerDurationMs.default(250),
  /** Receives warnings. @default console */
  logger: loggerSchema.optional(),
  /** Send a turn's script calls as one command (see the middlewares' `batch`). @default true */
  batch: z.boolean().default(true),
  /**
   * Bytes of response bodies kept in process memory. A HIT on a body held here still asks Redis (one round trip)
   * whether it is the stored copy, but does not transfer it again. `0` turns it off. @default 32 MB
   */
  localBytes: z
    .number()
    .int()
    .min(0)
    .default(32 * 1024 * 1024),
  /** Receives `cache.hit` / `miss` / `stale` / `bypass` / `coalesced` / `stored` / `invalidated` and `redis.error` events. */
  onEvent: onEventOption,
});

export type CreateCacheOptions = z.input<typeof cacheSchema>;

const lockSchema = z.strictObject({
  /** How long a concurrent miss waits for the first one's response before running the handler itself. */
  wait: timerDurationMs.default(3_000),
  /** Lease of the lock held while the handler runs (extended while it runs). */
  ttl: positiveDurationMs.default(10_000),
});

/** Options of `cache.response()` / `cacheResponse()`. */
export const responseSchema = z.strictObject({
  /** How long an entry is fresh. @default the cache's ttl ('5m') */
  ttl: positiveDurationMs.optional(),
  /** The cache key of a request. @default method class + path + canonical query + `vary` headers */
  key: fn<(req: Request) => string>().optional(),
  /** Request headers that are part of the key (e.g. `['accept-language']`). */
  vary: z.array(z.string().min(1)).default([]),
  /** Tags for invalidation: a list, or `(req, res) => string[]`. */
  tags: z.union([z.array(z.string().min(1)), fn<(req: Request, res: Response) => string[]>()]).optional(),
  /**
   * How freshness is decided. `'ttl'`: every storable response is fresh for `ttl` (or less if it says so).
   * `'http'`: the response's own `Cache-Control` / `CDN-Cache-Control` / `Expires` decide, as a shared cache
   * (RFC 9111); `ttl` then caps how long an entry is kept. @default 'ttl'
   */
  freshness: z.enum(['ttl', 'http']).default('ttl'),
  /**
   * Statuses that are stored. @default [200] with `freshness: 'ttl'`; with `'http'`, any final status with explicit
   * freshness, and those cacheable by default (RFC 9110 §15.1) otherwise
   */
  statuses: z.array(z.number().int().min(100).max(599)).min(1).optional(),
  /**
   * `freshness: 'http'`: the fraction of the time since `Last-Modified` a response without explicit freshness is
   * fresh for (RFC 9111 §4.2.2; 0.1 is the usual choice). @default 0 (no heuristic freshness)
   */
  heuristic: z.number().min(0).max(1).default(0),
  /** `freshness: 'http'`: obey `CDN-Cache-Control` (RFC 9213) over `Cache-Control` when a response has it. @default true */
  cdnCacheControl: z.boolean().default(true),
  /**
   * `freshness: 'http'`: honour the request's `Cache-Control` (`no-cache`, `no-store`, `max-age`, `min-fresh`,
   * `max-stale`, `only-if-cached`). Off by default, as at most CDNs: any client could otherwise send every request
   * to the handler. @default false
   */
  requestCacheControl: z.boolean().default(false),
  /** Larger bodies pass through uncached. @default 1 MB */
  maxBytes: z
    .number()
    .int()
    .positive()
    .default(1024 * 1024),
  /** Coalesce concurrent misses (one handler run); `false` to turn off. @default { wait: '3s', ttl: '10s' } */
  lock: z
    .union([z.boolean(), lockSchema])
    .default(true)
    .transform((value) => (value === false ? undefined : value === true ? { wait: 3_000, ttl: 10_000 } : value)),
  /** After the ttl, serve the stale entry this long while one request refreshes it. @default 0 */
  staleWhileRevalidate: durationMs.default(0),
  /** When the handler fails (5xx or throws), serve the last good entry up to this long after the ttl. @default 0 */
  staleIfError: durationMs.default(0),
  /** Cache requests that carry `Authorization` (only if responses do not depend on who asks). @default false */
  allowAuthorized: z.boolean().default(false),
  /**
   * Keep one entry per session (`req.sessionID`), so that responses made from session data are cached too — each
   * for its own session only. Without it, a response that read the session is never stored. @default false
   */
  perSession: z.boolean().default(false),
});

export type CacheResponseOptions = z.input<typeof responseSchema>;
export type ResponseConfig = z.output<typeof responseSchema>;

/** Options of `cache.wrap()` and `cache.set()`. */
export const valueSchema = z.strictObject({
  ttl: positiveDurationMs.optional(),
  tags: z.array(z.string().min(1)).default([]),
});

export type CacheValueOptions = z.input<typeof valueSchema>;
