import { describe, expect, it } from 'vitest';
import { hashTag, key, keyspace } from '../lib/index.js';

describe('key()', () => {
  it('joins parts with a colon', () => {
    expect(key('user', 'abc123')).toBe('user:abc123');
    expect(key('user', 'abc123', 'orders')).toBe('user:abc123:orders');
    expect(key('rate', '1.2.3.4')).toBe('rate:1.2.3.4');
    expect(key('user', 42)).toBe('user:42');
  });

  it('escapes colons and percent signs inside a part so different part lists never collide', () => {
    expect(key('a:b', 'c')).not.toBe(key('a', 'b:c'));
    expect(key('a%3Ab')).not.toBe(key('a:b'));
    expect(key('a:b', 'c')).toBe('a%3Ab:c');
    expect(key('100%')).toBe('100%25');
  });

  it('rejects empty, missing and non-string parts', () => {
    expect(() => key()).toThrow(TypeError);
    expect(() => key('user', '')).toThrow(/part 1/);
    expect(() => key('user', undefined as unknown as string)).toThrow(TypeError);
    expect(() => key('user', null as unknown as string)).toThrow(TypeError);
    expect(() => key('user', {} as unknown as string)).toThrow(TypeError);
    expect(() => key('user', Number.NaN)).toThrow(TypeError);
  });

  it('never maps two distinct random part lists to the same key (property test)', () => {
    const alphabet = ['a', 'b', ':', '%', '3', 'A', '{', '}', ' ', 'é'];
    // mulberry32: a seeded generator, so a failure can be replayed.
    let seed = 12345;
    const random = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const randomPart = () => {
      const length = 1 + Math.floor(random() * 4);
      let part = '';
      for (let i = 0; i < length; i++) part += alphabet[Math.floor(random() * alphabet.length)];
      return part;
    };
    const seen = new Map<string, string>();
    for (let i = 0; i < 20_000; i++) {
      const parts = Array.from({ length: 1 + Math.floor(random() * 3) }, randomPart);
      const identity = JSON.stringify(parts);
      const k = key(...parts);
      const previous = seen.get(k);
      if (previous !== undefined) expect(previous).toBe(identity);
      seen.set(k, identity);
    }
    expect(seen.size).toBeGreaterThan(5_000);
  });
});

describe('keyspace()', () => {
  it('prefixes every key', () => {
    const app = keyspace('myapp');
    expect(app('user', 'abc123')).toBe('myapp:user:abc123');
    expect(app('a:b')).toBe('myapp:a%3Ab');
  });

  it('rejects an empty prefix', () => {
    expect(() => keyspace('')).toThrow(TypeError);
  });
});

describe('hashTag()', () => {
  it('wraps a part in braces so related keys share a Cluster slot', () => {
    expect(hashTag('user1')).toBe('{user1}');
    expect(key('session', hashTag('u1'), 'index')).toBe('session:{u1}:index');
  });

  it('keeps a brace inside the part from ending the tag early', () => {
    expect(hashTag('a}b')).toBe('{a%7Db}');
    expect(hashTag('a}b')).not.toBe(hashTag('a%7Db'));
  });

  it('rejects empty parts', () => {
    expect(() => hashTag('')).toThrow(TypeError);
  });
});
