import express from 'express';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCache } from '../../lib/index.js';
import { eventCount, privateRedisWithAdmin } from '../support/private-redis.js';
import { silentLogger } from '../support/redis.js';

// These tests pause and stop their own redis-server, never the suite's shared one.
let server: Awaited<ReturnType<typeof privateRedisWithAdmin>>['server'];
let admin: Redis;
let cacheClient: () => Redis;
beforeAll(async () => {
  ({ server, admin, client: cacheClient } = await privateRedisWithAdmin());
});

function appOn(redis: Redis) {
  const cache = createCache({ redis, timeout: '100ms', logger: silentLogger });
  const app = express();
  let calls = 0;
  app.get('/data', cache.response(), (_req, res) => {
    calls++;
    res.json({ calls });
  });
  return { app, calls: () => calls };
}

describe('cacheResponse() when Redis fails', () => {
  it('runs the handler and delivers its response with X-Cache: BYPASS when Redis is slow', async () => {
    const redis = cacheClient();
    await redis.ping();
    const { app } = appOn(redis);
    await admin.call('CLIENT', 'PAUSE', '1000', 'ALL');
    try {
      const response = await request(app).get('/data').expect(200);
      expect(response.headers['x-cache']).toBe('BYPASS');
      expect(response.body).toEqual({ calls: 1 });
    } finally {
      await admin.call('CLIENT', 'UNPAUSE');
    }
    redis.disconnect();
  });

  it('does the same when Redis is down, and caches again once it is back', async () => {
    const redis = cacheClient();
    await redis.ping();
    const { app } = appOn(redis);
    await server.stop();
    await eventCount(redis, 'reconnecting', 1);
    for (let i = 1; i <= 3; i++) {
      const response = await request(app).get('/data').expect(200);
      expect(response.headers['x-cache']).toBe('BYPASS');
      expect(response.body).toEqual({ calls: i });
    }
    const ready = eventCount(redis, 'ready', 1);
    await server.restart();
    await ready;
    expect((await request(app).get('/data')).headers['x-cache']).toBe('MISS');
    expect((await request(app).get('/data')).headers['x-cache']).toBe('HIT');
    redis.disconnect();
  });
});
