// Producing an entry: the handler runs behind the cache, its response is teed as it streams to the client, and —
// if the sharing decision, taken once the whole exchange is known, allows — it is stored.
import type { NextFunction, Request, Response } from 'express';
import { now as clock, reportRedisError, since } from '../events.js';
import { isBackground } from '../http/marks.js';
import { watchSession } from '../http/session-view.js';
import { answerFrom } from './answer.js';
import { entryFrom, freshenedEntry, withHttpStorage } from './build.js';
import { captureResponse, type Head, type HeadDecision } from './capture.js';
import type { Lookup, RouteContext } from './context.js';
import { encodeResponse, type StoredResponse } from './entry.js';
import {
  conditionalRequestHeaders,
  firstHeader,
  type HeaderLines,
  headerLines,
  headerPairs,
  ifNoneMatchMatches,
  notModified,
  varyNames,
} from './http.js';
import type { Tag } from './keys.js';
import { keepFor } from './policy.js';
import { reportLookup } from './report.js';
import { decideSharing, personalReasons, type SessionFacts, type Sharing } from './sharing.js';
import { variantId } from './store.js';

/** How a response is produced. */
export interface ProduceOptions {
  /** The `X-Cache` label of the response (until the head says otherwise). */
  label: 'MISS' | 'BYPASS';
  /** Whether it may be stored at all. */
  store: boolean;
  /** An entry that answers instead should the handler fail (5xx): `staleIfError`, or a fresh entry. */
  fallback?: StoredResponse;
  /** A stale entry: the handler is asked with its validators, and a 304 from it serves and stores it freshened. */
  revalidate?: StoredResponse;
  /** Told as soon as it is known that nothing will be stored, so that whoever waits for it can stop. */
  onNotStored?: () => void;
}

/**
 * Hides the client's conditional headers from the handler (a MISS is produced in full, stored, and then answered
 * 304 if the client's validator matches), or gives it the validators of `revalidate` instead. Returns the function
 * that puts the client's back.
 */
function askUnconditionally(req: Request, revalidate: StoredResponse | undefined): () => void {
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
  return () => {
    for (const name of conditionalRequestHeaders) {
      if (conditional[name] === undefined) delete req.headers[name];
      else req.headers[name] = conditional[name];
    }
  };
}

/** The app's tags of a response, checked. */
function appTags(ctx: RouteContext, req: Request, res: Response): Tag[] {
  const { tags } = ctx.config;
  const given = typeof tags === 'function' ? tags(req, res) : (tags ?? []);
  if (!Array.isArray(given) || given.some((tag) => typeof tag !== 'string' || tag === '')) {
    throw new TypeError(
      `cache.response: the 'tags' function returned ${JSON.stringify(given) ?? String(given)} (expected an array of non-empty strings)`,
    );
  }
  return given.map((tag: string) => ({ kind: 'tag', tag }));
}

/** Headers as the policy reads a confirmed entry: its own, and what middleware in front set besides. */
function confirmedHeaders(stored: HeaderLines, outgoing: Head['all']): [string, string][] {
  const names = new Set(stored.map(([name]) => name.toLowerCase()));
  return [...stored, ...headerPairs(outgoing).filter(([name]) => !names.has(name.toLowerCase()))];
}

/**
 * Runs the handler as the producer of this request's entry (see {@link ProduceOptions}), and stores its response
 * when the sharing decision allows. Resolves to the stored entry.
 */
export async function produce(
  ctx: RouteContext,
  req: Request,
  res: Response,
  next: NextFunction,
  lookup: Lookup,
  options: ProduceOptions,
): Promise<StoredResponse | undefined> {
  const { config, rules, store, emit } = ctx;
  const { fallback, revalidate } = options;
  const requestTime = Date.now();
  const restoreConditional = askUnconditionally(req, revalidate);
  const session = watchSession(req, res);
  const authorized = req.headers.authorization !== undefined;
  const decide = (
    head: Head,
    stored: HeaderLines,
    outgoing: HeaderLines,
    facts: Omit<SessionFacts, 'perSession' | 'cameWith'>,
    confirmed: StoredResponse | undefined,
  ): Sharing =>
    decideSharing(
      {
        method: req.method,
        status: confirmed ? confirmed.status : head.status,
        handlerHeaders: head.handlerHeaders,
        storedHeaders: stored,
        outgoing,
        revalidation: confirmed !== undefined,
        authorized,
        requestTime,
        responseTime: Date.now(),
      },
      { perSession: lookup.perSession, cameWith: lookup.cameWith, ...facts },
      rules,
    );

  let head: Head | undefined;
  let varyOn: string[] = [];
  /** A stored entry the handler confirmed (304), freshened; `undefined` when it named another representation. */
  let confirmed: { entry: StoredResponse; same: boolean } | undefined;
  let replacedByFallback = false;
  let sharing: Sharing | undefined;
  const notStored = () => options.onNotStored?.();

  const captured = captureResponse(res, lookup.snapshot, config.maxBytes, {
    atHead(handlerHead): HeadDecision {
      head = handlerHead;
      if (fallback && handlerHead.status >= 500) {
        replacedByFallback = true;
        notStored();
        restoreConditional();
        reportLookup(ctx, req, lookup, 'cache.stale', fallback.body.length);
        return { kind: 'replace', answer: answerFrom(req, fallback, 'STALE', rules.httpMode) };
      }
      if (revalidate && handlerHead.status === 304) {
        // Still valid: the stored entry, freshened, answers this request (304 if the client's own validator
        // matches) and is stored again — unless the 304 names another representation (RFC 9111 §4.3.4).
        const entry = freshenedEntry(revalidate, handlerHead.handlerHeaders, rules.ttlMs);
        const etag = firstHeader(handlerHead.handlerHeaders, 'etag');
        const same =
          etag === undefined || revalidate.etagGenerated === true || ifNoneMatchMatches(etag, revalidate.etag);
        confirmed = { entry, same };
        varyOn = Object.keys(entry.vary ?? {});
        const early = decide(
          handlerHead,
          entry.headers,
          confirmedHeaders(entry.headers, handlerHead.all),
          session.current(),
          entry,
        );
        if (!options.store || !same || !early.store) notStored();
        restoreConditional();
        const answered = rules.httpMode ? withHttpStorage(entry, early.store ? early.http : undefined) : entry;
        reportLookup(ctx, req, lookup, 'cache.hit', entry.body.length);
        return { kind: 'replace', answer: answerFrom(req, answered, 'HIT', rules.httpMode) };
      }
      // The handler's own Vary: one set by outer middleware is about what they add, which is not stored and is
      // added again on every HIT (per-origin CORS sets Vary: Origin, and its header is this request's on a HIT).
      varyOn = varyNames(headerLines(handlerHead.handlerHeaders, 'vary'));
      const early = options.store
        ? decide(handlerHead, handlerHead.handlerHeaders, headerPairs(handlerHead.all), session.current(), undefined)
        : undefined;
      if (!early?.store) {
        notStored();
        if (early && personalReasons.has(early.reason)) res.setHeader('X-Cache', 'BYPASS');
      }
      restoreConditional();
      if (options.label === 'MISS') reportLookup(ctx, req, lookup, 'cache.miss');
      const keep = early?.store === true;
      const etag = handlerHead.all.etag === undefined ? undefined : String(handlerHead.all.etag);
      const lastModified =
        handlerHead.all['last-modified'] === undefined ? undefined : String(handlerHead.all['last-modified']);
      if ((handlerHead.status === 200 || handlerHead.status === 203) && notModified(req.headers, etag, lastModified)) {
        return { kind: 'not-modified', keep };
      }
      return { kind: 'pass', keep };
    },
    atEnd() {
      // The whole exchange is known: every middleware's header work is done (a session cookie issued in front
      // included), and so is the handler's body. The sharing decision is taken here, once.
      const facts = session.settle();
      if (!options.store || !head || replacedByFallback) return;
      const outgoing = headerPairs({ ...head.all, ...res.getHeaders() });
      if (confirmed) {
        if (confirmed.same)
          sharing = decide(
            head,
            confirmed.entry.headers,
            confirmedHeaders(confirmed.entry.headers, { ...head.all, ...res.getHeaders() }),
            facts,
            confirmed.entry,
          );
        return;
      }
      sharing = decide(head, head.handlerHeaders, outgoing, facts, undefined);
    },
  });
  res.setHeader('X-Cache', options.label);
  next();
  const response = await captured;
  restoreConditional();
  if (!sharing?.store) {
    notStored();
    return undefined;
  }
  const http = sharing.http;
  const entry = confirmed
    ? rules.httpMode
      ? withHttpStorage(confirmed.entry, http)
      : confirmed.entry
    : response && entryFrom(req, response, varyOn, http, rules.ttlMs);
  if (!entry) {
    notStored();
    return undefined;
  }
  let tags: Tag[];
  try {
    tags = [...lookup.family, ...appTags(ctx, req, res)];
  } catch (error) {
    // A bug in the app's `tags` function: the client has its response, but it is not cached untagged.
    store.logger.error(`redisware cache: not stored: ${(error as Error).message}`);
    notStored();
    return undefined;
  }
  const target = varyOn.length ? store.keys.variant(lookup.base, variantId(req, varyOn)) : lookup.base;
  if (varyOn.length) store.rememberVary(lookup.base, varyOn);
  const started = emit ? clock() : 0;
  const keep = Math.ceil(http ? keepFor(http, Date.now(), rules.ttlMs) : rules.keepMs);
  let stored: boolean;
  try {
    stored = await store.store({
      base: lookup.base,
      target,
      value: encodeResponse(entry),
      ttlMs: keep,
      tags,
      vary: varyOn.length ? { names: varyOn, id: variantId(req, varyOn) } : undefined,
      since: lookup.since,
    });
  } catch (error) {
    // Stored or not, the client already has its response; the next request simply misses.
    reportRedisError(emit, 'cache', 'bypassed', 'store', error, started);
    notStored();
    return undefined;
  }
  if (!stored) {
    // Invalidated while it was being produced: it may be older than what the invalidation made current.
    notStored();
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
}
