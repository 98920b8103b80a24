// The response-caching middleware of one route, or of a whole app or router (`app.use(cache.response())`): it looks
// a request up, answers from a stored entry when one may answer it, and otherwise has the handler produce one.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { now as clock, reportRedisError, since } from '../events.js';
import { keepSessionReadOnly, sessionIdOf } from '../http/session-view.js';
import { answerFrom, sendAnswer } from './answer.js';
import { headerSnapshot } from './capture.js';
import type { Coalescer } from './coalesce.js';
import type { Lookup, RouteContext } from './context.js';
import { requestDirectives } from './directives.js';
import type { StoredResponse } from './entry.js';
import { safeMethods } from './http.js';
import { invalidateOnSuccess } from './invalidate.js';
import { lookupOf } from './lookup.js';
import { missPath, varyMatches } from './miss.js';
import type { ResponseConfig } from './options.js';
import { produce } from './produce.js';
import { backgroundJob, connectionFacts, type RefreshJob, refreshInBackground } from './refresh.js';
import { reportBypass, reportLookup } from './report.js';
import { isFresh, servingOf, staleIfErrorOf, usableFor } from './serving.js';
import type { CacheStore, ResponseRead } from './store.js';

/** What the response middleware needs of its cache besides its options. */
export interface ResponseCacheParts {
  store: CacheStore;
  coalescer: Coalescer<StoredResponse>;
  /** Invalidates `tags` as `cache.invalidateTags()` does (see `RouteContext.invalidate`). */
  invalidate: RouteContext['invalidate'];
}

/** The route's context (see {@link RouteContext}) from its cache and options. */
function routeContext(parts: ResponseCacheParts, config: ResponseConfig): RouteContext {
  const ttlMs = config.ttl ?? parts.store.ttl;
  const httpMode = config.freshness === 'http';
  const statuses = new Set(config.statuses ?? [200]);
  return {
    store: parts.store,
    coalescer: parts.coalescer,
    config,
    rules: {
      httpMode,
      statuses,
      maxBytes: config.maxBytes,
      ttlMs,
      // With `freshness: 'http'`, `ttl` caps how long an entry is kept; each entry's own windows lie within it.
      keepMs: httpMode ? ttlMs : ttlMs + Math.max(config.staleWhileRevalidate, config.staleIfError),
      policy: {
        ttlMs,
        heuristic: config.heuristic,
        cdnCacheControl: config.cdnCacheControl,
        staleWhileRevalidate: config.staleWhileRevalidate,
        staleIfError: config.staleIfError,
        statuses: config.statuses ? statuses : undefined,
      },
    },
    lock: config.lock,
    emit: parts.store.emit,
    invalidate: parts.invalidate,
  };
}

/** Answers from `entry`, reporting it as a HIT or STALE. */
function serveFound(
  ctx: RouteContext,
  req: Request,
  res: Response,
  entry: StoredResponse,
  label: 'HIT' | 'STALE',
  lookup: Lookup,
) {
  reportLookup(ctx, req, lookup, label === 'HIT' ? 'cache.hit' : 'cache.stale', entry.body.length);
  sendAnswer(res, answerFrom(req, entry, label, ctx.rules.httpMode));
}

/**
 * The background refresh of a stale entry (see `refreshInBackground`): produces and stores that entry, and only it
 * — not if the replay came with another session than the entry is for. The replay's end releases the lock.
 */
async function produceRefresh(ctx: RouteContext, req: Request, res: Response, next: NextFunction, job: RefreshJob) {
  const { stale } = job;
  keepSessionReadOnly(req);
  const lookup: Lookup = { ...job.lookup, snapshot: headerSnapshot(res) };
  const sameSession = !lookup.perSession || sessionIdOf(req) === lookup.cameWith;
  // A failure within the entry's stale-if-error never replaces it (the stale entry answers the replay).
  const fallback = Date.now() - stale.freshUntil < staleIfErrorOf(stale, ctx.config) ? stale : undefined;
  const produced = produce(ctx, req, res, next, lookup, {
    label: 'MISS',
    store: sameSession,
    revalidate: stale,
    fallback,
  });
  job.stored = produced.then(
    (entry) => entry !== undefined,
    () => false,
  );
  await produced;
}

/** The response-caching middleware of one route, or of a whole app or router. */
export function createResponseMiddleware(parts: ResponseCacheParts, config: ResponseConfig): RequestHandler {
  const ctx = routeContext(parts, config);
  const { store, emit, rules } = ctx;

  const middleware = async function cacheResponseMiddleware(req: Request, res: Response, next: NextFunction) {
    try {
      const method = req.method;
      if (method !== 'GET' && method !== 'HEAD') {
        reportBypass(ctx, req, 'method');
        res.setHeader('X-Cache', 'BYPASS');
        if (!safeMethods.has(method)) invalidateOnSuccess(ctx, req, res);
        return next();
      }
      // With `'http'`, a request with Authorization is answered only by entries whose directives share them (and
      // its response stored only if they do: RFC 9111 §3.5).
      const authorized = req.headers.authorization !== undefined && !config.allowAuthorized;
      if (authorized && !rules.httpMode) {
        reportBypass(ctx, req, 'authorization');
        res.setHeader('X-Cache', 'BYPASS');
        return next();
      }
      const refresh = backgroundJob<RefreshJob>(req);
      if (refresh) return await produceRefresh(ctx, req, res, next, refresh);
      // A Redis known to be down is not asked (nor is the request's key worked out): the handler answers.
      const down = store.call.unavailable();
      if (down) {
        reportRedisError(emit, 'cache', 'bypassed', 'read', down, emit ? clock() : undefined);
        reportBypass(ctx, req, 'redis-error');
        res.setHeader('X-Cache', 'BYPASS');
        return next();
      }
      const lookup = lookupOf(ctx, req, res);
      if (!lookup) {
        reportBypass(ctx, req, 'origin');
        res.setHeader('X-Cache', 'BYPASS');
        return next();
      }
      const asked =
        rules.httpMode && config.requestCacheControl ? requestDirectives(req.headers['cache-control']) : undefined;
      let read: ResponseRead;
      const started = emit ? clock() : 0;
      try {
        read = await store.readResponse(lookup.base, req);
        if (emit) lookup.redisMs = since(started);
      } catch (error) {
        reportRedisError(emit, 'cache', 'bypassed', 'read', error, started);
        reportBypass(ctx, req, 'redis-error');
        // Nothing will be stored: the handler answers as if the cache were not there (its own conditionals
        // included), at no more cost than the header.
        res.setHeader('X-Cache', 'BYPASS');
        return next();
      }
      lookup.since = read.since;
      let entry = read.found?.entry;
      if (entry && authorized && !entry.policy?.shareAuthorized) entry = undefined;
      if (entry && !varyMatches(entry, req)) entry = undefined;
      const now = Date.now();
      if (asked?.onlyIfCached && (!entry || !usableFor(asked, entry, now))) {
        // RFC 9111 §5.2.1.7: nothing stored that may answer it.
        reportLookup(ctx, req, lookup, 'cache.miss');
        res.setHeader('X-Cache', 'MISS');
        res.status(504).end();
        return;
      }
      if (authorized || asked?.noStore) {
        // Not shared with anyone else's flight: produced for this request, stored only if its directives allow.
        if (entry && (asked ? usableFor(asked, entry, now) : isFresh(entry, now))) {
          return serveFound(ctx, req, res, entry, 'HIT', lookup);
        }
        await produce(ctx, req, res, next, lookup, { label: 'MISS', store: !asked?.noStore, revalidate: entry });
        return;
      }
      if (!entry) return await missPath(ctx, req, res, next, lookup);
      const serving = servingOf(entry, now, asked, config);
      if (serving.use === 'hit' || serving.use === 'stale') {
        return serveFound(ctx, req, res, entry, serving.use === 'hit' ? 'HIT' : 'STALE', lookup);
      }
      if (serving.use === 'stale-refresh') {
        // Every request gets the stale entry at once; one of them, across processes, has it refreshed.
        const connection = connectionFacts(req);
        serveFound(ctx, req, res, entry, 'STALE', lookup);
        return await refreshInBackground(ctx, req, connection, lookup, entry);
      }
      // Stale: asked again of the handler, with the entry's validators (a 304 freshens it).
      const fallback = serving.fallback ? entry : undefined;
      return await missPath(ctx, req, res, next, lookup, { fallback, revalidate: entry });
    } catch (error) {
      next(error);
    }
  };
  ctx.middleware = middleware;
  return middleware;
}
