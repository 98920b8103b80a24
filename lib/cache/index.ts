import type { RequestHandler } from 'express';
import { nameArgument } from '../keys.js';
import { tryLock } from '../lock/index.js';
import { parseOptions } from '../options.js';
import { pause } from '../pause.js';
import {
  type CacheResponseOptions,
  type CacheValueOptions,
  type CreateCacheOptions,
  cacheSchema,
  responseSchema,
  valueSchema,
} from './options.js';

import { canonicalUrlKey } from './request-key.js';
import { createResponseMiddleware } from './response.js';
import { createCacheStore } from './store.js';

export type { CacheResponseOptions, CacheValueOptions, CreateCacheOptions } from './options.js';

/** A Redis-backed cache: the response middleware, cache-aside for JSON values, and invalidation. */
export interface Cache {
  /** Middleware caching the responses of a route. */
  response(options?: CacheResponseOptions): RequestHandler;
  /** Cache-aside: the cached value of `key`, or `loader()`'s result stored with `ttl` and `tags`. */
  wrap<T>(key: string, loader: () => T | Promise<T>, options?: CacheValueOptions): Promise<T>;
  /** The cached JSON value of `key`, or `undefined`. */
  get<T = unknown>(key: string): Promise<T | undefined>;
  /** Stores a JSON value. */
  set(key: string, value: unknown, options?: CacheValueOptions): Promise<void>;
  /** Deletes the entry at `key` (a value, or a response under that cache key). */
  delete(key: string): Promise<void>;
  /** Deletes every entry stored with any of `tags`. Resolves to how many entries were deleted. */
  invalidateTags(...tags: string[]): Promise<number>;
}

/** `value` as JSON, or a `TypeError` saying why it cannot be stored (undefined, a function, a BigInt, a cycle). */
function storableJson(value: unknown, what: string): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new TypeError(`${what} cannot be stored as JSON: ${(error as Error).message}`);
  }
  if (json === undefined) throw new TypeError(`${what} cannot be stored as JSON (it is ${typeof value})`);
  return json;
}

/** Creates a cache on `redis` (default: the shared client) under `prefix` (default `cache`). */
export function createCache(options?: CreateCacheOptions): Cache {
  const config = parseOptions('createCache', cacheSchema, options);
  const storage = createCacheStore(config);
  const { call, entryKey, tagKey, entryLockKey, store, redis } = storage;
  const cache: Cache = {
    response(responseOptions?: CacheResponseOptions): RequestHandler {
      return createResponseMiddleware(storage, cache, parseOptions('cache.response', responseSchema, responseOptions));
    },

    async get<T>(key: string): Promise<T | undefined> {
      nameArgument(key, 'cache.get: key');
      const stored = await call((r) => r.get(entryKey(key)));
      if (stored === null) return undefined;
      try {
        return JSON.parse(stored) as T;
      } catch {
        return undefined;
      }
    },

    async set(key: string, value: unknown, valueOptions?: CacheValueOptions): Promise<void> {
      nameArgument(key, 'cache.set: key');
      const { ttl, tags } = parseOptions('cache.set', valueSchema, valueOptions);
      const json = storableJson(value, `cache.set: the value for "${key}"`);
      await store(entryKey(key), json, ttl ?? config.ttl, tags);
    },

    async delete(key: string): Promise<void> {
      nameArgument(key, 'cache.delete: key');
      await call((r) => r.del(entryKey(key)));
      // A URL path (`/users/1?b=2&a=1`) also names the response stored for it under the default key.
      if (key.startsWith('/')) await call((r) => r.del(entryKey(canonicalUrlKey(key))));
    },

    async invalidateTags(...tags: string[]): Promise<number> {
      for (const tag of tags) nameArgument(tag, 'cache.invalidateTags: tag');
      let deleted = 0;
      for (const tag of tags) {
        const members = await call((r) => r.smembers(tagKey(tag)));
        // One DEL per entry: on Redis Cluster the entries live in different slots.
        const counts = await Promise.all(members.map((member) => call((r) => r.del(member))));
        deleted += counts.reduce((sum, n) => sum + n, 0);
        await call((r) => r.del(tagKey(tag)));
      }
      return deleted;
    },

    wrap: async function wrap<T>(
      key: string,
      loader: () => T | Promise<T>,
      valueOptions?: CacheValueOptions,
    ): Promise<T> {
      nameArgument(key, 'cache.wrap: key');
      if (typeof loader !== 'function') throw new TypeError('cache.wrap: loader is invalid (expected a function)');
      const { ttl, tags } = parseOptions('cache.wrap', valueSchema, valueOptions);
      const running = valueFlights.get(key);
      if (running) return running as Promise<T>;
      const flight = loadValue(key, loader, ttl ?? config.ttl, tags);
      valueFlights.set(key, flight);
      try {
        return await flight;
      } finally {
        valueFlights.delete(key);
      }
    },
  };

  /** In-process single flight for `wrap`: concurrent calls for one key share one load. */
  const valueFlights = new Map<string, Promise<unknown>>();

  async function loadValue<T>(key: string, loader: () => T | Promise<T>, ttlMs: number, tags: string[]): Promise<T> {
    const readCached = async (): Promise<{ hit: boolean; value?: T }> => {
      const stored = await call((r) => r.get(entryKey(key)));
      if (stored === null) return { hit: false };
      try {
        return { hit: true, value: JSON.parse(stored) as T };
      } catch {
        return { hit: false };
      }
    };
    let cached: { hit: boolean; value?: T };
    try {
      cached = await readCached();
    } catch {
      return loader(); // Redis unreachable: load without the cache
    }
    if (cached.hit) return cached.value as T;

    let lock: Awaited<ReturnType<typeof tryLock>>;
    try {
      lock = await tryLock(redis(), entryLockKey(key), 10_000, config.timeout);
    } catch {
      return loader();
    }
    if (!lock) {
      // Another process is loading it: wait (bounded) for its value, then load ourselves without storing.
      const deadline = Date.now() + 3_000;
      while (Date.now() < deadline) {
        await pause(25);
        const again = await readCached().catch(() => ({ hit: false }) as { hit: boolean; value?: T });
        if (again.hit) return again.value as T;
      }
      return loader();
    }
    try {
      const value = await loader();
      let json: string | undefined;
      try {
        json = value === undefined ? undefined : storableJson(value, `cache.wrap: the value loaded for "${key}"`);
      } catch (error) {
        // The caller still gets its value; the bug (a cycle, a BigInt) is reported, and nothing is stored.
        storage.logger.error(`redisware ${(error as Error).message}`);
      }
      if (json !== undefined) await store(entryKey(key), json, ttlMs, tags).catch(() => {});
      return value;
    } finally {
      await lock.release().catch(() => {});
    }
  }

  return cache;
}

let defaultCache: Cache | undefined;

/**
 * Caches a route's responses in Redis: `app.get('/users/:id', cacheResponse({ ttl: '15m' }), handler)`.
 * Takes the response options plus `redis` and `prefix`; without them it uses a default cache on `defaultRedis()`.
 */
export function cacheResponse(options: CacheResponseOptions & CreateCacheOptions = {}): RequestHandler {
  const { redis, prefix, logger, timeout, localBytes, batch, ...responseOptions } = options;
  const cacheOptions = { redis, prefix, logger, timeout, localBytes, batch };
  if (Object.values(cacheOptions).some((value) => value !== undefined)) {
    return createCache(cacheOptions).response(responseOptions);
  }
  defaultCache ??= createCache();
  return defaultCache.response(responseOptions);
}
