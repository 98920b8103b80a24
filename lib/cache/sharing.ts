// May this response be stored, and so shared with the requests its key will answer? One pure decision, with no
// `res` and no Redis, taken when the response's head is final: after every middleware's header work, so that a
// session created, written or issued on the way out counts, whoever did it.
import type { OutgoingHttpHeaders } from 'node:http';
import { freshUntil } from './freshness.js';
import { firstHeader, forbidsStoring, type HeaderLines, headerPairs, varyNames } from './http.js';
import { type HttpStorage, httpStorage, type PolicyOptions } from './policy.js';

/** The route's rules for what is stored (from `cache.response()`'s options). */
export interface SharingRules {
  httpMode: boolean;
  /** Statuses stored with `freshness: 'ttl'`. */
  statuses: ReadonlySet<number>;
  maxBytes: number;
  ttlMs: number;
  /** How long an entry is kept with `'ttl'`: `ttl` plus the longer stale window. */
  keepMs: number;
  policy: PolicyOptions;
}

/** The response as its head goes out. */
export interface FinalHead {
  method: string;
  /** The handler's status (the client may be answered 304 instead). */
  status: number;
  /** The headers the handler set on this response. */
  handlerHeaders: HeaderLines;
  /**
   * The headers that would be stored: the handler's, or, for a stored entry its handler answered 304, the entry's
   * merged with the 304's. Also what `'ttl'` freshness is read from.
   */
  storedHeaders: HeaderLines;
  /**
   * Every header of the response as it goes out, whoever set it, by lower-case name (`res.getHeaders()`): what
   * `'http'` directives are read from.
   */
  outgoing: OutgoingHttpHeaders;
  /** A stored entry the handler confirmed (304): its status was stored before, and it is kept even if stale. */
  revalidation: boolean;
  authorized: boolean;
  requestTime: number;
  responseTime: number;
}

/** The session side of the request, as the session middleware in front left it when the head went out. */
export interface SessionFacts {
  /** Entries are kept per session (`perSession`) and a session middleware is in front. */
  perSession: boolean;
  /** The stored session the request came with (`''`: none; `undefined`: no session middleware). */
  cameWith: string | undefined;
  /** The response was made from the session (it read or wrote it). */
  personal: boolean;
  /** The session id the response gives the client (`''`: clears), if it issues one. */
  issued: string | undefined;
  /**
   * The stored session the request has once the response is complete, when known: a `perSession` entry is stored
   * only for the session the request came with and still has (not after a `destroy()` or `regenerate()`).
   */
  identity?: string | undefined;
}

/** Why a response is not stored. */
export type NotStored =
  | 'method'
  | 'partial'
  | 'status'
  | 'cookie'
  | 'session'
  | 'personal'
  | 'vary'
  | 'stream'
  | 'size'
  | 'directives'
  | 'stale';

/** The decision: stored (with `'http'`, how), or not and why. */
export type Sharing = { store: true; http?: HttpStorage } | { store: false; reason: NotStored };

/** Reasons that make a response someone's own: labelled `X-Cache: BYPASS`, not MISS. */
export const personalReasons: ReadonlySet<NotStored> = new Set(['cookie', 'session', 'personal']);

const notStored = (reason: NotStored): Sharing => ({ store: false, reason });

/** Every line of an outgoing header (`name` lower case). */
function lines(outgoing: OutgoingHttpHeaders, name: string): string[] {
  const value = outgoing[name];
  if (value === undefined) return [];
  return Array.isArray(value) ? value.map(String) : [String(value)];
}

/**
 * Whether a response may be stored for the requests its key answers:
 * - only a GET's, not a partial response (206), with `'ttl'` only a status of `statuses`;
 * - not one whose handler set a cookie, nor one that gives the client another session than it came with (a new,
 *   regenerated or cleared session: a first visitor's new session is nobody else's);
 * - not one made from the session, unless its key holds the session (`perSession`);
 * - not `Vary: *`, an event stream, or a body over `maxBytes`;
 * - with `'http'`, as its directives say (RFC 9111 §3); with `'ttl'`, not `no-store`/`no-cache`/`private`, nor stale
 *   as it comes without a validator or a stale window to use it in.
 */
export function decideSharing(head: FinalHead, session: SessionFacts, rules: SharingRules): Sharing {
  if (head.method !== 'GET') return notStored('method');
  if (head.status === 206) return notStored('partial');
  if (!rules.httpMode && !head.revalidation && !rules.statuses.has(head.status)) return notStored('status');
  if (firstHeader(head.handlerHeaders, 'set-cookie') !== undefined) return notStored('cookie');
  if (session.issued !== undefined && session.issued !== (session.cameWith ?? '')) return notStored('session');
  const keyedBySession = session.perSession && session.cameWith !== undefined;
  if (keyedBySession && 'identity' in session && session.identity !== session.cameWith) return notStored('session');
  if (session.personal && !keyedBySession) return notStored('personal');
  const { outgoing } = head;
  if (outgoing.vary !== undefined && varyNames(lines(outgoing, 'vary')).includes('*')) return notStored('vary');
  if ((lines(outgoing, 'content-type')[0] ?? '').startsWith('text/event-stream')) return notStored('stream');
  const length = Number(lines(outgoing, 'content-length')[0]);
  if (Number.isFinite(length) && length > rules.maxBytes) return notStored('size');
  if (rules.httpMode) {
    const http = httpStorage(
      {
        status: head.status,
        headers: headerPairs(outgoing),
        authorized: head.authorized,
        requestTime: head.requestTime,
        responseTime: head.responseTime,
      },
      head.revalidation ? { ...rules.policy, statuses: undefined } : rules.policy,
    );
    return http ? { store: true, http } : notStored('directives');
  }
  if (outgoing['cache-control'] !== undefined && forbidsStoring(lines(outgoing, 'cache-control').join(', '))) {
    return notStored('directives');
  }
  // Stale as it comes (its own max-age used up by its Age, an Expires in the past): kept only if it can be
  // revalidated (it has a validator of the handler's) or served stale.
  const now = head.responseTime;
  if (
    !head.revalidation &&
    rules.keepMs === rules.ttlMs &&
    firstHeader(head.handlerHeaders, 'etag') === undefined &&
    firstHeader(head.handlerHeaders, 'last-modified') === undefined &&
    freshUntil(head.storedHeaders, now, rules.ttlMs) <= now
  ) {
    return notStored('stale');
  }
  return { store: true };
}
