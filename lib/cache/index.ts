import { createHash } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { defaultRedis } from '../connection.js';
import { keyspace } from '../keys.js';
import { tryLock } from '../lock/index.js';
import { consoleLogger, type Logger, OutageReporter } from '../logger.js';
import { parseOptions } from '../options.js';
import { boundedCaller, type RedisClient, RedisScript } from '../redis-client.js';
import { type CapturedResponse, captureResponse } from './capture.js';
import { computeEtag, decodeResponse, encodeResponse, newVersion, type StoredResponse } from './entry.js';
import { forbidsStoring, ifNoneMatchMatches, requestHeader, unsafeMethods, varyNames } from './http.js';
import {
  type CacheResponseOptions,
  type CacheValueOptions,
  type CreateCacheOptions,
  cacheSchema,
  type ResponseConfig,
  responseSchema,
  valueSchema,
} from './options.js';

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

/**
 * Stores an entry and adds it to its tag sets in one atomic step: KEYS = entry, tag sets…;
 * ARGV = value, ttl ms. Each tag set expires with its newest entry.
 */
const storeWithTagsScript = new RedisScript(
  'cache-store',
  `
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
`,
);

/** Adds an entry key to one tag set (Redis Cluster: tag sets live in other slots than their entries). */
const addToTagScript = new RedisScript(
  'cache-tag-add',
  `
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`,
);

/**
 * Reads an entry, or only confirms it: KEYS[1] = entry; ARGV[1] = the version of the copy this process already
 * holds ('' for none). Returns nil (no entry), 1 (the local copy is still the stored one) or the entry's bytes.
 * A HIT on a large entry then moves a few bytes instead of the whole body, and stays one round trip.
 */
const readEntryScript = new RedisScript(
  'cache-read',
  `
local stored = redis.call('GET', KEYS[1])
if not stored then return false end
if ARGV[1] ~= '' and string.sub(stored, 5, 20) == ARGV[1] then return 1 end
return stored
`,
);

/** Entries kept in process memory (validated against Redis on every use), bounded by their total body size. */
class LocalCopies {
  private readonly entries = new Map<string, StoredResponse>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(key: string): StoredResponse | undefined {
    const entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key);
      this.entries.set(key, entry); // most recently used last
    }
    return entry;
  }

  set(key: string, entry: StoredResponse): void {
    this.delete(key);
    if (entry.body.length > this.maxBytes) return;
    this.entries.set(key, entry);
    this.bytes += entry.body.length;
    for (const [oldest, old] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= old.body.length;
    }
  }

  delete(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.bytes -= entry.body.length;
  }
}

/** Cache keys longer than this are stored under their hash. */
const maxKeyLength = 200;
const urlTag = (url: string) => `url:${url}`;
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Canonical cache key of a request: method class, path, query parameters sorted by name then value. */
export function canonicalRequestKey(req: Request, varyHeaders: readonly string[] = []): string {
  let key = canonicalUrlKey(req.originalUrl ?? req.url);
  for (const name of varyHeaders) key += `\n${name.toLowerCase()}: ${requestHeader(req.headers, name.toLowerCase())}`;
  return key;
}

/** `GET <path>?<query sorted by name, then value>`: the key of a URL's entry (without `vary` headers). */
function canonicalUrlKey(url: string): string {
  const queryStart = url.indexOf('?');
  const path = queryStart === -1 ? url : url.slice(0, queryStart);
  let key = `GET ${path}`;
  if (queryStart !== -1) {
    const params = [...new URLSearchParams(url.slice(queryStart + 1))].sort(([a, x], [b, y]) =>
      a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0,
    );
    if (params.length) key += `?${new URLSearchParams(params).toString()}`;
  }
  return key;
}

function isCluster(client: RedisClient): boolean {
  return (client as { isCluster?: boolean }).isCluster === true;
}

/** Creates a cache on `redis` (default: the shared client) under `prefix` (default `cache`). */
export function createCache(options?: CreateCacheOptions): Cache {
  const config = parseOptions('createCache', cacheSchema, options);
  const logger: Logger = config.logger ?? consoleLogger;
  const outage = new OutageReporter(logger, 'cache could not reach Redis, bypassing it');
  const space = keyspace(config.prefix);
  let client: RedisClient | undefined = config.redis;
  const redis = () => {
    client ??= defaultRedis();
    return client;
  };
  const call = boundedCaller(redis, config.timeout, outage);

  const entryKey = (cacheKey: string) =>
    space(cacheKey.length > maxKeyLength ? `sha256-${createHash('sha256').update(cacheKey).digest('hex')}` : cacheKey);
  const tagKey = (tag: string) => space('tag', tag);
  // The entry key is already collision-free, so the lock on it is simply `lock:<entry key>`.
  const entryLockKey = (cacheKey: string) => `lock:${entryKey(cacheKey)}`;

  async function store(storageKey: string, value: Buffer | string, ttlMs: number, tags: readonly string[]) {
    const c = redis();
    if (tags.length === 0) {
      await call((r) => r.set(storageKey, value, 'PX', ttlMs));
    } else if (!isCluster(c)) {
      await call((r) => storeWithTagsScript.run(r, [storageKey, ...tags.map(tagKey)], [value as string, ttlMs]));
    } else {
      // Tag sets first: an entry is never stored without being findable by its tags.
      await Promise.all(tags.map((tag) => call((r) => addToTagScript.run(r, [tagKey(tag)], [storageKey, ttlMs]))));
      await call((r) => r.set(storageKey, value, 'PX', ttlMs));
    }
  }

  /** Process-local copies of response entries; always revalidated by version, so never served stale. */
  const localCopies = new LocalCopies(config.localBytes);

  /** The stored response at `storageKey` (one round trip), or `undefined`. */
  async function readEntry(storageKey: string): Promise<StoredResponse | undefined> {
    const local = localCopies.get(storageKey);
    const reply = await call((r) => readEntryScript.runBuffer(r, [storageKey], [local?.version ?? '']));
    if (reply === 1 && local) return local;
    if (!Buffer.isBuffer(reply)) {
      localCopies.delete(storageKey);
      return undefined;
    }
    const entry = decodeResponse(reply);
    if (entry) localCopies.set(storageKey, entry);
    else localCopies.delete(storageKey);
    return entry;
  }

  const cache: Cache = {
    response(responseOptions?: CacheResponseOptions): RequestHandler {
      return createResponseMiddleware(parseOptions('cache.response', responseSchema, responseOptions));
    },

    async get<T>(key: string): Promise<T | undefined> {
      const stored = await call((r) => r.get(entryKey(key)));
      if (stored === null) return undefined;
      try {
        return JSON.parse(stored) as T;
      } catch {
        return undefined;
      }
    },

    async set(key: string, value: unknown, valueOptions?: CacheValueOptions): Promise<void> {
      const { ttl, tags } = parseOptions('cache.set', valueSchema, valueOptions);
      const json = JSON.stringify(value);
      if (json === undefined) throw new TypeError(`cache.set: value for "${key}" cannot be stored as JSON`);
      await store(entryKey(key), json, ttl ?? config.ttl, tags);
    },

    async delete(key: string): Promise<void> {
      await call((r) => r.del(entryKey(key)));
      // A URL path (`/users/1?b=2&a=1`) also names the response stored for it under the default key.
      if (key.startsWith('/')) await call((r) => r.del(entryKey(canonicalUrlKey(key))));
    },

    async invalidateTags(...tags: string[]): Promise<number> {
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
      const json = JSON.stringify(value);
      if (json !== undefined) await store(entryKey(key), json, ttlMs, tags).catch(() => {});
      return value;
    } finally {
      await lock.release().catch(() => {});
    }
  }

  function createResponseMiddleware(responseConfig: ResponseConfig): RequestHandler {
    const ttlMs = responseConfig.ttl ?? config.ttl;
    const keepMs = ttlMs + Math.max(responseConfig.staleWhileRevalidate, responseConfig.staleIfError);
    const statuses = new Set(responseConfig.statuses);
    /** In-process single flight: the first miss for a key runs the handler, concurrent ones await its result. */
    const flights = new Map<string, Promise<StoredResponse | undefined>>();

    const cacheKeyOf = (req: Request) => {
      const key = responseConfig.key ? responseConfig.key(req) : canonicalRequestKey(req, responseConfig.vary);
      if (typeof key !== 'string' || key === '') {
        throw new TypeError(`cache.response: the 'key' function returned ${String(key)} (expected a non-empty string)`);
      }
      return key;
    };

    function tagsOf(req: Request, res: Response): string[] {
      const tags =
        typeof responseConfig.tags === 'function' ? responseConfig.tags(req, res) : (responseConfig.tags ?? []);
      if (!responseConfig.key && responseConfig.vary.length > 0) {
        // With `vary`, one URL has several entries: a URL tag lets an unsafe method invalidate them all.
        return [...tags, urlTag(canonicalRequestKey(req))];
      }
      return tags;
    }

    function varyMatches(entry: StoredResponse, req: Request): boolean {
      if (!entry.vary) return true;
      for (const [name, value] of Object.entries(entry.vary)) {
        if (requestHeader(req.headers, name) !== value) return false;
      }
      return true;
    }

    function serve(req: Request, res: Response, entry: StoredResponse, label: 'HIT' | 'STALE'): void {
      res.statusCode = entry.status;
      let storedAge = 0;
      for (const [name, value] of entry.headers) {
        if (name.toLowerCase() === 'age') storedAge = Number(value) || 0;
        else res.appendHeader(name, value);
      }
      res.setHeader('X-Cache', label);
      res.setHeader('Age', String(Math.max(0, Math.floor((Date.now() - entry.storedAt) / 1000)) + storedAge));
      if (ifNoneMatchMatches(req.headers['if-none-match'], entry.etag) && entry.status === 200) {
        res.statusCode = 304;
        for (const name of ['content-length', 'content-type', 'transfer-encoding']) res.removeHeader(name);
        res.end();
        return;
      }
      if (req.method === 'HEAD') res.end();
      else res.end(entry.body);
    }

    /** Turns a finished response into an entry, or `undefined` when it must not be stored. */
    function toEntry(req: Request, captured: CapturedResponse): StoredResponse | undefined {
      if (req.method !== 'GET' || !statuses.has(captured.status)) return undefined;
      let etag: string | undefined;
      let cacheControl: string | undefined;
      let vary: string | undefined;
      for (const [name, value] of captured.headers) {
        const lower = name.toLowerCase();
        if (lower === 'set-cookie') return undefined;
        if (lower === 'etag') etag = value;
        else if (lower === 'cache-control') cacheControl = cacheControl ? `${cacheControl}, ${value}` : value;
        else if (lower === 'vary') vary = vary ? `${vary}, ${value}` : value;
      }
      if (forbidsStoring(cacheControl)) return undefined;
      const names = varyNames(vary);
      if (names.includes('*')) return undefined;
      const headers = captured.headers;
      if (!etag) {
        etag = computeEtag(captured.body);
        headers.push(['ETag', etag]);
      }
      const now = Date.now();
      const entry: StoredResponse = {
        status: captured.status,
        headers,
        body: captured.body,
        storedAt: now,
        freshUntil: now + ttlMs,
        etag,
        version: newVersion(),
      };
      if (names.length) entry.vary = Object.fromEntries(names.map((name) => [name, requestHeader(req.headers, name)]));
      return entry;
    }

    /** Runs the handler, tees its response, and stores it if allowed. Resolves to the stored entry, if any. */
    function runAndStore(
      req: Request,
      res: Response,
      next: NextFunction,
      options: { label: 'MISS' | 'BYPASS'; storeAs?: string; fallback?: StoredResponse },
    ): Promise<StoredResponse | undefined> {
      const { fallback } = options;
      const captured = captureResponse(res, responseConfig.maxBytes, (status) => {
        if (fallback && status >= 500) {
          const headers: [string, string][] = [
            ...fallback.headers.filter(([name]) => name.toLowerCase() !== 'age'),
            ['X-Cache', 'STALE'],
            ['Age', String(Math.floor((Date.now() - fallback.storedAt) / 1000))],
          ];
          return { status: fallback.status, headers, body: req.method === 'HEAD' ? Buffer.alloc(0) : fallback.body };
        }
        if (!res.hasHeader('X-Cache')) res.setHeader('X-Cache', options.label);
        return undefined;
      });
      res.setHeader('X-Cache', options.label);
      next();
      return captured.then(async (response) => {
        if (!response || !options.storeAs) return undefined;
        const entry = toEntry(req, response);
        if (!entry) return undefined;
        try {
          await store(options.storeAs, encodeResponse(entry), keepMs, tagsOf(req, res));
        } catch {
          // Stored or not, the client already has its response; the next request simply misses.
        }
        return entry;
      });
    }

    /** Another request (here or in another process) is producing this entry: wait for it, bounded. */
    async function awaitOtherProcess(
      storageKey: string,
      waitMs: number,
      req: Request,
    ): Promise<StoredResponse | undefined> {
      const deadline = Date.now() + waitMs;
      let delay = 10;
      while (Date.now() < deadline) {
        await pause(Math.min(delay, Math.max(1, deadline - Date.now())));
        delay = Math.min(delay * 2, 100);
        const entry = await readEntry(storageKey).catch(() => undefined);
        if (entry && entry.freshUntil > Date.now() && varyMatches(entry, req)) return entry;
      }
      return undefined;
    }

    async function missPath(
      req: Request,
      res: Response,
      next: NextFunction,
      cacheKey: string,
      storageKey: string,
      fallback: StoredResponse | undefined,
    ): Promise<void> {
      const lockConfig = responseConfig.lock;
      if (!lockConfig) {
        await runAndStore(req, res, next, { label: 'MISS', storeAs: storageKey, fallback });
        return;
      }
      const running = flights.get(cacheKey);
      if (running) {
        const shared = await Promise.race([running, pause(lockConfig.wait).then(() => undefined)]);
        if (shared && varyMatches(shared, req)) return serve(req, res, shared, 'HIT');
        await runAndStore(req, res, next, { label: 'MISS', fallback });
        return;
      }
      let release: (() => Promise<void>) | undefined;
      const flight = (async (): Promise<StoredResponse | undefined> => {
        const lock = await tryLock(redis(), entryLockKey(cacheKey), lockConfig.ttl, config.timeout).catch(() => null);
        if (lock === undefined) {
          // Another process holds the lock: its response will be stored shortly.
          const entry = await awaitOtherProcess(storageKey, lockConfig.wait, req);
          if (entry) {
            serve(req, res, entry, 'HIT');
            return entry;
          }
          await runAndStore(req, res, next, { label: 'MISS', fallback });
          return undefined;
        }
        release = lock ? () => lock.release() : undefined;
        return runAndStore(req, res, next, { label: 'MISS', storeAs: storageKey, fallback });
      })();
      flights.set(cacheKey, flight);
      try {
        await flight;
      } finally {
        flights.delete(cacheKey);
        await release?.().catch(() => {});
      }
    }

    return async function cacheResponseMiddleware(req: Request, res: Response, next: NextFunction) {
      try {
        const method = req.method;
        if (method !== 'GET' && method !== 'HEAD') {
          res.setHeader('X-Cache', 'BYPASS');
          if (unsafeMethods.has(method)) invalidateOnSuccess(req, res);
          return next();
        }
        if (req.headers.authorization !== undefined && !responseConfig.allowAuthorized) {
          res.setHeader('X-Cache', 'BYPASS');
          return next();
        }
        const cacheKey = cacheKeyOf(req);
        const storageKey = entryKey(cacheKey);
        let entry: StoredResponse | undefined;
        try {
          entry = await readEntry(storageKey);
        } catch {
          await runAndStore(req, res, next, { label: 'BYPASS' });
          return;
        }
        if (entry && varyMatches(entry, req)) {
          const now = Date.now();
          if (entry.freshUntil > now) return serve(req, res, entry, 'HIT');
          const staleFor = now - entry.freshUntil;
          if (staleFor < responseConfig.staleWhileRevalidate) {
            // One request refreshes it (whoever gets the lock); everyone else gets the stale entry meanwhile.
            const lock = await tryLock(
              redis(),
              entryLockKey(cacheKey),
              responseConfig.lock?.ttl ?? 10_000,
              config.timeout,
            ).catch(() => undefined);
            if (!lock) return serve(req, res, entry, 'STALE');
            try {
              await runAndStore(req, res, next, { label: 'MISS', storeAs: storageKey, fallback: entry });
            } finally {
              await lock.release().catch(() => {});
            }
            return;
          }
          const fallback = staleFor < responseConfig.staleIfError ? entry : undefined;
          return await missPath(req, res, next, cacheKey, storageKey, fallback);
        }
        await missPath(req, res, next, cacheKey, storageKey, undefined);
      } catch (error) {
        next(error);
      }
    };

    /**
     * A successful unsafe request invalidates its URL's entry before its response is sent (`res.end` waits for
     * the delete, bounded by `timeout`), so a client that reads right after its own write never gets the old copy.
     */
    function invalidateOnSuccess(req: Request, res: Response): void {
      const originalEnd = res.end as (...args: unknown[]) => Response;
      let ending = false;
      res.end = function endAfterInvalidation(this: Response, ...args: unknown[]) {
        if (ending || res.statusCode >= 400) return originalEnd.apply(this, args);
        ending = true;
        const invalidations: Promise<unknown>[] = [];
        try {
          const key = responseConfig.key ? responseConfig.key(req) : canonicalRequestKey(req);
          invalidations.push(cache.delete(key));
          if (!responseConfig.key && responseConfig.vary.length > 0) {
            invalidations.push(cache.invalidateTags(urlTag(canonicalRequestKey(req))));
          }
        } catch (error) {
          invalidations.push(Promise.reject(error));
        }
        Promise.allSettled(invalidations).then(() => originalEnd.apply(res, args));
        return res;
      } as typeof res.end;
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
  const { redis, prefix, logger, timeout, localBytes, ...responseOptions } = options;
  const cacheOptions = { redis, prefix, logger, timeout, localBytes };
  if (Object.values(cacheOptions).some((value) => value !== undefined)) {
    return createCache(cacheOptions).response(responseOptions);
  }
  defaultCache ??= createCache();
  return defaultCache.response(responseOptions);
}
