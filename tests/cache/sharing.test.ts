// The sharing decision on its own, rule by rule, without `res` or Redis: may this response be stored for the
// requests its key answers?
import type { OutgoingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { decideSharing, type FinalHead, type SessionFacts, type SharingRules } from '../../lib/cache/sharing.js';

const now = Date.now();
const rules = (changes: Partial<SharingRules> = {}): SharingRules => ({
  httpMode: false,
  statuses: new Set([200]),
  maxBytes: 1024,
  ttlMs: 60_000,
  keepMs: 60_000,
  policy: { ttlMs: 60_000, heuristic: 0, cdnCacheControl: true, staleWhileRevalidate: 0, staleIfError: 0 },
  ...changes,
});
const head = (changes: Partial<FinalHead> = {}): FinalHead => ({
  method: 'GET',
  status: 200,
  handlerHeaders: [['Content-Type', 'text/plain']],
  storedHeaders: [['Content-Type', 'text/plain']],
  outgoing: { 'content-type': 'text/plain' },
  revalidation: false,
  authorized: false,
  requestTime: now,
  responseTime: now,
  ...changes,
});
const anonymous: SessionFacts = { perSession: false, cameWith: undefined, personal: false, issued: undefined };
const reason = (outcome: ReturnType<typeof decideSharing>) => (outcome.store ? 'stored' : outcome.reason);

describe('decideSharing', () => {
  it('stores a plain 200 to a GET', () => {
    expect(reason(decideSharing(head(), anonymous, rules()))).toBe('stored');
  });

  it('stores only GET responses, never a partial one, and with ttl freshness only the statuses allowed', () => {
    expect(reason(decideSharing(head({ method: 'HEAD' }), anonymous, rules()))).toBe('method');
    expect(reason(decideSharing(head({ status: 206 }), anonymous, rules()))).toBe('partial');
    expect(reason(decideSharing(head({ status: 404 }), anonymous, rules()))).toBe('status');
    expect(reason(decideSharing(head({ status: 404 }), anonymous, rules({ statuses: new Set([404]) })))).toBe('stored');
  });

  it('never stores a response whose handler set a cookie', () => {
    const cookie = head({ handlerHeaders: [['Set-Cookie', 'a=1']] });
    expect(reason(decideSharing(cookie, anonymous, rules()))).toBe('cookie');
  });

  it('never stores a response that gives its client another session than it came with', () => {
    const perSession = { perSession: true, personal: true };
    // A first visitor's new session (saveUninitialized, or a token written into it in front).
    expect(reason(decideSharing(head(), { ...perSession, cameWith: '', issued: 'new-id' }, rules()))).toBe('session');
    // A regenerated or cleared one.
    expect(reason(decideSharing(head(), { ...perSession, cameWith: 'old', issued: 'new' }, rules()))).toBe('session');
    expect(reason(decideSharing(head(), { ...perSession, cameWith: 'old', issued: '' }, rules()))).toBe('session');
    // Refreshing the cookie of the session it came with changes nobody's session.
    expect(reason(decideSharing(head(), { ...perSession, cameWith: 'id', issued: 'id' }, rules()))).toBe('stored');
  });

  it('never shares a response made from the session, unless its key holds the session', () => {
    const read = { ...anonymous, personal: true };
    expect(reason(decideSharing(head(), read, rules()))).toBe('personal');
    // perSession, but no session middleware in front: nothing to key by.
    expect(reason(decideSharing(head(), { ...read, perSession: true }, rules()))).toBe('personal');
    expect(reason(decideSharing(head(), { ...read, perSession: true, cameWith: 'id' }, rules()))).toBe('stored');
    expect(reason(decideSharing(head(), { ...read, perSession: true, cameWith: '' }, rules()))).toBe('stored');
  });

  it('reads Vary over every line of it: a * on the second line is Vary: *', () => {
    const outgoing = { vary: ['Accept-Language', '*'] } as unknown as OutgoingHttpHeaders; // as res.append() leaves it
    expect(reason(decideSharing(head({ outgoing }), anonymous, rules()))).toBe('vary');
  });

  it('never stores an event stream or a body declared larger than maxBytes', () => {
    const stream = head({ outgoing: { 'content-type': 'text/event-stream' } });
    expect(reason(decideSharing(stream, anonymous, rules()))).toBe('stream');
    const large = head({ outgoing: { 'content-length': '2048' } });
    expect(reason(decideSharing(large, anonymous, rules()))).toBe('size');
  });

  it('with ttl freshness, refuses no-store, no-cache and private on any line, and stale responses with nothing to revalidate', () => {
    for (const value of ['no-store', 'no-cache', 'private', 'public, private="x"']) {
      const outgoing = { 'cache-control': ['max-age=60', value] } as unknown as OutgoingHttpHeaders;
      expect(reason(decideSharing(head({ outgoing }), anonymous, rules())), value).toBe('directives');
    }
    const stale = head({ storedHeaders: [['Cache-Control', 'max-age=0']] });
    expect(reason(decideSharing(stale, anonymous, rules()))).toBe('stale');
    const revalidatable = head({
      storedHeaders: [['Cache-Control', 'max-age=0']],
      handlerHeaders: [['ETag', '"a"']],
    });
    expect(reason(decideSharing(revalidatable, anonymous, rules()))).toBe('stored');
  });

  it('with http freshness, the safer reading of conflicting directives wins', () => {
    const http = rules({ httpMode: true });
    for (const lines of [
      ['private="x-foo", private, max-age=60'],
      ['private="x-foo"', 'private, max-age=60'],
      ['max-age=60, ext="a, private'],
      ['max-age=60, private="x-foo'],
      ['max-age=60, private="x"junk'],
    ]) {
      const outgoing = { 'cache-control': lines } as unknown as OutgoingHttpHeaders;
      expect(reason(decideSharing(head({ outgoing }), anonymous, http)), lines.join(' | ')).toBe('directives');
    }
    const qualified = head({ outgoing: { 'cache-control': 'private="x-foo", max-age=60' } });
    const decided = decideSharing(qualified, anonymous, http);
    expect(decided.store && decided.http?.strip).toEqual(['x-foo']);
  });

  it('a confirmed entry (304) is kept whatever its status rule or staleness', () => {
    const confirmed = head({ status: 404, revalidation: true, storedHeaders: [['Cache-Control', 'max-age=0']] });
    expect(reason(decideSharing(confirmed, anonymous, rules()))).toBe('stored');
  });
});
