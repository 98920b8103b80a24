// What lies in Redis is not trusted: a malformed entry, a key of another type, an absurd tombstone or a lock
// without a lease under any of the cache's keys is a miss that the next store repairs — never a 500, a response
// that stops being cached, or a request that waits for a lock nobody holds.
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { cacheKeys, type Tag } from '../../lib/cache/keys.js';
import { createCache } from '../../lib/index.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';
import { stackApp } from './support.js';

const redis = useTestRedis('cache-trust');

/** An entry in the stored layout: \0RW2, a 16-character version, a 4-byte metadata length, metadata JSON, body. */
function forged(meta: unknown, body = 'forged'): Buffer {
  const json = Buffer.from(JSON.stringify(meta));
  const head = Buffer.alloc(24);
  Buffer.from([0x00, 0x52, 0x57, 0x32]).copy(head, 0);
  head.write('ABCDEFGHIJKLMNOP', 4, 16, 'latin1');
  head.writeUInt32BE(json.length, 20);
  return Buffer.concat([head, json, Buffer.from(body)]);
}

/** An app whose one cached route's entry key is known, and a way to plant anything under the cache's keys. */
function plantingApp() {
  const prefix = uniquePrefix('trust');
  const keys = cacheKeys(prefix);
  const cache = createCache({ redis: redis.client(), prefix, logger: silentLogger });
  const app = stackApp();
  let runs = 0;
  app.get('/page', cache.response({ tags: ['pages'] }), (_req, res) => {
    runs++;
    res.send('the real page');
  });
  const target = { scheme: 'http', host: '127.0.0.1', port: '', path: '/page', query: '' };
  const base = keys.response({ request: { target }, audience: { kind: 'shared' }, vary: [] });
  const get = () => request(app).get('/page').set('Host', '127.0.0.1');
  return { cache, keys, base, get, runs: () => runs };
}

const far = Date.now() + 3_600_000;
const meta = { s: 200, h: [], t: Date.now(), f: far, e: '"x"' };

describe('a malformed entry', () => {
  it.each([
    ['a status out of range', { ...meta, s: 1000 }],
    ['a status that is a string', { ...meta, s: 'abc' }],
    ['a header value with CR LF', { ...meta, h: [['X-A', 'a\r\nSet-Cookie: x=1']] }],
    ['a header name with a space', { ...meta, h: [['Bad Name', 'v']] }],
    ['headers that are not a list', { ...meta, h: 5 }],
    ['a header without a value', { ...meta, h: [['X-A']] }],
    ['removed headers that are not a list', { ...meta, r: 5 }],
    ['no freshness', { ...meta, f: undefined }],
    ['an ETag that is a number', { ...meta, e: 5 }],
    ['vary values that are not strings', { ...meta, v: { 'accept-language': 5 } }],
    ['a policy of the wrong shape', { ...meta, p: 'x' }],
  ])('with %s is a miss, and the next store repairs it', async (_what, planted) => {
    const { base, get } = plantingApp();
    await get();
    await redis.client().set(base, forged(planted));
    const response = await get();
    expect([response.status, response.text]).toEqual([200, 'the real page']);
    expect((await get()).headers['x-cache']).toBe('HIT');
  });
});

describe('a key of another type, with no TTL', () => {
  const plant = async (key: string) => {
    await redis.client().del(key);
    await redis.client().rpush(key, 'planted');
  };

  it('at the entry’s key: a miss, then repaired', async () => {
    const { base, get } = plantingApp();
    await plant(base);
    expect((await get()).text).toBe('the real page');
    expect((await get()).headers['x-cache']).toBe('HIT');
  });

  it.each(['tag set', 'tombstone'] as const)('at a tag’s %s: stores and invalidations go on', async (which) => {
    const { cache, keys, get } = plantingApp();
    const tag: Tag = { kind: 'tag', tag: 'pages' };
    await plant(which === 'tag set' ? keys.tagSet(tag) : keys.tombstone(tag));
    await get();
    expect((await get()).headers['x-cache']).toBe('HIT');
    expect(await cache.invalidateTags('pages')).toBe(1);
    expect((await get()).headers['x-cache']).toBe('MISS');
    expect((await get()).headers['x-cache']).toBe('HIT');
  });

  it('at a value’s key: a miss for get() and wrap(), then repaired', async () => {
    const { cache, keys } = plantingApp();
    await plant(keys.value('settings'));
    expect(await cache.get('settings')).toBeUndefined();
    expect(await cache.wrap('settings', () => 'loaded')).toBe('loaded');
    expect(await cache.get('settings')).toBe('loaded');
  });

  it('at the lock of an entry: nobody waits for a lock without a lease', async () => {
    const { keys, base, get } = plantingApp();
    await redis.client().set(keys.lock(base), 'planted'); // a lock of ours always has a lease
    const started = performance.now();
    expect((await get()).text).toBe('the real page');
    expect(performance.now() - started).toBeLessThan(1_000);
    expect((await get()).headers['x-cache']).toBe('HIT');
  });
});

describe('an absurd tombstone', () => {
  it('set far in the future does not keep a tag from being cached', async () => {
    const { keys, get } = plantingApp();
    const micros = (Date.now() + 365 * 24 * 3_600_000) * 1000;
    await redis.client().set(keys.tombstone({ kind: 'tag', tag: 'pages' }), String(micros));
    await get();
    await get();
    expect((await get()).headers['x-cache']).toBe('HIT');
  });
});

describe('every key the cache writes', () => {
  it('has a TTL, after fills, variants, refreshes, invalidations, wrap, set and delete', async () => {
    const prefix = uniquePrefix('ttl');
    const cache = createCache({ redis: redis.client(), prefix, logger: silentLogger });
    const app = stackApp();
    app.use(cache.response({ ttl: 200, staleWhileRevalidate: '10s', tags: ['t1', 't2'] }));
    app.get('/v', (req, res) => {
      res.vary('Accept-Language');
      res.send(`v ${req.headers['accept-language']}`);
    });
    app.get('/p', (_req, res) => void res.send('p'));
    app.put('/p', (_req, res) => void res.status(204).end());
    for (const language of ['en', 'de', 'fr']) await request(app).get('/v').set('Accept-Language', language);
    await request(app).get('/p');
    await new Promise((resolve) => setTimeout(resolve, 300));
    await request(app).get('/p'); // stale: refreshed in the background
    await expect.poll(async () => (await request(app).get('/p')).headers['x-cache']).toBe('HIT');
    await request(app).put('/p');
    await cache.wrap('w', async () => 1, { tags: ['t3'] });
    await cache.set('s', 2, { tags: ['t3'] });
    await cache.invalidateTags('t3');
    await cache.delete('/v');
    const keys = await redis.client().keys(`${prefix}*`);
    const withoutTtl: string[] = [];
    for (const key of keys) if ((await redis.client().pttl(key)) < 0) withoutTtl.push(key);
    expect(keys.length).toBeGreaterThan(0);
    expect(withoutTtl).toEqual([]);
  });
});

describe('a tag set listing keys that are not the cache’s', () => {
  it('never makes invalidateTags() or an unsafe request delete them', async () => {
    const prefix = uniquePrefix('planted');
    const keys = cacheKeys(prefix);
    const cache = createCache({ redis: redis.client(), prefix, logger: silentLogger });
    const outside = [`${uniquePrefix('other')}:session:abc`, `${prefix}x:r:{y}`, `${prefix}:lock:x`];
    for (const key of outside) await redis.client().set(key, 'kept', 'EX', 600);
    for (const tag of [keys.tagSet({ kind: 'tag', tag: 'products' }), keys.tagSet({ kind: 'url', url: '/items' })]) {
      await redis.client().zadd(tag, ...outside.flatMap((key) => [Date.now() + 600_000, key]));
    }
    await cache.invalidateTags('products');
    const app = stackApp();
    app.use(cache.response());
    app.post('/items', (_req, res) => void res.send('ok'));
    expect((await request(app).post('/items')).status).toBe(200);
    for (const key of outside) expect(await redis.client().get(key), key).toBe('kept');
  });
});
