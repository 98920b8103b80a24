import { createHash } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import parseRange from 'range-parser';
import { now as clock, reportRedisError, since } from '../events.js';
import { isBackground, isPersonal, sessionIdentity } from '../http/marks.js';
import { holdEnd } from '../http/response.js';
import { type CapturedResponse, captureResponse, type Head, type HeadDecision, headerSnapshot } from './capture.js';
import type { Coalescer } from './coalesce.js';
import { type RequestDirectives, requestDirectives } from './directives.js';
import { computeEtag, encodeResponse, newVersion, type StoredResponse } from './entry.js';
import { freshUntil } from './freshness.js';
import {
  acceptsEncoding,
  conditionalRequestHeaders,
  droppedBy304,
  firstHeader,
  forbidsStoring,
  hasNoBody,
  headerPairs,
  ifNoneMatchMatches,
  notModified,
  safeMethods,
  varyNames,
  varyValue,
} from './http.js';
import type { ResponseConfig } from './options.js';
import { type HttpStorage, httpStorage, keepFor, type PolicyOptions } from './policy.js';
import { backgroundJob, connectionFacts, replayInBackground } from './refresh.js';
import { originOf, pathKey, requestKey, requestPath, urlOrigin, urlTag } from './request-key.js';
import { type CacheStore, variantId } from './store.js';

/** What the response middleware needs of its cache besides the store. */
export interface ResponseCacheParts {
  store: CacheStore;
  coalescer: Coalescer<StoredResponse>;
  /** Deletes every entry with one of `tags`. */
  invalidateTags(...tags: string[]): Promise<number>;
}

/** What a background refresh carries to the middleware (see `replayInBackground`). */
interface RefreshJob {
  /** The stale entry: the handler is asked with its validators, so that a 304 freshens it. */
  stale: StoredResponse;
  /**
   * Set by the middleware as it starts producing the entry: whether it was stored. The replay's response ends
   * before the entry is stored, so the lock is released (or abandoned) once this settles.
   */
  stored?: Promise<boolean>;
}

/** One request's way through the cache: its key, where its entry lives, and what the handler set off with. */
interface Lookup {
  cacheKey: string;
  base: string;
  /** The headers on the response when the cache was entered (outer middleware's): never stored. */
  snapshot: Map<string, string>;
  /** Whether the key names the request's session (`perSession`, with a session middleware in front). */
  perSession: boolean;
  /** How long the lookup waited on Redis, in ms. The three fields below are set only with an `onEvent` hook. */
  redisMs: number;
  /** The events' `route`, `path` and `key` (see `CacheEventBase`), fixed as the cache is entered. */
  route: string;
  path: string;
  eventKey: string;
}

/** How a response that may be stored is stored: with `freshness: 'http'`, as its directives say. */
interface StoreDecision {
  http?: HttpStorage;
}

/** The response-caching middleware of one route, or of a whole app or router (`app.use(cache.response())`). */
export function createResponseMiddleware(parts: ResponseCacheParts, responseConfig: ResponseConfig): RequestHandler {
  const { store, coalescer } = parts;
  const ttlMs = responseConfig.ttl ?? store.ttl;
  const httpMode = responseConfig.freshness === 'http';
  // With `freshness: 'http'`, `ttl` caps how long an entry is kept; each entry's own windows lie within it.
  const keepMs = httpMode ? ttlMs : ttlMs + Math.max(responseConfig.staleWhileRevalidate, responseConfig.staleIfError);
  const statuses = new Set(responseConfig.statuses ?? [200]);
  const policyOptions: PolicyOptions = {
    ttlMs,
    heuristic: responseConfig.heuristic,
    cdnCacheControl: responseConfig.cdnCacheControl,
    staleWhileRevalidate: responseConfig.staleWhileRevalidate,
    staleIfError: responseConfig.staleIfError,
    statuses: responseConfig.statuses ? statuses : undefined,
  };
  const lockConfig = responseConfig.lock;
  const { emit } = store;

  /**
   * The route of an event, read as the cache is entered (later, the handler's route has been matched): the route's
   * pattern when the cache is on one (`/users/:id`), else where it is mounted, followed by `*`.
   */
  function routeOf(req: Request): string {
    // `req.route` is still set after an earlier route passed the request on: it counts only if this is its cache.
    const route = req.route as { path?: unknown; stack?: { handle?: unknown }[] } | undefined;
    const ours = route?.stack?.some((layer) => layer.handle === middleware) === true;
    const pattern = ours ? route?.path : undefined;
    return `${req.baseUrl ?? ''}${pattern === undefined ? '/*' : String(pattern)}`;
  }

  /** Reports how a client's request was answered (background refreshes are not client requests). */
  function reportLookup(req: Request, lookup: Lookup, type: 'cache.hit' | 'cache.stale' | 'cache.miss', size?: number) {
    if (!emit || isBackground(req)) return;
    emit({ type, route: lookup.route, path: lookup.path, key: lookup.eventKey, durationMs: lookup.redisMs, size });
  }

  /** Answers from `entry` (see `serve`), reporting it as a HIT or STALE. */
  function serveFound(req: Request, res: Response, entry: StoredResponse, label: 'HIT' | 'STALE', lookup: Lookup) {
    if (emit) reportLookup(req, lookup, label === 'HIT' ? 'cache.hit' : 'cache.stale', entry.body.length);
    serve(req, res, entry, label);
  }

  /** Answers with the entry another request produced (see `serve`), reporting the wait. */
  function serveCoalesced(
    req: Request,
    res: Response,
    entry: StoredResponse,
    lookup: Lookup,
    across: 'process' | 'instances',
    started: number,
  ) {
    const { route, path, eventKey: key } = lookup;
    emit?.({ type: 'cache.coalesced', route, path, key, across, durationMs: since(started) });
    serve(req, res, entry, 'HIT');
  }

  function reportBypass(req: Request, reason: 'method' | 'authorization' | 'redis-error') {
    if (!emit) return;
    emit({ type: 'cache.bypass', route: routeOf(req), path: `${req.baseUrl ?? ''}${req.path}`, reason });
  }

  /** Whether `entry` may answer a request without asking the handler. */
  const isFresh = (entry: StoredResponse, now: number) => entry.freshUntil > now && !entry.policy?.noCache;
  const staleWhileRevalidateOf = (entry: StoredResponse) =>
    entry.policy ? entry.policy.staleWhileRevalidate : responseConfig.staleWhileRevalidate;
  const staleIfErrorOf = (entry: StoredResponse) =>
    entry.policy ? entry.policy.staleIfError : responseConfig.staleIfError;

  /** The `Age` of a stored response now, in whole seconds: its age when stored plus the time since. */
  function ageOf(entry: StoredResponse, now: number): number {
    const initial = entry.initialAge ?? (Number(firstHeader(entry.headers, 'age')) || 0);
    return Math.floor(initial + Math.max(0, (now - entry.storedAt) / 1000));
  }

  /**
   * Whether `entry` may answer a request whose Cache-Control asked for something (`requestCacheControl`): not
   * with `no-cache`, nor older than its `max-age`, nor fresh for less than its `min-fresh` (RFC 9111 §5.2.1).
   * Staleness it accepts (`max-stale`) is decided by the caller.
   */
  function usableFor(asked: RequestDirectives, entry: StoredResponse, now: number): boolean {
    if (refusedBy(asked, entry, now)) return false;
    if (!isFresh(entry, now)) {
      const staleFor = now - entry.freshUntil;
      return (
        asked.maxStale !== undefined &&
        !entry.policy?.mustRevalidate &&
        !entry.policy?.noCache &&
        staleFor <= asked.maxStale * 1000
      );
    }
    return true;
  }

  /** Whether the request's `no-cache`, `max-age` or `min-fresh` refuses `entry` unless it is validated first. */
  function refusedBy(asked: RequestDirectives, entry: StoredResponse, now: number): boolean {
    if (asked.noCache) return true;
    if (asked.maxAge !== undefined && ageOf(entry, now) > asked.maxAge) return true;
    return asked.minFresh !== undefined && entry.freshUntil - now < asked.minFresh * 1000;
  }

  /** The `Last-Modified` a client's `If-Modified-Since` is compared with (with `'http'`, else its `Date`). */
  const lastModifiedOf = (entry: StoredResponse) =>
    firstHeader(entry.headers, 'last-modified') ?? (httpMode ? firstHeader(entry.headers, 'date') : undefined);

  /** The lookup of a request: its key, where its entry lives, and what the response had when the cache was entered. */
  function lookupOf(req: Request, res: Response): Lookup {
    let cacheKey = responseConfig.key ? responseConfig.key(req) : requestKey(req, responseConfig.vary);
    if (typeof cacheKey !== 'string' || cacheKey === '') {
      throw new TypeError(
        `cache.response: the 'key' function returned ${String(cacheKey)} (expected a non-empty string)`,
      );
    }
    // One entry per stored session, and one for every client without one (a new session is nobody's yet). With no
    // session middleware in front, there is no session to key by: a response that reads one is then not stored.
    const session = responseConfig.perSession ? sessionIdentity(req) : undefined;
    if (session !== undefined) cacheKey += `\nsession: ${createHash('sha256').update(session).digest('hex')}`;
    const base = store.responseKey(cacheKey);
    return {
      cacheKey,
      base,
      snapshot: headerSnapshot(res),
      perSession: session !== undefined,
      redisMs: 0,
      route: emit ? routeOf(req) : '',
      path: emit ? `${req.baseUrl ?? ''}${req.path}` : '',
      eventKey: emit ? createHash('sha256').update(base).digest('base64url').slice(0, 16) : '',
    };
  }

  function tagsOf(req: Request, res: Response): string[] {
    const tags =
      typeof responseConfig.tags === 'function' ? responseConfig.tags(req, res) : (responseConfig.tags ?? []);
    if (!Array.isArray(tags) || tags.some((tag) => typeof tag !== 'string' || tag === '')) {
      throw new TypeError(
        `cache.response: the 'tags' function returned ${JSON.stringify(tags) ?? String(tags)} (expected an array of non-empty strings)`,
      );
    }
    // Every response stored under the default key is findable by its path, whatever its origin and variant, so
    // `cache.delete('/path')` and an unsafe method can invalidate them all.
    return responseConfig.key ? tags : [...tags, urlTag(requestPath(req))];
  }

  function varyMatches(entry: StoredResponse, req: Request): boolean {
    if (!entry.vary) return true;
    for (const [name, value] of Object.entries(entry.vary)) {
      if (varyValue(req.headers, name) !== value) return false;
    }
    return true;
  }

  /**
   * Answers from a stored entry: its status and headers (replacing what outer middleware set under the same names,
   * as the handler's own would have), `Age`, the stored `Date`, and 304 for a matching validator. Everything outer
   * middleware adds as the headers go out (compression, a session's cookie) happens as on any response.
   */
  function serve(req: Request, res: Response, entry: StoredResponse, label: 'HIT' | 'STALE'): void {
    res.statusCode = entry.status;
    const grouped = new Map<string, string[]>();
    for (const [name, value] of entry.headers) {
      if (name.toLowerCase() === 'age') continue;
      const values = grouped.get(name);
      if (values) values.push(value);
      else grouped.set(name, [value]);
    }
    for (const [name, values] of grouped) res.setHeader(name, values.length === 1 ? values[0] : values);
    for (const name of entry.removed ?? []) res.removeHeader(name); // as the handler removed it on the MISS
    res.setHeader('X-Cache', label);
    res.setHeader('Age', String(ageOf(entry, Date.now())));
    if ((entry.status === 200 || entry.status === 203) && notModified(req.headers, entry.etag, lastModifiedOf(entry))) {
      res.statusCode = 304;
      for (const name of droppedBy304) res.removeHeader(name);
      res.end();
      return;
    }
    const range = entry.status === 200 && req.method === 'GET' ? requestedRange(req, entry) : undefined;
    if (range) {
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${entry.body.length}`);
      res.setHeader('Content-Length', String(range.end - range.start + 1));
      // The range is of the stored bytes: no middleware in front (compression() with `enforceEncoding`) nor proxy
      // may encode it, or its Content-Range would describe other bytes.
      const cacheControl = res.getHeader('Cache-Control');
      const directives = cacheControl === undefined ? '' : [cacheControl].flat().join(', ');
      if (!/(^|,)\s*no-transform\s*(,|$)/i.test(directives)) {
        res.setHeader('Cache-Control', directives ? `${directives}, no-transform` : 'no-transform');
      }
      res.end(entry.body.subarray(range.start, range.end + 1));
      return;
    }
    if (req.method === 'HEAD') res.end();
    else res.end(entry.body);
  }

  /**
   * The one byte range a GET asks of a stored 200 (RFC 9110 §14), served as 206 from the stored body; `undefined`
   * to send it whole (no Range, an `If-Range` that does not match, several ranges, or one that cannot be met).
   */
  function requestedRange(req: Request, entry: StoredResponse): { start: number; end: number } | undefined {
    const header = req.headers.range;
    if (header === undefined || entry.body.length === 0) return undefined;
    // Byte ranges are of the stored bytes: a client that accepts a content coding may get the response encoded by
    // middleware in front (compression()), whose bytes a Content-Range of ours would not describe. It gets it whole.
    if (acceptsEncoding(req.headers['accept-encoding'])) return undefined;
    if (firstHeader(entry.headers, 'accept-ranges')?.trim().toLowerCase() === 'none') return undefined;
    const ifRange = req.headers['if-range'];
    if (ifRange !== undefined) {
      const strongEtag = entry.etagGenerated || entry.etag.startsWith('W/') ? undefined : entry.etag;
      // A date is a strong validator only if Last-Modified is at least a second before Date (RFC 9110 §13.1.5).
      const lastModified = firstHeader(entry.headers, 'last-modified');
      const strongDate =
        lastModified !== undefined &&
        Date.parse(firstHeader(entry.headers, 'date') ?? '') - Date.parse(lastModified) >= 1000 &&
        ifRange === lastModified;
      if (ifRange !== strongEtag && !strongDate) return undefined;
    }
    const ranges = parseRange(entry.body.length, header, { combine: true });
    if (!Array.isArray(ranges) || ranges.type !== 'bytes' || ranges.length !== 1) return undefined;
    return ranges[0];
  }

  /**
   * Whether a response whose headers are going out may be stored: known at once, so that followers waiting for it
   * learn that it will not be, without waiting for its end.
   */
  function storableHead(req: Request, head: Head, lookup: Lookup, requestTime: number): StoreDecision | undefined {
    if (req.method !== 'GET') return undefined;
    // A partial response (a Range the handler answered itself) is never an entry: replayed, it would answer every
    // request with that part.
    if (head.status === 206) return undefined;
    if (!httpMode && !statuses.has(head.status)) return undefined;
    // The handler's cookie (set during it, or by a listener registered during it, such as a session saved there):
    // a cookie that outer middleware set before the cache is theirs, set again on every HIT.
    if (firstHeader(head.handlerHeaders, 'set-cookie') !== undefined) return undefined;
    if (varyNames(head.all.vary === undefined ? undefined : String(head.all.vary)).includes('*')) return undefined;
    if (String(head.all['content-type'] ?? '').startsWith('text/event-stream')) return undefined;
    const length = Number(head.all['content-length']);
    if (Number.isFinite(length) && length > responseConfig.maxBytes) return undefined;
    if (isPersonal(req) && !lookup.perSession) return undefined;
    if (httpMode) {
      // The response as it goes out decides, whoever set its headers (a Cache-Control set in front counts).
      const http = httpStorage(
        {
          status: head.status,
          headers: headerPairs(head.all),
          authorized: req.headers.authorization !== undefined,
          requestTime,
          responseTime: Date.now(),
        },
        policyOptions,
      );
      return http && { http };
    }
    const cacheControl = head.all['cache-control'];
    if (forbidsStoring(cacheControl === undefined ? undefined : String(cacheControl))) return undefined;
    // Stale as it comes (its own max-age used up by its Age, an Expires in the past): kept only if it can be
    // revalidated (it has a validator of the handler's) or served stale.
    if (
      freshUntil(head.handlerHeaders, Date.now(), ttlMs) <= Date.now() &&
      keepMs === ttlMs &&
      firstHeader(head.handlerHeaders, 'etag') === undefined &&
      firstHeader(head.handlerHeaders, 'last-modified') === undefined
    ) {
      return undefined;
    }
    return {};
  }

  /** Turns a finished, storable response into an entry, or `undefined` when it must not be stored after all. */
  function toEntry(
    req: Request,
    captured: CapturedResponse,
    varyOn: string[],
    lookup: Lookup,
    decision: StoreDecision,
  ): StoredResponse | undefined {
    if (isPersonal(req) && !lookup.perSession) return undefined; // it read the session after its head
    const { http } = decision;
    const strip = http?.strip ?? [];
    const headers = strip.length
      ? captured.headers.filter(([name]) => !strip.includes(name.toLowerCase()))
      : captured.headers;
    let etag = firstHeader(headers, 'etag');
    const etagGenerated = !etag;
    if (!etag) {
      etag = computeEtag(captured.body);
      headers.push(['ETag', etag]);
    }
    const now = Date.now();
    // Before a Date of ours is added: it is whole seconds, and an Expires would be counted from up to 1 s early.
    const fresh = http ? http.freshUntil : freshUntil(headers, now, ttlMs);
    // The stored Date is the response's own, replayed on every HIT (RFC 9111 §5): the handler's, or when it
    // generated it.
    if (firstHeader(headers, 'date') === undefined) headers.push(['Date', new Date(now).toUTCString()]);
    const entry: StoredResponse = {
      status: captured.status,
      headers,
      removed: captured.removed.length ? captured.removed : undefined,
      body: captured.body,
      storedAt: now,
      freshUntil: fresh,
      etag,
      etagGenerated: etagGenerated || undefined,
      version: newVersion(),
    };
    if (http) {
      entry.storedAt = http.responseTime;
      entry.initialAge = http.initialAge;
      entry.policy = http.policy;
    }
    if (varyOn.length) entry.vary = Object.fromEntries(varyOn.map((name) => [name, varyValue(req.headers, name)]));
    return entry;
  }

  /**
   * The decision that answers a request with `entry` in place of the handler's response (see `captureResponse`):
   * its status, headers and body as `serve` gives them, and 304 when `conditional` and the client's validator
   * matches.
   */
  function answerWith(req: Request, entry: StoredResponse, label: 'HIT' | 'STALE', conditional: boolean): HeadDecision {
    const headers: [string, string][] = [
      ...entry.headers.filter(([name]) => {
        const lower = name.toLowerCase();
        return lower !== 'age' && lower !== 'content-length';
      }),
      ['X-Cache', label],
      ['Age', String(ageOf(entry, Date.now()))],
    ];
    // The stored body's length, whatever the handler's own response (a 304, an error) was framed as.
    if (!hasNoBody(entry.status)) headers.push(['Content-Length', String(entry.body.length)]);
    const notModifiedAnswer =
      conditional &&
      (entry.status === 200 || entry.status === 203) &&
      notModified(req.headers, entry.etag, lastModifiedOf(entry));
    return {
      kind: 'replace',
      status: notModifiedAnswer ? 304 : entry.status,
      headers: notModifiedAnswer ? headers.filter(([name]) => !droppedBy304.has(name.toLowerCase())) : headers,
      body: notModifiedAnswer || req.method === 'HEAD' ? Buffer.alloc(0) : entry.body,
      removed: entry.removed,
    };
  }

  /**
   * The stored entry `stale`, freshened by the handler's 304 to the conditional request made with its validators
   * (RFC 9111 §4.3.4): the 304's headers replace the stored ones of the same names (content headers aside), and it
   * is fresh again from now.
   */
  function revalidated(
    stale: StoredResponse,
    notModifiedHeaders: [string, string][],
    requestTime: number,
    outgoing: OutgoingHttpHeaders,
    authorized: boolean,
  ): { entry: StoredResponse; decision?: StoreDecision } {
    const replaced = new Set(
      notModifiedHeaders.map(([name]) => name.toLowerCase()).filter((name) => !droppedBy304.has(name)),
    );
    // Its age is the 304's (none: just validated), its Date the 304's or now.
    const headers: [string, string][] = [
      ...stale.headers.filter(([name]) => {
        const lower = name.toLowerCase();
        return !replaced.has(lower) && lower !== 'age' && lower !== 'date';
      }),
      ...notModifiedHeaders.filter(([name]) => replaced.has(name.toLowerCase())),
    ];
    const now = Date.now();
    // The policy reads the response as it goes out: these headers, and what middleware in front set (a
    // Cache-Control of theirs), as when the entry was first stored.
    const names = new Set(headers.map(([name]) => name.toLowerCase()));
    const policyHeaders = [...headers, ...headerPairs(outgoing).filter(([name]) => !names.has(name.toLowerCase()))];
    const http = httpMode
      ? httpStorage(
          { status: stale.status, headers: policyHeaders, authorized, requestTime, responseTime: now },
          { ...policyOptions, statuses: undefined },
        )
      : undefined;
    const fresh = http ? http.freshUntil : httpMode ? now : freshUntil(headers, now, ttlMs);
    if (!replaced.has('date')) headers.push(['Date', new Date(now).toUTCString()]);
    const entry: StoredResponse = {
      ...stale,
      headers,
      storedAt: now,
      freshUntil: fresh,
      etag: firstHeader(headers, 'etag') ?? stale.etag,
      version: newVersion(),
    };
    if (http) {
      entry.initialAge = http.initialAge;
      entry.policy = http.policy;
      if (http.strip.length) entry.headers = headers.filter(([name]) => !http.strip.includes(name.toLowerCase()));
    }
    // With `'http'`, a 304 whose merged headers forbid storing (`no-store`) answers but is not stored.
    return { entry, decision: httpMode ? http && { http } : {} };
  }

  /**
   * Runs the handler as the producer of this request's entry: without the client's conditional headers (a MISS is
   * produced in full, stored, and then answered 304 if the client's validator matches), teeing its response and
   * storing it when allowed. `onHead` learns at once whether it will be stored. With `revalidate` (a stale entry),
   * the handler is asked with that entry's validators instead, and a 304 from it serves and stores the entry
   * freshened. Resolves to the stored entry.
   */
  function runAndStore(
    req: Request,
    res: Response,
    next: NextFunction,
    lookup: Lookup,
    options: {
      label: 'MISS' | 'BYPASS';
      store: boolean;
      fallback?: StoredResponse;
      revalidate?: StoredResponse;
      onHead?: (storable: boolean) => void;
    },
  ): Promise<StoredResponse | undefined> {
    const { fallback, revalidate } = options;
    const requestTime = Date.now();
    const conditional: Record<string, string | undefined> = {};
    for (const name of conditionalRequestHeaders) {
      conditional[name] = req.headers[name] as string | undefined;
      delete req.headers[name];
    }
    if (revalidate) {
      // Only a validator the handler gave: an If-None-Match of ours would never match, and would make it ignore
      // If-Modified-Since (RFC 9110 §13.1.3).
      if (!revalidate.etagGenerated) req.headers['if-none-match'] = revalidate.etag;
      const lastModified = firstHeader(revalidate.headers, 'last-modified');
      if (lastModified !== undefined) req.headers['if-modified-since'] = lastModified;
    }
    const restoreConditional = () => {
      for (const name of conditionalRequestHeaders) {
        if (conditional[name] === undefined) delete req.headers[name];
        else req.headers[name] = conditional[name];
      }
    };
    let varyOn: string[] = [];
    let decision: StoreDecision | undefined;
    let freshened: StoredResponse | undefined;
    const captured = captureResponse(res, lookup.snapshot, responseConfig.maxBytes, (head): HeadDecision => {
      if (fallback && head.status >= 500) {
        options.onHead?.(false);
        if (emit) reportLookup(req, lookup, 'cache.stale', fallback.body.length);
        return answerWith(req, fallback, 'STALE', false);
      }
      if (revalidate && head.status === 304) {
        // Still valid: the stored entry, freshened, answers this request (304 if the client's own validator
        // matches) and is stored again.
        const { entry, decision: stored } = revalidated(
          revalidate,
          head.handlerHeaders,
          requestTime,
          head.all,
          req.headers.authorization !== undefined,
        );
        // A 304 naming another representation than the stored one does not freshen it (RFC 9111 §4.3.4).
        const notModifiedEtag = firstHeader(head.handlerHeaders, 'etag');
        const sameRepresentation =
          notModifiedEtag === undefined ||
          revalidate.etagGenerated ||
          ifNoneMatchMatches(notModifiedEtag, revalidate.etag);
        freshened = entry;
        varyOn = Object.keys(entry.vary ?? {});
        const cacheControl = head.all['cache-control'];
        const storable =
          options.store &&
          stored !== undefined &&
          sameRepresentation &&
          firstHeader(head.handlerHeaders, 'set-cookie') === undefined &&
          (httpMode || !forbidsStoring(cacheControl === undefined ? undefined : String(cacheControl))) &&
          (!isPersonal(req) || lookup.perSession);
        decision = storable ? stored : undefined;
        options.onHead?.(storable);
        restoreConditional();
        if (emit) reportLookup(req, lookup, 'cache.hit', entry.body.length);
        return answerWith(req, entry, 'HIT', true);
      }
      // The handler's own Vary: one set by outer middleware is about what they add, which is not stored and is
      // added again on every HIT (per-origin CORS sets Vary: Origin, and its header is this request's on a HIT).
      varyOn = varyNames(firstHeader(head.handlerHeaders, 'vary'));
      decision = options.store ? storableHead(req, head, lookup, requestTime) : undefined;
      const storable = decision !== undefined;
      options.onHead?.(storable);
      restoreConditional();
      if (emit && options.label === 'MISS') reportLookup(req, lookup, 'cache.miss');
      const etag = head.all.etag === undefined ? undefined : String(head.all.etag);
      const lastModified = head.all['last-modified'] === undefined ? undefined : String(head.all['last-modified']);
      if ((head.status === 200 || head.status === 203) && notModified(req.headers, etag, lastModified)) {
        return { kind: 'not-modified', keep: storable };
      }
      return { kind: 'pass', keep: storable };
    });
    res.setHeader('X-Cache', options.label);
    next();
    return captured.then(async (response) => {
      restoreConditional();
      if (!decision) return undefined;
      const entry = freshened ?? (response && toEntry(req, response, varyOn, lookup, decision));
      if (!entry) return undefined;
      let tags: string[];
      try {
        tags = tagsOf(req, res);
      } catch (error) {
        // A bug in the app's `tags` function: the client has its response, but it is not cached untagged.
        store.logger.error(`redisware cache: not stored: ${(error as Error).message}`);
        return undefined;
      }
      const target = varyOn.length ? store.variantKey(lookup.base, variantId(req, varyOn)) : lookup.base;
      if (varyOn.length) store.rememberVary(lookup.base, varyOn);
      const started = emit ? clock() : 0;
      const keep = Math.ceil(decision.http ? keepFor(decision.http, Date.now(), ttlMs) : keepMs);
      try {
        await store.store(lookup.base, target, encodeResponse(entry), keep, tags, {
          names: varyOn,
          id: varyOn.length ? variantId(req, varyOn) : '',
        });
      } catch (error) {
        // Stored or not, the client already has its response; the next request simply misses.
        reportRedisError(emit, 'cache', 'bypassed', 'store', error, started);
        return undefined;
      }
      emit?.({
        type: 'cache.stored',
        route: lookup.route,
        path: lookup.path,
        key: lookup.eventKey,
        size: entry.body.length,
        ttlMs: keep,
        durationMs: since(started),
        background: isBackground(req) || undefined,
      });
      return entry;
    });
  }

  /**
   * A MISS: concurrent misses for one key run the handler once. In this process they share its flight; across
   * processes the first takes `lock:<key>` and the others wait until it announces that it finished (at most
   * `lock.wait`). A leader whose response will not be stored says so as its headers go out, so nobody waits for a
   * response that will never be there.
   */
  async function missPath(
    req: Request,
    res: Response,
    next: NextFunction,
    lookup: Lookup,
    stale: { fallback?: StoredResponse; revalidate?: StoredResponse } = {},
  ): Promise<void> {
    const { fallback, revalidate } = stale;
    if (!lockConfig) {
      await runAndStore(req, res, next, lookup, { label: 'MISS', store: true, fallback, revalidate });
      return;
    }
    const running = coalescer.flight(lookup.base);
    if (running) {
      const started = emit ? clock() : 0;
      let timer: NodeJS.Timeout | undefined;
      const shared = await Promise.race([
        running.outcome,
        new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), lockConfig.wait);
        }),
      ]);
      clearTimeout(timer);
      if (shared && varyMatches(shared, req)) return serveCoalesced(req, res, shared, lookup, 'process', started);
      // Not a response for this request (not stored, another variant, or too slow): produce and store its own.
      await runAndStore(req, res, next, lookup, { label: 'MISS', store: true, fallback, revalidate });
      return;
    }
    const flight = coalescer.begin(lookup.base);
    const lockKey = store.lockKey(lookup.base);
    const lock = await coalescer.lock(lockKey, lockConfig.ttl);
    if (lock === undefined) {
      // Another process is producing it: wait until it says it finished, then use its entry, or produce ours.
      const started = emit ? clock() : 0;
      const finished = await coalescer.waitForHolder(lookup.base, lockKey, lockConfig.wait);
      const found = finished ? await store.readResponse(lookup.cacheKey, req).catch(() => undefined) : undefined;
      if (found && found.entry.freshUntil > Date.now() && varyMatches(found.entry, req)) {
        flight.settle(found.entry);
        return serveCoalesced(req, res, found.entry, lookup, 'instances', started);
      }
      // Finished without an entry for us: produce and store our own. Timed out: produce it, and leave the storing
      // to the process that holds the lock.
      const entry = await runAndStore(req, res, next, lookup, {
        label: 'MISS',
        store: finished,
        fallback,
        revalidate,
        onHead: (storable) => {
          if (!storable) flight.settle(undefined);
        },
      });
      flight.settle(entry);
      return;
    }
    let announced = false;
    const announce = () => {
      if (announced || !lock) return;
      announced = true;
      void coalescer.finish(lock, lookup.base);
    };
    try {
      const entry = await runAndStore(req, res, next, lookup, {
        label: 'MISS',
        store: true,
        fallback,
        revalidate,
        onHead: (storable) => {
          if (storable) return;
          flight.settle(undefined);
          announce();
        },
      });
      flight.settle(entry);
    } finally {
      flight.settle(undefined);
      announce();
    }
  }

  /**
   * A successful unsafe request invalidates what is stored for its URL (every origin and variant) and for the
   * same-origin `Location` and `Content-Location` of its response (RFC 9111 §4.4), before the response is sent:
   * a client that reads right after its own write never gets the old copy.
   */
  function invalidateOnSuccess(req: Request, res: Response): void {
    holdEnd(res, (proceed) => {
      if (res.statusCode >= 400) return proceed();
      const paths = new Set<string>();
      const invalidations: Promise<unknown>[] = [];
      try {
        if (responseConfig.key) {
          const key = responseConfig.key(req);
          const started = emit ? clock() : 0;
          invalidations.push(
            store.deleteKey(key).then(
              (count) => emit?.({ type: 'cache.invalidated', key, count, durationMs: since(started) }),
              (error: unknown) => reportRedisError(emit, 'cache', 'failed', 'invalidate', error, started),
            ),
          );
        } else {
          paths.add(requestPath(req));
          const origin = originOf(req);
          for (const name of ['location', 'content-location']) {
            const value = res.getHeader(name);
            if (value === undefined) continue;
            try {
              const target = new URL(String(value), `${origin}${req.originalUrl ?? req.url}`);
              if (urlOrigin(target, req) === origin) paths.add(pathKey(`${target.pathname}${target.search}`));
            } catch {
              // Not a URL: nothing to invalidate.
            }
          }
          if (paths.size) invalidations.push(parts.invalidateTags(...[...paths].map(urlTag)));
        }
      } catch (error) {
        invalidations.push(Promise.reject(error));
      }
      Promise.allSettled(invalidations).then(() => proceed());
    });
  }

  const middleware = async function cacheResponseMiddleware(req: Request, res: Response, next: NextFunction) {
    try {
      const method = req.method;
      if (method !== 'GET' && method !== 'HEAD') {
        if (emit) reportBypass(req, 'method');
        res.setHeader('X-Cache', 'BYPASS');
        if (!safeMethods.has(method)) invalidateOnSuccess(req, res);
        return next();
      }
      // With `'http'`, a request with Authorization is answered only by entries whose directives share them (and
      // its response stored only if they do: RFC 9111 §3.5).
      const authorized = req.headers.authorization !== undefined && !responseConfig.allowAuthorized;
      if (authorized && !httpMode) {
        if (emit) reportBypass(req, 'authorization');
        res.setHeader('X-Cache', 'BYPASS');
        return next();
      }
      const lookup = lookupOf(req, res);
      const { cacheKey } = lookup;
      const refresh = backgroundJob<RefreshJob>(req);
      if (refresh) {
        // The background refresh of a stale entry (see above): produce and store it (the replay's end releases
        // the lock).
        const { stale } = refresh;
        // A failure within the entry's stale-if-error never replaces it (the stale entry answers the replay).
        const fallback = Date.now() - stale.freshUntil < staleIfErrorOf(stale) ? stale : undefined;
        const produced = runAndStore(req, res, next, lookup, {
          label: 'MISS',
          store: true,
          revalidate: stale,
          fallback,
        });
        refresh.stored = produced.then(
          (entry) => entry !== undefined,
          () => false,
        );
        await produced;
        return;
      }
      const asked =
        httpMode && responseConfig.requestCacheControl ? requestDirectives(req.headers['cache-control']) : undefined;
      let found: Awaited<ReturnType<typeof store.readResponse>>;
      const started = emit ? clock() : 0;
      try {
        found = await store.readResponse(cacheKey, req);
        if (emit) lookup.redisMs = since(started);
      } catch (error) {
        reportRedisError(emit, 'cache', 'bypassed', 'read', error, started);
        if (emit) reportBypass(req, 'redis-error');
        await runAndStore(req, res, next, lookup, { label: 'BYPASS', store: false });
        return;
      }
      let entry = found?.entry;
      if (entry && authorized && !entry.policy?.shareAuthorized) entry = undefined;
      if (entry && !varyMatches(entry, req)) entry = undefined;
      if (asked?.onlyIfCached && (!entry || !usableFor(asked, entry, Date.now()))) {
        // RFC 9111 §5.2.1.7: nothing stored that may answer it.
        if (emit) reportLookup(req, lookup, 'cache.miss');
        res.setHeader('X-Cache', 'MISS');
        res.status(504).end();
        return;
      }
      if (authorized || asked?.noStore) {
        // Not shared with anyone else's flight: produced for this request, stored only if its directives allow.
        if (entry && (asked ? usableFor(asked, entry, Date.now()) : isFresh(entry, Date.now()))) {
          return serveFound(req, res, entry, 'HIT', lookup);
        }
        await runAndStore(req, res, next, lookup, { label: 'MISS', store: !asked?.noStore, revalidate: entry });
        return;
      }
      if (entry) {
        const now = Date.now();
        const staleFor = now - entry.freshUntil;
        // Should the handler fail, the entry answers within its stale-if-error (or while still fresh).
        const fallback = !entry.policy?.noCache && staleFor < staleIfErrorOf(entry) ? entry : undefined;
        if (asked && refusedBy(asked, entry, now)) {
          return await missPath(req, res, next, lookup, { fallback, revalidate: entry });
        }
        if (isFresh(entry, now)) return serveFound(req, res, entry, 'HIT', lookup);
        if (asked?.maxStale !== undefined && !entry.policy?.mustRevalidate && !entry.policy?.noCache) {
          if (staleFor <= asked.maxStale * 1000) return serveFound(req, res, entry, 'STALE', lookup);
        }
        if (!entry.policy?.noCache && staleFor < staleWhileRevalidateOf(entry)) {
          // Every request gets the stale entry at once; one of them, across processes (whoever gets the lock),
          // has it refreshed in the background.
          const connection = connectionFacts(req);
          serveFound(req, res, entry, 'STALE', lookup);
          const leaseMs = lockConfig?.ttl ?? 10_000;
          const lock = await coalescer.lock(store.lockKey(lookup.base), leaseMs);
          if (lock) {
            const job: RefreshJob = { stale: entry };
            replayInBackground(req, connection, job, leaseMs, (error) => {
              if (error) store.logger.error(`redisware cache: a background refresh failed: ${String(error)}`);
              // Refreshed: released, and the next request finds it. Not refreshed (an error, or nothing storable
              // came back): the lock is left to expire, so the stale entry is served meanwhile without a refresh on
              // every request.
              const stored = error || !job.stored ? Promise.resolve(false) : job.stored;
              void stored.then((refreshed) => {
                if (refreshed) void coalescer.finish(lock, lookup.base);
                else lock.abandon();
              });
            });
          }
          return;
        }
        // Stale: asked again of the handler, with the entry's validators (a 304 freshens it).
        return await missPath(req, res, next, lookup, { fallback, revalidate: entry });
      }
      await missPath(req, res, next, lookup);
    } catch (error) {
      next(error);
    }
  };
  return middleware;
}
