// Producing an entry: the handler runs behind the cache, its response is teed as it streams to the client, and —
// if the sharing decision, taken once the whole exchange is known, allows — it is stored.
import type { NextFunction, Request, Response } from 'express';
import { now as clock, reportRedisError, since } from '../events.js';
import { isBackground } from '../http/marks.js';
import { leaveSessionAlone, type SessionOutcome, type SessionWatch, watchSession } from '../http/session-view.js';
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
  ifNoneMatchMatches,
  notModified,
  varyNames,
} from './http.js';
import type { Tag } from './keys.js';
import { familyOf } from './lookup.js';
import { type HttpStorage, keepFor } from './policy.js';
import { reportLookup } from './report.js';
import { decideSharing, personalReasons, type Sharing } from './sharing.js';
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
    if (conditional[name] !== undefined) delete req.headers[name];
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
      if (conditional[name] !== undefined) req.headers[name] = conditional[name];
      else if (req.headers[name] !== undefined) delete req.headers[name];
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
function confirmedHeaders(stored: HeaderLines, outgoing: Head['all']): Head['all'] {
  const merged: Head['all'] = { ...outgoing };
  const grouped = new Map<string, string[]>();
  for (const [name, value] of stored) {
    const lower = name.toLowerCase();
    grouped.set(lower, [...(grouped.get(lower) ?? []), value]);
  }
  for (const [name, values] of grouped) merged[name] = values.length === 1 ? values[0] : values;
  return merged;
}

/** A stored entry the handler confirmed with a 304 to the cache's conditional request, freshened. */
interface Confirmed {
  entry: StoredResponse;
  /** The 304 is about the stored representation (it names no other ETag: RFC 9111 §4.3.4). */
  same: boolean;
}

/**
 * One production of an entry: what the handler's head said, and what the cache did with it. Its transitions are
 * {@link Production.atHead} (the handler's head: pass it on, answer 304, or answer with an entry instead) and
 * {@link Production.atEnd} (the exchange complete: the sharing decision).
 */
class Production {
  private head: Head | undefined;
  /** The request headers the handler's response varies on. */
  varyOn: string[] = [];
  confirmed: Confirmed | undefined;
  private replaced = false;
  /** The client is answered 304 (its validator matched): its content headers are removed on the way out. */
  private answered304 = false;
  /** The sharing decision, once taken (see `atEnd`). */
  sharing: Sharing | undefined;
  private readonly requestTime = Date.now();
  private readonly session: SessionWatch;
  readonly restoreConditional: () => void;

  constructor(
    private readonly ctx: RouteContext,
    private readonly req: Request,
    private readonly res: Response,
    private readonly lookup: Lookup,
    private readonly options: ProduceOptions,
  ) {
    this.restoreConditional = askUnconditionally(req, options.revalidate);
    this.session = watchSession(req, res);
  }

  /** Whoever waits for this production learns that nothing will be stored. */
  notStored(): void {
    this.options.onNotStored?.();
  }

  /** The sharing decision with what is known now (`outgoing`: the response's headers as they go out). */
  private decide(head: Head, facts: SessionOutcome, outgoing: Head['all']): Sharing {
    const { confirmed, req } = this;
    return decideSharing(
      {
        method: req.method,
        status: confirmed ? confirmed.entry.status : head.status,
        handlerHeaders: head.handlerHeaders,
        storedHeaders: confirmed ? confirmed.entry.headers : head.handlerHeaders,
        outgoing: confirmed ? confirmedHeaders(confirmed.entry.headers, outgoing) : outgoing,
        revalidation: confirmed !== undefined,
        authorized: req.headers.authorization !== undefined,
        requestTime: this.requestTime,
        responseTime: Date.now(),
      },
      { perSession: this.lookup.perSession, cameWith: this.lookup.cameWith, ...facts },
      this.ctx.rules,
    );
  }

  /** The handler's head is going out: what to send (see `HeadDecision`). */
  atHead(head: Head): HeadDecision {
    this.head = head;
    const { fallback, revalidate } = this.options;
    if (fallback && head.status >= 500) return this.answerInstead(fallback);
    if (revalidate && head.status === 304) return this.answerConfirmed(head, revalidate);
    return this.passOn(head);
  }

  /** The handler failed: the fallback entry answers (`staleIfError`), and nothing is stored. */
  private answerInstead(fallback: StoredResponse): HeadDecision {
    this.replaced = true;
    this.notStored();
    this.restoreConditional();
    reportLookup(this.ctx, this.req, this.lookup, 'cache.stale', fallback.body.length);
    return { kind: 'replace', answer: answerFrom(this.req, fallback, 'STALE', this.ctx.rules.httpMode) };
  }

  /**
   * Still valid: the stored entry, freshened, answers this request (304 if the client's own validator matches)
   * and is stored again — unless the 304 names another representation.
   */
  private answerConfirmed(head: Head, revalidate: StoredResponse): HeadDecision {
    const { ctx, req } = this;
    const entry = freshenedEntry(revalidate, head.handlerHeaders, ctx.rules.ttlMs);
    const etag = firstHeader(head.handlerHeaders, 'etag');
    const same = etag === undefined || revalidate.etagGenerated === true || ifNoneMatchMatches(etag, revalidate.etag);
    this.confirmed = { entry, same };
    this.varyOn = Object.keys(entry.vary ?? {});
    const early = this.decide(head, this.session.current(), head.all);
    if (!this.options.store || !same || !early.store) this.notStored();
    this.restoreConditional();
    const answered = ctx.rules.httpMode ? withHttpStorage(entry, early.store ? early.http : undefined) : entry;
    reportLookup(ctx, req, this.lookup, 'cache.hit', entry.body.length);
    return { kind: 'replace', answer: answerFrom(req, answered, 'HIT', ctx.rules.httpMode) };
  }

  /**
   * The handler's response goes to the client (answered 304 if its validator matches), labelled BYPASS when it is
   * already known to be the client's own; its bytes are kept only while it may still be stored.
   */
  private passOn(head: Head): HeadDecision {
    const { req, res } = this;
    // The handler's own Vary: one set by outer middleware is about what they add, which is not stored and is
    // added again on every HIT (per-origin CORS sets Vary: Origin, and its header is this request's on a HIT).
    this.varyOn = varyNames(headerLines(head.handlerHeaders, 'vary'));
    const early = this.options.store ? this.decide(head, this.session.current(), head.all) : undefined;
    if (!early?.store) {
      this.notStored();
      // Labelled BYPASS: the response is its client's own. A cache behind this one that answered it labels it.
      const ownLabel = res.getHeader('X-Cache') === this.options.label;
      if (early && personalReasons.has(early.reason) && ownLabel) res.setHeader('X-Cache', 'BYPASS');
    }
    this.restoreConditional();
    if (this.options.label === 'MISS') reportLookup(this.ctx, req, this.lookup, 'cache.miss');
    const keep = early?.store === true;
    const etag = head.all.etag === undefined ? undefined : String(head.all.etag);
    const lastModified = head.all['last-modified'] === undefined ? undefined : String(head.all['last-modified']);
    this.answered304 = (head.status === 200 || head.status === 203) && notModified(req.headers, etag, lastModified);
    return { kind: this.answered304 ? 'not-modified' : 'pass', keep };
  }

  /**
   * The whole exchange is known: every middleware's header work is done (a session cookie issued by one in front
   * included), and so is the handler's body. The sharing decision is taken here, once.
   */
  atEnd(): void {
    const facts = this.session.settle();
    if (isBackground(this.req)) leaveSessionAlone(this.req);
    const { head, confirmed } = this;
    if (!this.options.store || !head || this.replaced || (confirmed && !confirmed.same)) return;
    // Headers removed on the way out (a 304 to the client loses its content headers) still count as sent.
    const outgoing = this.res.getHeaders();
    this.sharing = this.decide(head, facts, this.answered304 ? { ...head.all, ...outgoing } : outgoing);
  }
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
  const production = new Production(ctx, req, res, lookup, options);
  const captured = captureResponse(res, lookup.snapshot, ctx.config.maxBytes, {
    atHead: (head) => production.atHead(head),
    atEnd: () => production.atEnd(),
  });
  res.setHeader('X-Cache', options.label);
  next();
  const response = await captured;
  production.restoreConditional();
  const { sharing, confirmed, varyOn } = production;
  const entry = !sharing?.store
    ? undefined
    : confirmed
      ? ctx.rules.httpMode
        ? withHttpStorage(confirmed.entry, sharing.http)
        : confirmed.entry
      : response && entryFrom(req, response, varyOn, sharing.http, ctx.rules.ttlMs);
  const stored = entry && sharing?.store ? await storeEntry(ctx, req, res, lookup, entry, varyOn, sharing.http) : false;
  if (!stored) production.notStored();
  return stored ? entry : undefined;
}

/**
 * Stores `entry` with its tags, as the variant it is: `false` when it was not (the app's `tags` threw, Redis
 * failed, or one of its tags was invalidated while it was produced: it may predate what that made current).
 */
async function storeEntry(
  ctx: RouteContext,
  req: Request,
  res: Response,
  lookup: Lookup,
  entry: StoredResponse,
  varyOn: string[],
  http: HttpStorage | undefined,
): Promise<boolean> {
  const { store, rules, emit } = ctx;
  let tags: Tag[];
  try {
    tags = [...familyOf(lookup), ...appTags(ctx, req, res)];
  } catch (error) {
    // A bug in the app's `tags` function: the client has its response, but it is not cached untagged.
    store.logger.error(`redisware cache: not stored: ${(error as Error).message}`);
    return false;
  }
  const id = varyOn.length ? variantId(req, varyOn) : '';
  if (varyOn.length) store.rememberVary(lookup.base, varyOn);
  const started = emit ? clock() : 0;
  const keep = Math.ceil(http ? keepFor(http, Date.now(), rules.ttlMs) : rules.keepMs);
  let stored: boolean;
  try {
    stored = await store.store({
      base: lookup.base,
      target: id ? store.keys.variant(lookup.base, id) : lookup.base,
      value: encodeResponse(entry),
      ttlMs: keep,
      tags,
      vary: id ? { names: varyOn, id } : undefined,
      since: lookup.since,
    });
  } catch (error) {
    // Stored or not, the client already has its response; the next request simply misses.
    reportRedisError(emit, 'cache', 'bypassed', 'store', error, started);
    return false;
  }
  if (stored) {
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
  }
  return stored;
}
