// Every middleware against a real three-node Redis Cluster: scripts touch one key each, cross-slot work is split.
import express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCache, createRedis, type RedisClient, rateLimit, redisSession, withLock } from '../lib/index.js';
import { privateCluster } from './support/private-cluster.js';
import { silentLogger, subscribers } from './support/redis.js';

let clients: RedisClient[] = [];
let nodes: string[];
const clusterClient = async () => {
  const client = createRedis({ cluster: { nodes }, logger: silentLogger });
  clients.push(client);
  await new Promise((resolve) => client.once('ready', resolve));
  return client;
};

beforeAll(async () => {
  ({ nodes } = await privateCluster());
}, 60_000);
afterAll(async () => {
  await Promise.all(clients.map((client) => client.quit().catch(() => client.disconnect())));
  clients = [];
});

describe('on Redis Cluster', () => {
  it('rateLimit() lets exactly `limit` concurrent requests through two apps, for every algorithm', async () => {
    for (const algorithm of ['fixed-window', 'sliding-window', 'token-bucket'] as const) {
      // Two instances of one limiter, as two processes would make it: one name, one count.
      const options = {
        name: `cluster-${algorithm}`,
        limit: 10,
        window: '1m',
        algorithm,
        key: () => `cluster-${algorithm}`,
        logger: silentLogger,
      };
      const apps = [await clusterClient(), await clusterClient()].map((redis) => {
        const app = express();
        app.get('/', rateLimit({ ...options, redis }), (_req, res) => {
          res.send('ok');
        });
        return app;
      });
      const statuses = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          request(apps[i % 2])
            .get('/')
            .then((r) => r.status),
        ),
      );
      expect(
        statuses.filter((s) => s === 200),
        algorithm,
      ).toHaveLength(10);
    }
  });

  it('rateLimit() with several rules counts them in one script (one slot per client) and reset() reaches every instance', async () => {
    const options = {
      name: 'cluster-rules', // two instances of one limiter, as two processes would make it
      limit: [
        { limit: 5, window: '1m' },
        { limit: 50, window: '1d' },
      ],
      key: () => 'cluster-rules',
      logger: silentLogger,
    };
    const limiters = [
      rateLimit({ ...options, redis: await clusterClient() }),
      rateLimit({ ...options, redis: await clusterClient() }),
    ];
    const apps = limiters.map((limiter) => {
      const app = express();
      app.get('/', limiter, (_req, res) => void res.send('ok'));
      return app;
    });
    const statuses = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        request(apps[i % 2])
          .get('/')
          .then((r) => r.status),
      ),
    );
    expect(statuses.filter((s) => s === 200)).toHaveLength(5);
    await request(apps[1]).get('/').expect(429);
    const admins = nodes.map((node) => new Redis(node));
    try {
      await subscribers(admins, 'rate:reset', 2);
    } finally {
      for (const admin of admins) admin.disconnect();
    }
    await limiters[0].reset('cluster-rules');
    let status = 429;
    for (let waited = 0; status === 429 && waited < 2_000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      status = (await request(apps[1]).get('/')).status;
    }
    expect(status).toBe(200);
  });

  it('redisSession() stores, lists and destroys sessions by user', async () => {
    const redis = await clusterClient();
    const sessions = redisSession({ redis, secret: 'cluster-secret-cluster-secret-cluster-secret' });
    const app = express();
    app.use(sessions);
    app.get('/login/:user', async (req, res) => {
      await req.session.regenerate();
      (req.session as unknown as Record<string, unknown>).userId = req.params.user;
      res.send('ok');
    });
    app.get('/me', (req, res) => {
      res.json({ ...req.session });
    });
    const cookies = [];
    for (let i = 0; i < 4; i++) {
      const response = await request(app).get('/login/u1');
      cookies.push((response.headers['set-cookie'] as unknown as string[])[0].split(';')[0]);
    }
    expect((await request(app).get('/me').set('Cookie', cookies[0])).body).toEqual({ userId: 'u1' });
    expect(await sessions.listByUser('u1')).toHaveLength(4);
    expect(await sessions.destroyByUser('u1')).toBe(4);
    expect((await request(app).get('/me').set('Cookie', cookies[3])).body).toEqual({});
  });

  it('the response cache stores with tags across slots and invalidates them', async () => {
    const cache = createCache({ redis: await clusterClient(), logger: silentLogger });
    const app = express();
    let calls = 0;
    app.get('/items/:id', cache.response({ tags: (req) => ['items', `item:${req.params.id}`] }), (req, res) => {
      calls++;
      res.json({ id: req.params.id });
    });
    for (const id of ['1', '2', '3']) await request(app).get(`/items/${id}`);
    for (const id of ['1', '2', '3']) expect((await request(app).get(`/items/${id}`)).headers['x-cache']).toBe('HIT');
    expect(await cache.invalidateTags('items')).toBe(3);
    expect((await request(app).get('/items/2')).headers['x-cache']).toBe('MISS');
    expect(await cache.wrap('answer', () => 42, { tags: ['answers'] })).toBe(42);
    expect(await cache.get('answer')).toBe(42);
    expect(calls).toBe(4);
  });

  it('the response cache: an invalidation during a slow fill wins, and a write reaches every spelling and key', async () => {
    const cache = createCache({ redis: await clusterClient(), prefix: 'race', logger: silentLogger });
    let version = 1;
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    let inHandler: () => void = () => {};
    const reached = new Promise<void>((resolve) => (inHandler = resolve));
    const app = express();
    app.use(cache.response());
    app.get('/docs/:id', async (req, res) => {
      const seen = version;
      if (seen === 1 && req.query.slow !== undefined) {
        inHandler();
        await held;
      }
      res.json({ version: seen });
    });
    app.put('/docs/:id', (_req, res) => {
      version++;
      res.send('updated');
    });
    const slow = request(app)
      .get('/docs/1?slow')
      .then((response) => response);
    await reached;
    await request(app).put('/docs/1?slow').expect(200);
    release();
    expect((await slow).body.version).toBe(1);
    expect((await request(app).get('/docs/1?slow')).body.version).toBe(2);
    for (const path of ['/docs/7', '/DOCS/7/']) await request(app).get(path);
    await request(app).put('/docs/7').expect(200);
    for (const path of ['/docs/7', '/DOCS/7/']) expect((await request(app).get(path)).headers['x-cache']).toBe('MISS');
    // A value loaded while its key is deleted is not stored either.
    let releaseValue: () => void = () => {};
    let loaderRuns: () => void = () => {};
    const loaderRan = new Promise<void>((resolve) => (loaderRuns = resolve));
    const loading = cache.wrap('settings', () => {
      loaderRuns();
      return new Promise((resolve) => (releaseValue = () => resolve('old')));
    });
    await loaderRan;
    await cache.delete('settings');
    releaseValue();
    expect(await loading).toBe('old');
    expect(await cache.get('settings')).toBeUndefined();
  });

  it('withLock() holds and releases lock:<resource>', async () => {
    const redis = await clusterClient();
    expect(await withLock('cluster-job', () => 'done', { redis })).toBe('done');
  });
});
