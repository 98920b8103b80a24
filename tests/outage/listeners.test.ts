// Listeners the package adds to an app's own client: once per client, never per middleware made on it.
import express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { beforeAll, expect, it } from 'vitest';
import { createCache, rateLimit, redisSession, withLock } from '../../lib/index.js';
import { privateRedis } from '../support/private-redis.js';
import { silentLogger } from '../support/redis.js';

let url: string;
beforeAll(async () => {
  url = (await privateRedis()).url;
});

const counts = (r: Redis) => Object.fromEntries(r.eventNames().map((name) => [String(name), r.listenerCount(name)]));

it('making 50 middlewares on one app client (as a per-route factory does) adds no listeners per middleware', async () => {
  const redis = new Redis(url);
  redis.on('error', () => {});
  await redis.ping();
  const before = counts(redis);
  const warnings: string[] = [];
  process.on('warning', (w) => warnings.push(w.name));
  const make = () => {
    const app = express();
    app.use(rateLimit({ redis, logger: silentLogger, prefix: `rl${Math.random()}` }));
    app.use(redisSession({ redis, secret: 'a-test-secret-that-is-long-enough-0001', logger: silentLogger }));
    const cache = createCache({ redis, logger: silentLogger });
    app.use(cache.response({ ttl: '1m' }));
    app.get('/', async (_req, res) => {
      await withLock(`r${Math.random()}`, async () => {}, { redis, logger: silentLogger } as never).catch(() => {});
      res.send('ok');
    });
    return app;
  };
  for (let i = 0; i < 50; i++) await request(make()).get('/').expect(200);
  const first = counts(redis);
  for (let i = 0; i < 50; i++) await request(make()).get('/').expect(200);
  const after = counts(redis);
  await new Promise((r) => setTimeout(r, 50));
  expect({ growth: Object.fromEntries(Object.entries(after).filter(([k, v]) => v !== first[k])), warnings }).toEqual({
    growth: {},
    warnings: [],
  });
  console.log(before, after);
  redis.disconnect();
}, 30_000);
