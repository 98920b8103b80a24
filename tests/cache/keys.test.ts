// The cache's key encoder, proven by properties rather than examples: two different tuples of parts never give the
// same key, whatever the parts hold, and the keys Redis Cluster must keep together share a slot.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Audience,
  cacheKeys,
  encodePart,
  type ResponseName,
  type Tag,
  type Target,
} from '../../lib/cache/keys.js';

/** Parts as a hostile request or app would give them: separators, escapes, hash-like forms, long and non-ASCII. */
const part = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.constantFrom('', '/', '?', '#', '@', '{', '}', ':', '\n', '%', '%25', '%3A', '%#', '*', '-', 'url', 'key', 'v'),
  fc
    .array(fc.constantFrom('/', '?', '#', '@', '{', '}', ':', '\n', '%', 'a', 'é', '𝄞', 'GET', 'http'), {
      maxLength: 8,
    })
    .map((pieces) => pieces.join('')),
  fc.string({ minLength: 120, maxLength: 200 }),
);

const target: fc.Arbitrary<Target> = fc.record({ scheme: part, host: part, port: part, path: part, query: part });
const audience: fc.Arbitrary<Audience> = fc.oneof(
  fc.constant({ kind: 'shared' as const }),
  fc.constant({ kind: 'anonymous' as const }),
  fc.record({ kind: fc.constant('session' as const), id: part }),
);
const name: fc.Arbitrary<ResponseName> = fc.record({
  request: fc.oneof(fc.record({ target }), fc.record({ key: part })),
  audience,
  vary: fc.array(fc.tuple(part, part), { maxLength: 3 }),
});
const tag: fc.Arbitrary<Tag> = fc.oneof(
  fc.record({ kind: fc.constant('url' as const), url: part }),
  fc.record({ kind: fc.constant('key' as const), key: part }),
  fc.record({ kind: fc.constant('tag' as const), tag: part }),
);

const sample: ResponseName = {
  request: { target: { scheme: 'http', host: 'a', port: '', path: '/', query: '' } },
  audience: { kind: 'shared' },
  vary: [],
};

/** Everything the cache names in Redis, as the tuple it is named from. */
type Named =
  | { kind: 'response'; name: ResponseName }
  | { kind: 'variant'; name: ResponseName; id: string }
  | { kind: 'value'; key: string }
  | { kind: 'tag set'; tag: Tag }
  | { kind: 'tombstone'; tag: Tag }
  | { kind: 'response lock'; name: ResponseName }
  | { kind: 'refresh lock'; name: ResponseName }
  | { kind: 'value lock'; key: string };

const named: fc.Arbitrary<Named> = fc.oneof(
  fc.record({ kind: fc.constant('response' as const), name }),
  fc.record({ kind: fc.constant('variant' as const), name, id: part }),
  fc.record({ kind: fc.constant('value' as const), key: part }),
  fc.record({ kind: fc.constant('tag set' as const), tag }),
  fc.record({ kind: fc.constant('tombstone' as const), tag }),
  fc.record({ kind: fc.constant('response lock' as const), name }),
  fc.record({ kind: fc.constant('refresh lock' as const), name }),
  fc.record({ kind: fc.constant('value lock' as const), key: part }),
);

function keyOf(prefix: string, item: Named): string {
  const keys = cacheKeys(prefix);
  switch (item.kind) {
    case 'response':
      return keys.response(item.name);
    case 'variant':
      return keys.variant(keys.response(item.name), item.id);
    case 'value':
      return keys.value(item.key);
    case 'tag set':
      return keys.tagSet(item.tag);
    case 'tombstone':
      return keys.tombstone(item.tag);
    case 'response lock':
      return keys.lock(keys.response(item.name));
    case 'refresh lock':
      return keys.refreshLock(keys.response(item.name));
    case 'value lock':
      return keys.lock(keys.value(item.key));
  }
}

/** A tuple in one canonical form, for comparing two (property order and absent fields aside). */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_key, inner) =>
    inner && typeof inner === 'object' && !Array.isArray(inner)
      ? Object.fromEntries(Object.entries(inner).sort(([a], [b]) => (a < b ? -1 : 1)))
      : inner,
  );

describe('cacheKeys: one key, one tuple', () => {
  it('two different tuples of any kind never give the same key', () => {
    fc.assert(
      fc.property(named, named, (a, b) => {
        if (canonical(a) === canonical(b)) return;
        expect(keyOf('cache', a)).not.toBe(keyOf('cache', b));
      }),
      { numRuns: 5_000 },
    );
  });

  it('moving characters from one part to the next never gives the same key (host "h/a" + path "/b")', () => {
    fc.assert(
      fc.property(part, part, part, part, audience, (left, moved, right, rest, who) => {
        if (moved === '') return;
        const split = (host: string, path: string): ResponseName => ({
          request: { target: { scheme: 'http', host, port: '', path, query: rest } },
          audience: who,
          vary: [],
        });
        const keys = cacheKeys('cache');
        expect(keys.response(split(left + moved, right))).not.toBe(keys.response(split(left, moved + right)));
        expect(keys.value(left + moved)).not.toBe(keys.value(left));
        const vary = (pairs: [string, string][]): ResponseName => ({
          request: { key: rest },
          audience: who,
          vary: pairs,
        });
        expect(keys.response(vary([[left + moved, right]]))).not.toBe(keys.response(vary([[left, moved + right]])));
      }),
      { numRuns: 2_000 },
    );
  });

  it('escapes every part so that it holds no separator, and writes a long part as its hash', () => {
    fc.assert(
      fc.property(part, (text) => {
        const encoded = encodePart(text);
        expect(encoded).not.toMatch(/[:{}]/);
        if (text.length > 128) expect(encoded).toMatch(/^%#[A-Za-z0-9_-]{43}$/);
        else expect(decodeURIComponentSafe(encoded)).toBe(text);
      }),
      { numRuns: 3_000 },
    );
  });

  it('keeps a response with its variants and a tag set with its tombstone in one Redis Cluster slot', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 12 }), name, part, tag, (prefix, response, id, each) => {
        if (prefix === '' || prefix.includes('{}')) return; // createCache() refuses both
        const keys = cacheKeys(prefix);
        const base = keys.response(response);
        expect(hashedPart(keys.variant(base, id))).toBe(hashedPart(base));
        expect(hashedPart(keys.tombstone(each))).toBe(hashedPart(keys.tagSet(each)));
      }),
      { numRuns: 2_000 },
    );
  });

  it('two caches whose prefixes nest (`cache` and `cache:<anything>`) never share a key', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 8 }), part, named, named, (prefix, suffix, a, b) => {
        const nested = `${prefix}:${suffix}`;
        if (prefix.includes('{}') || nested.includes('{}')) return; // createCache() refuses both
        expect(keyOf(prefix, a)).not.toBe(keyOf(nested, b));
      }),
      { numRuns: 5_000 },
    );
    // The case that once collided: a tenant named `lock` beside the global cache.
    const keys = cacheKeys('cache');
    const tenant = cacheKeys('cache:lock');
    expect(keys.lock(keys.value('settings'))).not.toBe(tenant.value('settings'));
    expect(keys.lock(keys.response(sample))).not.toBe(tenant.response(sample));
  });

  it('tells the keys of its entries (what invalidation may delete) from every other key, its own or another cache’s', () => {
    const entries = new Set(['response', 'variant', 'value']);
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 8 }), part, named, (prefix, suffix, item) => {
        if (prefix.includes('{}') || suffix.includes('{}')) return;
        const keys = cacheKeys(prefix);
        expect(keys.isEntry(keyOf(prefix, item)), item.kind).toBe(entries.has(item.kind));
        expect(keys.isEntry(keyOf(`${prefix}:${suffix}`, item))).toBe(false);
      }),
      { numRuns: 5_000 },
    );
    // A prefix that opens a hash tag of its own, nested in another.
    for (const item of [{ kind: 'response', name: sample } as const, { kind: 'value', key: 'k' } as const]) {
      expect(cacheKeys('cache').isEntry(keyOf('cache:r:{a', item))).toBe(false);
    }
  });

  it('never names a key outside its prefix', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 12 }), named, (prefix, item) => {
        expect(keyOf(prefix, item).startsWith(`${prefix}:`)).toBe(true);
      }),
    );
  });
});

/**
 * The part of a key Redis Cluster hashes to choose its slot (the Cluster specification's rule): what lies between
 * the first `{` and the first `}` after it, when that is not empty; else the whole key.
 */
function hashedPart(key: string): string {
  const open = key.indexOf('{');
  if (open === -1) return key;
  const close = key.indexOf('}', open + 1);
  return close === -1 || close === open + 1 ? key : key.slice(open + 1, close);
}

/** Undoes the escapes of `encodePart` (%25, %3A, %7B, %7D), and only those. */
function decodeURIComponentSafe(encoded: string): string {
  return encoded.replace(/%(25|3A|7B|7D)/g, (_match, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}
