import { describe, expect, it } from 'vitest';
import { cacheKeys } from '../../lib/cache/keys.js';
import { createCache } from '../../lib/index.js';
import { recordingLogger, silentLogger, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('cache-wrap');
let counter = 0;
const newCache = () =>
  createCache({ redis: redis.client(), prefix: `${redis.prefix}:${++counter}`, logger: silentLogger });

describe('cache.wrap() — cache-aside', () => {
  it('loads once, then serves the stored JSON value until it is deleted (the "update" path)', async () => {
    const cache = newCache();
    const database = new Map([['abc123', { id: 'abc123', name: 'Ada' }]]);
    let loads = 0;
    const getUser = (id: string) =>
      cache.wrap(`user:${id}`, async () => {
        loads++;
        return database.get(id);
      });
    expect(await getUser('abc123')).toEqual({ id: 'abc123', name: 'Ada' });
    expect(await getUser('abc123')).toEqual({ id: 'abc123', name: 'Ada' });
    expect(loads).toBe(1);
    // Update: write the database, then delete the cached copy.
    database.set('abc123', { id: 'abc123', name: 'Ada Lovelace' });
    await cache.delete('user:abc123');
    expect(await getUser('abc123')).toEqual({ id: 'abc123', name: 'Ada Lovelace' });
    expect(loads).toBe(2);
  });

  it('stores with the given TTL and tags', async () => {
    const cache = newCache();
    await cache.wrap('report', () => ({ total: 3 }), { ttl: '30s', tags: ['reports'] });
    const ttl = await redis.client().pttl(cacheKeys(`${redis.prefix}:${counter}`).value('report'));
    expect(ttl).toBeGreaterThan(25_000);
    expect(ttl).toBeLessThanOrEqual(30_000);
    expect(await cache.get('report')).toEqual({ total: 3 });
    expect(await cache.invalidateTags('reports')).toBe(1);
    expect(await cache.get('report')).toBeUndefined();
  });

  it('runs one loader for concurrent calls, in one process and across processes', async () => {
    const prefix = `${redis.prefix}:flight`;
    const caches = [
      createCache({ redis: redis.newClient(), prefix }),
      createCache({ redis: redis.newClient(), prefix }),
    ];
    let loads = 0;
    const loader = async () => {
      loads++;
      await new Promise((resolve) => setTimeout(resolve, 100));
      return { value: 42 };
    };
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => caches[i % 2].wrap('shared', loader)));
    expect(loads).toBe(1);
    for (const result of results) expect(result).toEqual({ value: 42 });
  });

  it('does not cache loader errors; they reach the caller', async () => {
    const cache = newCache();
    await expect(
      cache.wrap('broken', () => {
        throw new Error('database down');
      }),
    ).rejects.toThrow('database down');
    expect(await cache.get('broken')).toBeUndefined();
    expect(await cache.wrap('broken', () => 'recovered')).toBe('recovered');
  });

  it('set/get round-trip JSON values, and refuse values JSON cannot hold', async () => {
    const cache = newCache();
    await cache.set('config', { flags: ['a', 'b'], n: 1 });
    expect(await cache.get('config')).toEqual({ flags: ['a', 'b'], n: 1 });
    await expect(cache.set('nothing', undefined)).rejects.toThrow(TypeError);
    await expect(cache.set('x', 1, { ttl: 'soon' })).rejects.toThrow(/option "ttl"/);
  });
});

describe('cache.wrap() with a value JSON cannot hold', () => {
  it('returns the loaded value, stores nothing and reports why', async () => {
    const logger = recordingLogger();
    const prefix = `${redis.prefix}:${++counter}`;
    const cache = createCache({ redis: redis.client(), prefix, logger });
    const cyclic: Record<string, unknown> = { name: 'loop' };
    cyclic.self = cyclic;
    let loads = 0;
    const load = () =>
      cache.wrap('cyclic', async () => {
        loads++;
        return cyclic;
      });
    expect(await load()).toBe(cyclic);
    expect(await load()).toBe(cyclic);
    expect(loads).toBe(2);
    expect(await redis.client().keys(`${prefix}:*`)).toEqual([]);
    expect(logger.errors[0]).toMatch(/cache\.wrap: the value loaded cannot be stored as JSON/);
    expect(logger.errors[0]).not.toContain('cyclic'); // a key may hold what a request sent: never logged
  });
});

describe('cache methods given bad arguments', () => {
  it('reject them with a TypeError naming the argument, before touching Redis', async () => {
    const cache = newCache();
    const loader = async () => 1;
    await expect(cache.wrap('', loader)).rejects.toThrow(/cache\.wrap: key is invalid: ""/);
    await expect(cache.wrap('k', 'not a function' as never)).rejects.toThrow(/cache\.wrap: loader is invalid/);
    await expect(cache.get(undefined as never)).rejects.toThrow(/cache\.get: key is invalid: undefined/);
    await expect(cache.delete(undefined as never)).rejects.toThrow(/cache\.delete: key is invalid: undefined/);
    await expect(cache.set('k', 1n)).rejects.toThrow(
      /cache\.set: the value for "k" cannot be stored as JSON: .*BigInt/,
    );
    await expect(cache.set('k', undefined)).rejects.toThrow(/cannot be stored as JSON \(it is undefined\)/);
    await expect(cache.invalidateTags('ok', 5 as never)).rejects.toThrow(/cache\.invalidateTags: tag is invalid: 5/);
    for (const rejected of [cache.wrap('', loader), cache.set('k', 1n)]) await rejected.catch(() => {});
    expect(await redis.client().keys(`${redis.prefix}:${counter}:*`)).toEqual([]);
  });
});
