// RateLimitStore under express-rate-limit itself: its options unchanged, one atomic round trip per request, every key
// with an expiry; single Redis and Cluster; and what an outage does.
import express from 'express';
import { rateLimit as expressRateLimit } from 'express-rate-limit';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis } from '../../lib/connection.js';
import { RateLimitStore } from '../../lib/index.js';
import { privateCluster } from '../support/private-cluster.js';
import { privateRedis } from '../support/private-redis.js';
import { silentLogger, uniquePrefix, useTestRedis, watchCommands } from '../support/redis.js';

const redis = useTestRedis('rate-limit-store');

function appWith(store: RateLimitStore, options: Parameters<typeof expressRateLimit>[0] = {}) {
  const app = express();
  app.use(
    expressRateLimit({
      windowMs: 60_000,
      limit: 3,
      standardHeaders: 'draft-8',
      legacyHeaders: false,
      keyGenerator: (req) => String(req.headers['x-client'] ?? 'client-a'),
      store,
      ...options,
    }),
  );
  app.get('/', (_req, res) => {
    res.send('ok');
  });
  app.get('/fail', (_req, res) => {
    res.status(500).send('failed');
  });
  return app;
}

const newStore = (options: ConstructorParameters<typeof RateLimitStore>[0] = {}) =>
  new RateLimitStore({ redis: redis.client(), prefix: `${uniquePrefix('rl')}:`, logger: silentLogger, ...options });

describe('RateLimitStore under express-rate-limit', () => {
  it('counts per client across the window and answers 429 past the limit, with its headers', async () => {
    const app = appWith(newStore());
    for (let i = 0; i < 3; i++) await request(app).get('/').expect(200);
    const blocked = await request(app).get('/').expect(429);
    expect(blocked.headers.ratelimit).toMatch(/r=0/);
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(55);
  });

  it('stores rl:<client> with an expiry of the window, as rate-limit-redis does', async () => {
    const store = newStore();
    await request(appWith(store)).get('/').expect(200);
    expect(await redis.client().get(`${store.prefix}client-a`)).toBe('1');
    const ttl = await redis.client().pttl(`${store.prefix}client-a`);
    expect(ttl).toBeGreaterThan(55_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it('is one script call per request at most, and concurrent requests are counted exactly', async () => {
    const store = newStore();
    const app = appWith(store, { limit: 1000 });
    const client = redis.client();
    await store.get('warm-up'); // loads the script, so that no EVAL fallback is counted
    const watch = await watchCommands(client);
    await Promise.all(Array.from({ length: 40 }, () => request(app).get('/')));
    await watch.settle();
    watch.stop();
    const scripts = watch.sent.filter(([name]) => /^(evalsha|eval)$/i.test(name));
    expect(scripts.length).toBeGreaterThanOrEqual(1);
    expect(scripts.length).toBeLessThanOrEqual(40);
    expect(watch.sent.length).toBe(scripts.length);
    expect((await store.get('client-a'))?.totalHits).toBe(40);
  });

  it('takes a hit back for skipped responses (skipFailedRequests), never below zero', async () => {
    const store = newStore();
    const app = appWith(store, { skipFailedRequests: true });
    for (let i = 0; i < 5; i++) await request(app).get('/fail').expect(500);
    await request(app).get('/').expect(200);
    expect((await store.get('client-a'))?.totalHits).toBe(1);
    await store.decrement('never-seen');
    expect(await store.get('never-seen')).toBeUndefined();
    expect(await redis.client().exists(`${store.prefix}never-seen`)).toBe(0);
  });

  it('resetKey and resetAll forget counts, and nothing outside the prefix', async () => {
    const store = newStore();
    store.init({ windowMs: 60_000 });
    const outside = `${uniquePrefix('outside')}:k`;
    await redis.client().set(outside, '1', 'PX', 60_000);
    await store.increment('a');
    await store.increment('b');
    await store.resetKey('a');
    expect(await store.get('a')).toBeUndefined();
    expect((await store.get('b'))?.totalHits).toBe(1);
    await store.resetAll();
    expect(await store.get('b')).toBeUndefined();
    expect(await redis.client().get(outside)).toBe('1');
  });

  it('a fractional windowMs still gives every key an expiry', async () => {
    const store = newStore();
    store.init({ windowMs: 1500.5 });
    expect((await store.increment('f')).totalHits).toBe(1);
    const ttl = await redis.client().pttl(`${store.prefix}f`);
    expect(ttl).toBeGreaterThan(1_000);
    expect(ttl).toBeLessThanOrEqual(1_501);
    expect(() => store.init({ windowMs: Number.NaN })).toThrow(/windowMs/);
  });

  it('rejects invalid options by name', () => {
    expect(() => new RateLimitStore({ prefix: '' })).toThrow(/option "prefix"/);
    expect(() => new RateLimitStore({ prefix: 1 as unknown as string })).toThrow(/option "prefix"/);
    expect(() => new RateLimitStore({ timeout: '1 minute' })).toThrow(/option "timeout"/);
  });
});

describe('RateLimitStore when Redis fails', () => {
  it("fails within its timeout, and express-rate-limit's passOnStoreError lets requests through", async () => {
    const server = await privateRedis();
    const client = createRedis({ url: server.url, logger: silentLogger });
    const store = new RateLimitStore({ redis: client, timeout: 200, logger: silentLogger });
    const app = appWith(store, { passOnStoreError: true });
    await request(app).get('/').expect(200);
    await server.stop();
    const started = Date.now();
    await request(app).get('/').expect(200);
    expect(Date.now() - started).toBeLessThan(1_500);
    const strict = appWith(new RateLimitStore({ redis: client, timeout: 200, logger: silentLogger }));
    // express-rate-limit's default: the store's error goes to next(), and Express answers its status (503).
    await request(strict).get('/').expect(503);
    client.disconnect();
  });
});

describe('RateLimitStore on Redis Cluster', () => {
  let cluster: ReturnType<typeof createRedis>;
  beforeAll(async () => {
    const { nodes } = await privateCluster();
    cluster = createRedis({ cluster: { nodes }, logger: silentLogger });
  }, 60_000);
  afterAll(async () => {
    await cluster?.quit();
  });

  it('limits under express-rate-limit and resets every master', async () => {
    const store = new RateLimitStore({ redis: cluster, logger: silentLogger });
    const app = appWith(store);
    for (let i = 0; i < 3; i++) await request(app).get('/').expect(200);
    await request(app).get('/').expect(429);
    for (let i = 0; i < 20; i++) await store.increment(`client-${i}`);
    await store.resetAll();
    for (let i = 0; i < 20; i++) expect(await store.get(`client-${i}`)).toBeUndefined();
    await request(app).get('/').expect(200);
  });
});
