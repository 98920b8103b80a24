import type { RequestHandler } from 'express';
import { now as clock, reportingFailure, reportRedisError, since } from '../events.js';
import { nameArgument } from '../keys.js';
import { parseOptions } from '../options.js';
import { createCoalescer } from './coalesce.js';
import type { StoredResponse } from './entry.js';
import {
  type CacheResponseOptions,
  type CacheValueOptions,
  type CreateCacheOptions,
  cacheSchema,
  responseSchema,
  valueSchema,
} from './options.js';
import { deletedPath, urlTag } from './request-key.js';
import { createResponseMiddleware } from './response.js';
import { createCacheStore } from './store.js';

export type { CacheResponseOptions, CacheValueOptions, CreateCacheOptions } from './options.js';

/** A Redis-backed cache: the response middleware, cache-aside for JSON values, and invalidation. */
export interface Cache {
  /** Middleware caching the responses of a route, or (mounted with `app.use`) of everything behind it. */
  response(options?: CacheResponseOptions): RequestHandler;
  /** Cache-aside: the cached value of `key`, or `loader()`'s result stored with `ttl` and `tags`. */
  wrap<T>(key: string, loader: () => T | Promise<T>, options?: CacheValueOptions): Promise<T>;
  /** The cached JSON value of `key`, or `undefined`. */
  get<T = unknown>(key: string): Promise<T | undefined>;
  /** Stores a JSON value. */
  set(key: string, value: unknown, options?: CacheValueOptions): Promise<void>;
  /**
   * Deletes the value at `key`, or the responses under that cache key; a URL path (`'/users/1?b=2'`) deletes every
   * response stored for it, whatever its origin and variant.
   */
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

/** A value read from Redis: found (with the value), or not. */
type Read<T> = { found: true; value: T; size?: number } | { found: false };

/** Creates a cache on `redis` (default: the shared client) under `prefix` (default `cache`). */
export function createCache(options?: CreateCacheOptions): Cache {
  const config = parseOptions('createCache', cacheSchema, options);
  const store = createCacheStore(config);
  const { call, valueKey, emit } = store;
  const filled = `${config.prefix}:filled`;
  const responses = createCoalescer<StoredResponse>(store, filled);
  const values = createCoalescer<Read<unknown>>(store, filled);

  async function readValue<T>(key: string): Promise<Read<T>> {
    const stored = await call((r) => r.get(valueKey(key)));
    if (stored === null) return { found: false };
    try {
      return { found: true, value: JSON.parse(stored) as T, size: emit ? Buffer.byteLength(stored) : 0 };
    } catch {
      return { found: false };
    }
  }

  /** Runs one of the cache's own Redis steps, reporting its failure to `onEvent` before it rejects. */
  const reported = <T>(operation: string, step: () => Promise<T>) => reportingFailure(emit, 'cache', operation, step);

  async function invalidateTags(...tags: string[]): Promise<number> {
    const started = emit ? clock() : 0;
    const deleted = await reported('invalidate', async () => {
      let count = 0;
      for (const tag of tags) count += await store.invalidateTag(tag);
      return count;
    });
    emit?.({ type: 'cache.invalidated', tags, count: deleted, durationMs: since(started) });
    return deleted;
  }

  /**
   * Loads `key` once across concurrent calls: in this process they share one load; across processes the first
   * takes the lock and the others wait for it to announce the value (at most three seconds), then read it.
   */
  async function loadValue<T>(key: string, loader: () => T | Promise<T>, ttlMs: number, tags: string[]): Promise<T> {
    let cached: Read<T>;
    const started = emit ? clock() : 0;
    try {
      cached = await readValue<T>(key);
    } catch (error) {
      reportRedisError(emit, 'cache', 'bypassed', 'read', error, started);
      return loader(); // Redis unreachable: load without the cache
    }
    const readMs = emit ? since(started) : 0;
    if (cached.found) {
      emit?.({ type: 'cache.hit', key, durationMs: readMs, size: cached.size });
      return cached.value;
    }
    const lockKey = `lock:${valueKey(key)}`;
    const lock = await values.lock(lockKey, 10_000);
    if (lock === undefined) {
      // Another process is loading it: wait until it says it finished, then read its value or load ourselves.
      const waitStarted = emit ? clock() : 0;
      if (await values.waitForHolder(valueKey(key), lockKey, 3_000)) {
        const again = await readValue<T>(key).catch((): Read<T> => ({ found: false }));
        if (again.found) {
          emit?.({ type: 'cache.coalesced', key, across: 'instances', durationMs: since(waitStarted) });
          return again.value;
        }
      }
    }
    // This call loads it: a miss (without the lock, when Redis failed to give it or its holder did not deliver).
    emit?.({ type: 'cache.miss', key, durationMs: readMs });
    if (!lock) return loader();
    try {
      const value = await loader();
      let json: string | undefined;
      try {
        json = value === undefined ? undefined : storableJson(value, `cache.wrap: the value loaded for "${key}"`);
      } catch (error) {
        // The caller still gets its value; the bug (a cycle, a BigInt) is reported, and nothing is stored.
        store.logger.error(`redisware ${(error as Error).message}`);
      }
      if (json !== undefined) {
        const storeStarted = emit ? clock() : 0;
        await store.store(valueKey(key), valueKey(key), json, ttlMs, tags).then(
          () => {
            if (!emit) return;
            const size = Buffer.byteLength(json);
            emit({ type: 'cache.stored', key, size, ttlMs, durationMs: since(storeStarted) });
          },
          (error: unknown) => reportRedisError(emit, 'cache', 'bypassed', 'store', error, storeStarted),
        );
      }
      return value;
    } finally {
      await values.finish(lock, valueKey(key));
    }
  }

  const cache: Cache = {
    response(responseOptions?: CacheResponseOptions): RequestHandler {
      return createResponseMiddleware(
        { store, coalescer: responses, invalidateTags },
        parseOptions('cache.response', responseSchema, responseOptions),
      );
    },

    async get<T>(key: string): Promise<T | undefined> {
      nameArgument(key, 'cache.get: key');
      const read = await reported('get', () => readValue<T>(key));
      return read.found ? read.value : undefined;
    },

    async set(key: string, value: unknown, valueOptions?: CacheValueOptions): Promise<void> {
      nameArgument(key, 'cache.set: key');
      const { ttl, tags } = parseOptions('cache.set', valueSchema, valueOptions);
      const json = storableJson(value, `cache.set: the value for "${key}"`);
      await reported('set', () => store.store(valueKey(key), valueKey(key), json, ttl ?? config.ttl, tags));
    },

    async delete(key: string): Promise<void> {
      nameArgument(key, 'cache.delete: key');
      const started = emit ? clock() : 0;
      const path = deletedPath(key);
      const count = await reported(
        'delete',
        async () => (await store.deleteKey(key)) + (path === undefined ? 0 : await store.invalidateTag(urlTag(path))),
      );
      emit?.({ type: 'cache.invalidated', key, count, durationMs: since(started) });
    },

    async invalidateTags(...tags: string[]): Promise<number> {
      for (const tag of tags) nameArgument(tag, 'cache.invalidateTags: tag');
      return invalidateTags(...tags);
    },

    wrap: async function wrap<T>(
      key: string,
      loader: () => T | Promise<T>,
      valueOptions?: CacheValueOptions,
    ): Promise<T> {
      nameArgument(key, 'cache.wrap: key');
      if (typeof loader !== 'function') throw new TypeError('cache.wrap: loader is invalid (expected a function)');
      const { ttl, tags } = parseOptions('cache.wrap', valueSchema, valueOptions);
      const running = values.flight(key);
      if (running) {
        const started = emit ? clock() : 0;
        const shared = await running.outcome;
        if (shared?.found) {
          const durationMs = since(started);
          emit?.({ type: 'cache.coalesced', key, across: 'process', durationMs });
          return shared.value as T;
        }
      }
      const flight = values.begin(key);
      try {
        const value = await loadValue(key, loader, ttl ?? config.ttl, tags);
        flight.settle({ found: true, value });
        return value;
      } catch (error) {
        flight.settle(undefined);
        throw error;
      }
    },
  };

  return cache;
}

let defaultCache: Cache | undefined;

/**
 * Caches a route's responses in Redis: `app.get('/users/:id', cacheResponse({ ttl: '15m' }), handler)`.
 * Takes the response options plus `redis` and `prefix`; without them it uses a default cache on `defaultRedis()`.
 */
export function cacheResponse(options: CacheResponseOptions & CreateCacheOptions = {}): RequestHandler {
  const { redis, prefix, logger, timeout, localBytes, batch, onEvent, ...responseOptions } = options;
  const cacheOptions = { redis, prefix, logger, timeout, localBytes, batch, onEvent };
  if (Object.values(cacheOptions).some((value) => value !== undefined)) {
    return createCache(cacheOptions).response(responseOptions);
  }
  defaultCache ??= createCache();
  return defaultCache.response(responseOptions);
}
