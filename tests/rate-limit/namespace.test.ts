// Where a limiter counts, proven by properties: two different (namespace, client, rule) tuples never give the same
// key, a long client never takes a short client's key, and a limiter's rules decide its default namespace.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseOptions } from '../../lib/options.js';
import { limiterKeys, limiterNamespace, rulesFingerprint } from '../../lib/rate-limit/namespace.js';
import { type RateLimitOptions, rateLimitSchema } from '../../lib/rate-limit/options.js';

/** Clients as a hostile request or key function gives them: separators, escapes, hash-like forms, long ones. */
const client = fc.oneof(
  fc.string({ minLength: 1, maxLength: 12 }),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }),
  fc.constantFrom(':', '{', '}', '%', '%25', '%3A', '%#', 'sha256-', '1.2.3.4', '2001:db8::/56', 'unknown'),
  fc
    .array(fc.constantFrom(':', '{', '}', '%', '#', 'a', 'é', '𝄞', '1.2.3.4'), { minLength: 1, maxLength: 8 })
    .map((pieces) => pieces.join('')),
  fc.string({ minLength: 120, maxLength: 300 }),
);
const namespace = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_-]{1,16}$/),
  fc.constantFrom('fixed.100-15m', 'sliding.5-1m.custom'),
);
const ruleNames = fc.option(
  fc.uniqueArray(fc.stringMatching(/^[A-Za-z0-9_.:-]{1,8}$/), { minLength: 1, maxLength: 3 }),
);

describe('limiter keys', () => {
  it('never give two different (namespace, client) pairs the same key, with one rule or several', () => {
    fc.assert(
      fc.property(fc.tuple(namespace, client), fc.tuple(namespace, client), ruleNames, (a, b, rules) => {
        fc.pre(a[0] !== b[0] || a[1] !== b[1]);
        const keysA = limiterKeys('rate', a[0], rules ?? undefined).of(a[1]);
        const keysB = limiterKeys('rate', b[0], rules ?? undefined).of(b[1]);
        for (const key of keysA) expect(keysB).not.toContain(key);
      }),
      { numRuns: 2_000 },
    );
  });

  it('give each rule of a client its own key, all in the client’s Cluster slot', () => {
    fc.assert(
      fc.property(
        namespace,
        client,
        fc.uniqueArray(fc.stringMatching(/^[A-Za-z0-9_.:-]{1,8}$/), { minLength: 2 }),
        (ns, who, rules) => {
          const keys = limiterKeys('rate', ns, rules).of(who);
          expect(new Set(keys).size).toBe(rules.length);
          const tags = keys.map((key) => /\{([^}]*)\}/.exec(key)?.[1]);
          expect(new Set(tags).size).toBe(1);
        },
      ),
    );
  });

  it('keep a long client under a hash no literal client can spell', () => {
    const long = 'x'.repeat(300);
    const [hashed] = limiterKeys('rate', 'n', undefined).of(long);
    const spelled = hashed.slice('rate:n:'.length);
    expect(spelled.startsWith('%#')).toBe(true);
    expect(limiterKeys('rate', 'n', undefined).of(spelled)).not.toEqual([hashed]);
    expect(hashed.length).toBeLessThan(80);
  });
});

describe('the default namespace', () => {
  const namespaceOf = (options: RateLimitOptions) =>
    limiterNamespace(parseOptions('rateLimit', rateLimitSchema, options));

  it('differs between limiters with different rules, algorithms or ways to key clients', () => {
    const namespaces = [
      namespaceOf({}),
      namespaceOf({ limit: 5, window: '1m' }),
      namespaceOf({ limit: 5, window: '1m', algorithm: 'sliding-window' }),
      namespaceOf({ limit: 5, window: '1m', key: () => 'user' }),
      namespaceOf({
        limit: [
          { limit: 5, window: '1m' },
          { limit: 50, window: '1h' },
        ],
      }),
      namespaceOf({ limit: () => 5, window: '1m' }),
    ];
    expect(new Set(namespaces).size).toBe(namespaces.length);
    expect(namespaceOf({})).toBe('fixed.100-15m');
    expect(
      namespaceOf({
        limit: [
          { limit: 10, window: '1s' },
          { limit: 1_000, window: '1d' },
        ],
        algorithm: 'token-bucket',
      }),
    ).toBe('bucket.10-1s.1000-1d');
  });

  it('is the same for the same rules (another process, another route), and the name when given', () => {
    expect(namespaceOf({ limit: 5, window: '1m', headers: 'legacy' })).toBe(namespaceOf({ limit: 5, window: 60_000 }));
    expect(namespaceOf({ limit: 5, window: '1m', cost: 2 })).toBe('fixed.5-1m.cost2');
    expect(namespaceOf({ name: 'login', limit: 5, window: '1m' })).toBe('login');
  });

  it('never equals a name: a fingerprint always holds a dot, a name never does', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 1, max: 1e9 }), (limit, window) => {
        const fingerprint = rulesFingerprint(parseOptions('rateLimit', rateLimitSchema, { limit, window }));
        expect(fingerprint).toContain('.');
        expect(() => parseOptions('rateLimit', rateLimitSchema, { name: fingerprint })).toThrow(/name/);
      }),
      { numRuns: 200 },
    );
  });
});
