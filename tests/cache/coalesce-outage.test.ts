// A coalescing follower never waits on a Redis known to be down: the entry it waits for could not be read anyway.
import express from 'express';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCache } from '../../lib/index.js';
import { eventCount, privateRedisWithAdmin } from '../support/private-redis.js';
import { silentLogger } from '../support/redis.js';
import { gate } from './support.js';

let server: Awaited<ReturnType<typeof privateRedisWithAdmin>>['server'];
let newClient: () => Redis;
beforeAll(async () => {
  ({ server, client: newClient } = await privateRedisWithAdmin());
});

describe('cacheResponse() waiting for another process when Redis goes down', () => {
  it('stops waiting for the holder once Redis is known to be down, and answers with its own response', async () => {
    const [redisA, redisB] = [newClient(), newClient()];
    await Promise.all([redisA.ping(), redisB.ping()]);
    const held = gate();
    const entered = gate();
    const appOn = (redis: Redis, handler: express.RequestHandler) => {
      const cache = createCache({ redis, timeout: '250ms', logger: silentLogger });
      const app = express();
      app.get('/report', cache.response({ lock: { wait: '3s', ttl: '10s' } }), handler);
      return app;
    };
    // Process A produces /report slowly, holding its lock; process B's request for it waits for A.
    const appA = appOn(redisA, async (_req, res) => {
      entered.open();
      await held.opened;
      res.json({ from: 'A' });
    });
    const appB = appOn(redisB, (_req, res) => {
      res.json({ from: 'B' });
    });
    const first = request(appA)
      .get('/report')
      .then((response) => response);
    await entered.opened;
    const waiting = request(appB)
      .get('/report')
      .then((response) => ({ response, at: Date.now() }));
    await new Promise((resolve) => setTimeout(resolve, 150)); // B is waiting for A now
    const down = eventCount(redisB, 'close', 1);
    await server.stop();
    await down;
    const stoppedAt = Date.now();
    const { response, at } = await waiting;
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ from: 'B' });
    expect(at - stoppedAt).toBeLessThan(1_000); // not lock.wait (3 s)
    held.open();
    expect((await first).status).toBe(200);
    const ready = eventCount(redisB, 'ready', 1);
    await server.restart();
    await ready;
    redisA.disconnect();
    redisB.disconnect();
  });
});
