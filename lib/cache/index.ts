import type { RequestHandler } from 'express';
import { now as clock, reportingFailure, reportRedisError, since } from '../events.js';
import { nameArgument } from '../keys.js';
import { parseOptions } from '../options.js';
import { createCoalescer } from './coalesce.js';
import { hashForEvents } from './context.js';
import type { StoredResponse } from './entry.js';
import { createInvalidation } from './invalidation.js';
import type { Tag } from './keys.js';
import {
  type CacheResponseOptions,
  type CacheValueOptions,
  type CreateCacheOptions,
  cacheSchema,
  responseSchema,
  valueSchema,
} from './options.js';
import { createResponseMiddleware } from './response.js';
import { createCacheStore } from './store.js';
import { invalidationUrlOf } from './target.js';

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
   * response stored for it, whatever its origin and variant. Never lost to an outage: see `invalidateTags`.
   */
  delete(key: string): Promise<void>;
  /**
   * Deletes every entry stored with any of `tags`. Resolves to how many entries were deleted now. A tag Redis cannot
   * be reached for (down, or slower than `timeout`) is held in this process and invalidated before it reads or
   * stores anything in Redis again (a `redis.deferred` event; a `cache.invalidated` event once applied): the call
   * still resolves, counting 0 for it, so a route that awaits it answers as its own work did. Past the client's
   * bound of held writes (10,000) it is dropped instead, with a `redis.dropped` event and a logged error. Rejects
   * only when Redis refuses the command (not an outage).
   */
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

/** A value read from Redis: found (with the value), or not; and Redis's clock at the read (µs). */
type Read<T> = { found: true; value: T; size?: number } | { found: false; since?: string };

/** What a `wrap()` got: the value, and whether its loader ran for it (else it was read from Redis). */
interface Wrapped<T> {
  value: T;
  loaded: boolean;
}

/** The path in a key given to `cache.delete()` as a URL (`/users/1?b=2&a=1` or `GET /users/1`), or `undefined`. */
function deletedUrl(key: string): string | undefined {
  if (key.startsWith('/')) return invalidationUrlOf(key);
  if (key.startsWith('GET /')) return invalidationUrlOf(key.slice(4));
  return undefined;
}

/** Creates a cache on `redis` (default: the shared client) under `prefix` (default `cache`). */
export function createCache(options?: CreateCacheOptions): Cache {
  const config = parseOptions('createCache', cacheSchema, options);
  const store = createCacheStore(config);
  const { keys, emit } = store;
  const responses = createCoalescer<StoredResponse>(store, keys.filledChannel);
  const values = createCoalescer<Wrapped<unknown>>(store, keys.filledChannel);
  /** A value's key, as events show it: hashed. */
  const reportedKey = (key: string) => hashForEvents(keys.value(key));

  async function readValue<T>(key: string): Promise<Read<T>> {
    const { json, since } = await store.readValue(key);
    if (json === undefined) return { found: false, since };
    try {
      return { found: true, value: JSON.parse(json) as T, size: emit ? Buffer.byteLength(json) : 0 };
    } catch {
      return { found: false, since };
    }
  }

  /** Runs one of the cache's own Redis steps, reporting its failure to `onEvent` before it rejects. */
  const reported = <T>(operation: string, step: () => Promise<T>) => reportingFailure(emit, 'cache', operation, step);

  const invalidate = createInvalidation(store);

  /**
   * Loads `key` once across concurrent calls: in this process they share one load; across processes the first
   * takes the lock and the others wait for it to announce the value (at most three seconds), then read it. A value
   * loaded while `key` or one of `tags` was invalidated is not stored (it may predate the invalidation).
   */
  async function loadValue<T>(
    key: string,
    loader: () => T | Promise<T>,
    ttlMs: number,
    tags: Tag[],
  ): Promise<Wrapped<T>> {
    const load = async (): Promise<Wrapped<T>> => ({ value: await loader(), loaded: true });
    let cached: Read<T>;
    const started = emit ? clock() : 0;
    try {
      cached = await readValue<T>(key);
    } catch (error) {
      reportRedisError(emit, 'cache', 'bypassed', 'read', error, started);
      return load(); // Redis unreachable: load without the cache
    }
    const readMs = emit ? since(started) : 0;
    if (cached.found) {
      emit?.({ type: 'cache.hit', key: reportedKey(key), durationMs: readMs, size: cached.size });
      return { value: cached.value, loaded: false };
    }
    const valueKey = keys.value(key);
    const lockKey = keys.lock(valueKey);
    const lock = await values.lock(lockKey, 10_000);
    if (lock === undefined) {
      // Another process is loading it: wait until it says it finished, then read its value or load ourselves.
      const waitStarted = emit ? clock() : 0;
      if (await values.waitForHolder(valueKey, lockKey, 3_000)) {
        const again = await readValue<T>(key).catch((): Read<T> => ({ found: false }));
        if (again.found) {
          emit?.({
            type: 'cache.coalesced',
            key: reportedKey(key),
            across: 'instances',
            durationMs: since(waitStarted),
          });
          return { value: again.value, loaded: true };
        }
      }
    }
    // This call loads it: a miss (without the lock, when Redis failed to give it or its holder did not deliver).
    emit?.({ type: 'cache.miss', key: reportedKey(key), durationMs: readMs });
    if (!lock) return load();
    try {
      const value = await loader();
      let json: string | undefined;
      try {
        json = value === undefined ? undefined : storableJson(value, 'cache.wrap: the value loaded');
      } catch (error) {
        // The caller still gets its value; the bug (a cycle, a BigInt) is reported, and nothing is stored.
        store.logger.error(`redisware ${(error as Error).message}`);
      }
      if (json !== undefined) {
        const storeStarted = emit ? clock() : 0;
        await store
          .store({
            base: valueKey,
            target: valueKey,
            value: json,
            ttlMs,
            tags: [{ kind: 'key', key }, ...tags],
            since: cached.since,
          })
          .then(
            (stored) => {
              if (!emit || !stored) return;
              const size = Buffer.byteLength(json);
              emit({ type: 'cache.stored', key: reportedKey(key), size, ttlMs, durationMs: since(storeStarted) });
            },
            (error: unknown) => reportRedisError(emit, 'cache', 'bypassed', 'store', error, storeStarted),
          );
      }
      return { value, loaded: true };
    } finally {
      await values.finish(lock, valueKey);
    }
  }

  const appTags = (tags: readonly string[]): Tag[] => tags.map((tag) => ({ kind: 'tag', tag }));

  const cache: Cache = {
    response(responseOptions?: CacheResponseOptions): RequestHandler {
      return createResponseMiddleware(
        { store, coalescer: responses, invalidate },
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
      const valueKey = keys.value(key);
      await reported('set', () =>
        store.store({
          base: valueKey,
          target: valueKey,
          value: json,
          ttlMs: ttl ?? config.ttl,
          tags: [{ kind: 'key', key }, ...appTags(tags)],
        }),
      );
    },

    async delete(key: string): Promise<void> {
      nameArgument(key, 'cache.delete: key');
      const url = deletedUrl(key);
      const tags: Tag[] = [{ kind: 'key', key }];
      if (url !== undefined) tags.push({ kind: 'url', url });
      // The value itself too, should its tag set be gone (evicted under memory pressure, say).
      await invalidate(tags, { key, entries: [keys.value(key)] }, 'delete');
    },

    async invalidateTags(...tags: string[]): Promise<number> {
      for (const tag of tags) nameArgument(tag, 'cache.invalidateTags: tag');
      return invalidate(appTags(tags));
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
        if (shared) {
          // Another call's lookup in this process: a load it shared is coalesced, a value it read is a hit.
          const durationMs = since(started);
          if (shared.loaded) emit?.({ type: 'cache.coalesced', key: reportedKey(key), across: 'process', durationMs });
          else emit?.({ type: 'cache.hit', key: reportedKey(key), durationMs });
          return shared.value as T;
        }
      }
      const flight = values.begin(key);
      try {
        const wrapped = await loadValue(key, loader, ttl ?? config.ttl, appTags(tags));
        flight.settle(wrapped);
        return wrapped.value;
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
