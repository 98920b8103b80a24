import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { tryLock } from '../lock/index.js';
import { pause } from '../pause.js';
import { type CapturedResponse, captureResponse } from './capture.js';
import { computeEtag, encodeResponse, newVersion, type StoredResponse } from './entry.js';
import { forbidsStoring, ifNoneMatchMatches, requestHeader, unsafeMethods, varyNames } from './http.js';
import type { Cache } from './index.js';
import type { ResponseConfig } from './options.js';
import { canonicalRequestKey, urlTag } from './request-key.js';
import type { CacheStore } from './store.js';

/** The response-caching middleware of one route (`cache.response(options)`). */
export function createResponseMiddleware(
  storage: CacheStore,
  invalidation: Pick<Cache, 'delete' | 'invalidateTags'>,
  responseConfig: ResponseConfig,
): RequestHandler {
  const ttlMs = responseConfig.ttl ?? storage.ttl;
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
    if (!Array.isArray(tags) || tags.some((tag) => typeof tag !== 'string' || tag === '')) {
      throw new TypeError(
        `cache.response: the 'tags' function returned ${JSON.stringify(tags) ?? String(tags)} (expected an array of non-empty strings)`,
      );
    }
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
      let tags: string[];
      try {
        tags = tagsOf(req, res);
      } catch (error) {
        // A bug in the app's `tags` function: the client has its response, but it is not cached untagged.
        storage.logger.error(`redisware cache: not stored: ${(error as Error).message}`);
        return entry;
      }
      try {
        await storage.store(options.storeAs, encodeResponse(entry), keepMs, tags);
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
      const entry = await storage.readEntry(storageKey).catch(() => undefined);
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
      // The leader's response is not one for this request (another variant, or not stored): this one is produced,
      // and stored, on its own.
      await runAndStore(req, res, next, { label: 'MISS', storeAs: storageKey, fallback });
      return;
    }
    let release: (() => Promise<void>) | undefined;
    const flight = (async (): Promise<StoredResponse | undefined> => {
      const lock = await tryLock(
        storage.redis(),
        storage.entryLockKey(cacheKey),
        lockConfig.ttl,
        storage.timeout,
      ).catch(() => null);
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
      const storageKey = storage.entryKey(cacheKey);
      let entry: StoredResponse | undefined;
      try {
        entry = await storage.readEntry(storageKey);
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
            storage.redis(),
            storage.entryLockKey(cacheKey),
            responseConfig.lock?.ttl ?? 10_000,
            storage.timeout,
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
        invalidations.push(invalidation.delete(key));
        if (!responseConfig.key && responseConfig.vary.length > 0) {
          invalidations.push(invalidation.invalidateTags(urlTag(canonicalRequestKey(req))));
        }
      } catch (error) {
        invalidations.push(Promise.reject(error));
      }
      Promise.allSettled(invalidations).then(() => originalEnd.apply(res, args));
      return res;
    } as typeof res.end;
  }
}
