// `freshness: 'http'`, rule by rule: what a shared cache may store (RFC 9111 §3), for how long (§4.2), and what it
// may serve stale (§4.2.4, RFC 5861), decided once when a response is stored.
import { describe, expect, it } from 'vitest';
import { correctedInitialAge, httpStorage, keepFor, type PolicyOptions } from '../../lib/cache/policy.js';

const now = Date.UTC(2026, 11, 1, 12, 0, 0);
const httpDate = (ms: number) => new Date(ms).toUTCString();
const options: PolicyOptions = {
  ttlMs: 86_400_000,
  heuristic: 0,
  cdnCacheControl: true,
  staleWhileRevalidate: 0,
  staleIfError: 0,
};

function storage(headers: [string, string][], more: { status?: number; authorized?: boolean } = {}, opts = options) {
  return httpStorage(
    { status: more.status ?? 200, headers, authorized: more.authorized ?? false, requestTime: now, responseTime: now },
    opts,
  );
}
/** Seconds the response is fresh for, as stored now; `undefined` when it is not stored. */
const freshFor = (headers: [string, string][], more = {}, opts = options) => {
  const stored = storage(headers, more, opts);
  return stored && (stored.freshUntil - now) / 1000;
};

describe('storing (§3)', () => {
  it('stores a response with explicit freshness, and one without only if it has a validator to revalidate', () => {
    expect(freshFor([['Cache-Control', 'max-age=60']])).toBe(60);
    expect(storage([])).toBeUndefined();
    expect(freshFor([['ETag', '"v1"']])).toBe(0);
    expect(freshFor([['Last-Modified', httpDate(now - 3_600_000)]])).toBe(0);
  });

  it('never stores no-store or private, whatever else they say; no-store matches without regard to case', () => {
    expect(storage([['Cache-Control', 'nO-StOrE, max-age=60']])).toBeUndefined();
    expect(
      storage([
        ['Cache-Control', 'max-age=60'],
        ['Cache-Control', 'no-store'],
      ]),
    ).toBeUndefined();
    expect(storage([['Cache-Control', 'private, max-age=60']])).toBeUndefined();
  });

  it('stores a qualified private or no-cache response without the fields it names', () => {
    expect(storage([['Cache-Control', 'private="X-User", max-age=60']])?.strip).toEqual(['x-user']);
    expect(storage([['Cache-Control', 'no-cache="Set-Foo", max-age=60']])?.strip).toEqual(['set-foo']);
    expect(storage([['Cache-Control', 'no-cache="Set-Foo", max-age=60']])?.policy.noCache).toBeUndefined();
  });

  it('must-understand overrides no-store for a status it implements, and forbids storing any other', () => {
    const headers: [string, string][] = [['Cache-Control', 'max-age=60, no-store, must-understand']];
    expect(freshFor(headers, { status: 200 })).toBe(60);
    expect(storage(headers, { status: 599 })).toBeUndefined();
  });

  it('stores the response to a request with Authorization only when public, s-maxage or must-revalidate allows it', () => {
    expect(storage([['Cache-Control', 'max-age=60']], { authorized: true })).toBeUndefined();
    for (const cc of ['public, max-age=60', 's-maxage=60', 'max-age=60, must-revalidate']) {
      expect(storage([['Cache-Control', cc]], { authorized: true })?.policy.shareAuthorized, cc).toBe(true);
    }
  });

  it('any final status with explicit freshness; without it, only the statuses cacheable by default', () => {
    for (const status of [200, 203, 204, 299, 301, 302, 303, 307, 308, 400, 404, 410, 499, 500, 502, 503, 504, 599]) {
      expect(freshFor([['Cache-Control', 'max-age=60']], { status }), String(status)).toBe(60);
    }
    expect(storage([['ETag', '"v"']], { status: 404 })).toBeDefined();
    expect(storage([['ETag', '"v"']], { status: 302 })).toBeUndefined();
    expect(
      storage(
        [
          ['ETag', '"v"'],
          ['Cache-Control', 'public'],
        ],
        { status: 302 },
      ),
    ).toBeDefined();
  });

  it('never stores partial content, a 304 or an interim response, nor statuses the route left out', () => {
    for (const status of [206, 304, 103]) {
      expect(storage([['Cache-Control', 'max-age=60']], { status }), String(status)).toBeUndefined();
    }
    const only200 = { ...options, statuses: new Set([200]) };
    expect(storage([['Cache-Control', 'max-age=60']], { status: 404 }, only200)).toBeUndefined();
  });

  it('does not store what would be useless: stale on arrival, with no validator and no stale window', () => {
    expect(storage([['Cache-Control', 'max-age=0']])).toBeUndefined();
    expect(storage([['Cache-Control', 'max-age=0, stale-if-error=60']])).toBeDefined();
  });
});

describe('freshness lifetime (§4.2.1)', () => {
  it('s-maxage over max-age over Expires, in whatever order they come', () => {
    expect(freshFor([['Cache-Control', 'max-age=3600, s-maxage=60']])).toBe(60);
    expect(freshFor([['Cache-Control', 's-maxage=60, max-age=3600']])).toBe(60);
    expect(freshFor([['Cache-Control', 'max-age=0, s-maxage=3600']])).toBe(3600);
    expect(
      freshFor([
        ['Cache-Control', 'max-age=60'],
        ['Expires', httpDate(now - 60_000)],
      ]),
    ).toBe(60);
  });

  it('a negative or malformed max-age makes the response stale', () => {
    for (const cc of ['max-age=-1', "max-age='3600'", 'max-age=3600.5', 'max-age=a3600']) {
      expect(
        storage([
          ['Cache-Control', cc],
          ['ETag', '"v"'],
        ])?.freshUntil,
        cc,
      ).toBe(now);
    }
  });

  it('Expires counts from Date (or, when Date is invalid, from when the response came)', () => {
    expect(
      freshFor([
        ['Expires', httpDate(now + 120_000)],
        ['Date', httpDate(now - 60_000)],
      ]),
    ).toBe(180 - 60);
    expect(
      freshFor([
        ['Expires', httpDate(now + 120_000)],
        ['Date', 'yesterday'],
      ]),
    ).toBe(120);
  });

  it('an invalid Expires, or one repeated, is already expired; a max-age beside it still counts', () => {
    for (const expires of [['0'], ['Thu, 18 Aug 2050 02:01:18 UTC'], [httpDate(now + 1e6), httpDate(now + 2e6)]]) {
      const headers: [string, string][] = [['ETag', '"v"'], ...expires.map((v): [string, string] => ['Expires', v])];
      expect(freshFor(headers), expires.join(' | ')).toBe(0);
    }
    expect(
      freshFor([
        ['Expires', '0'],
        ['Cache-Control', 'max-age=60'],
      ]),
    ).toBe(60);
  });

  it('is capped by the route ttl', () => {
    expect(freshFor([['Cache-Control', 'max-age=99999999999']], {}, { ...options, ttlMs: 60_000 })).toBe(60);
  });

  it('a heuristic lifetime only when enabled: a fraction of the time since Last-Modified, for default-cacheable statuses', () => {
    const headers: [string, string][] = [
      ['Last-Modified', httpDate(now - 100_000_000)],
      ['Date', httpDate(now)],
    ];
    expect(freshFor(headers)).toBe(0);
    expect(freshFor(headers, {}, { ...options, heuristic: 0.1 })).toBe(10_000);
    expect(freshFor(headers, { status: 201 }, { ...options, heuristic: 0.1 })).toBeUndefined();
  });
});

describe('age (§4.2.3)', () => {
  it('the larger of the time since Date and Age plus the response delay', () => {
    const facts = { status: 200, authorized: false, requestTime: now - 2_000, responseTime: now };
    expect(correctedInitialAge({ ...facts, headers: [['Age', '10']] })).toBe(12);
    expect(correctedInitialAge({ ...facts, headers: [['Date', httpDate(now - 30_000)]] })).toBe(30);
    expect(
      correctedInitialAge({
        ...facts,
        headers: [
          ['Date', httpDate(now - 30_000)],
          ['Age', '100'],
        ],
      }),
    ).toBe(102);
  });

  it('uses up the lifetime: an Age above max-age is stale on arrival', () => {
    expect(
      freshFor([
        ['Cache-Control', 'max-age=3600'],
        ['Age', '600'],
      ]),
    ).toBe(3000);
    expect(
      storage([
        ['Cache-Control', 'max-age=3600'],
        ['Age', '7200'],
      ]),
    ).toBeUndefined();
    expect(
      storage([
        ['Cache-Control', 'max-age=3600'],
        ['Age', '2147483648'],
      ]),
    ).toBeUndefined();
  });
});

describe('serving stale (§4.2.4, RFC 5861)', () => {
  const route = { ...options, staleWhileRevalidate: 5_000, staleIfError: 7_000 };

  it("the response's stale-while-revalidate and stale-if-error, else the route's windows", () => {
    const stated = storage([['Cache-Control', 'max-age=1, stale-while-revalidate=30, stale-if-error=60']], {}, route);
    expect(stated?.policy).toMatchObject({ staleWhileRevalidate: 30_000, staleIfError: 60_000 });
    expect(storage([['Cache-Control', 'max-age=1']], {}, route)?.policy).toMatchObject({
      staleWhileRevalidate: 5_000,
      staleIfError: 7_000,
    });
  });

  it('never with must-revalidate, proxy-revalidate, s-maxage or no-cache', () => {
    for (const cc of ['must-revalidate', 'proxy-revalidate', 's-maxage=1', 'no-cache']) {
      const policy = storage(
        [
          ['Cache-Control', `max-age=1, stale-if-error=60, ${cc}`],
          ['ETag', '"v"'],
        ],
        {},
        route,
      )?.policy;
      expect(policy, cc).toMatchObject({ staleWhileRevalidate: 0, staleIfError: 0 });
    }
  });

  it('no-cache is stored, to be revalidated before every use', () => {
    expect(
      storage([
        ['Cache-Control', 'no-cache, max-age=3600'],
        ['ETag', '"v"'],
      ])?.policy.noCache,
    ).toBe(true);
  });
});

describe('CDN-Cache-Control (RFC 9213)', () => {
  it('replaces Cache-Control and Expires when present and valid', () => {
    expect(
      freshFor([
        ['CDN-Cache-Control', 'max-age=600'],
        ['Cache-Control', 'no-store'],
      ]),
    ).toBe(600);
    expect(
      freshFor([
        ['CDN-Cache-Control', 'max-age=60'],
        ['Cache-Control', 'max-age=3600'],
      ]),
    ).toBe(60);
    expect(
      storage([
        ['CDN-Cache-Control', 'no-store'],
        ['Cache-Control', 'max-age=3600'],
      ]),
    ).toBeUndefined();
    expect(
      storage([
        ['CDN-Cache-Control', 'max-age=0'],
        ['Expires', httpDate(now + 3_600_000)],
      ]),
    ).toBeUndefined();
  });

  it('is ignored when invalid, or when the route turns it off', () => {
    expect(
      storage([
        ['CDN-Cache-Control', 'max-age="600"'],
        ['Cache-Control', 'no-store'],
      ]),
    ).toBeUndefined();
    const ignoring = { ...options, cdnCacheControl: false };
    expect(
      freshFor(
        [
          ['CDN-Cache-Control', 'max-age=600'],
          ['Cache-Control', 'max-age=60'],
        ],
        {},
        ignoring,
      ),
    ).toBe(60);
  });
});

describe('how long an entry is kept', () => {
  it('for the ttl when it can be revalidated; else while it is fresh or within a stale window', () => {
    const ttl = 86_400_000;
    const revalidatable = storage([
      ['Cache-Control', 'max-age=60'],
      ['ETag', '"v"'],
    ]);
    expect(revalidatable && keepFor(revalidatable, now, ttl)).toBe(ttl);
    const plain = storage([['Cache-Control', 'max-age=60, stale-if-error=30']]);
    expect(plain && keepFor(plain, now, ttl)).toBe(90_000);
  });
});
