import type { Redis } from 'ioredis';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRedis, rateLimit } from '../../lib/index.js';
import { eventCount, privateRedisWithAdmin } from '../support/private-redis.js';
import { recordingLogger, silentLogger } from '../support/redis.js';
import { appWith, counterKey } from './support.js';

// These tests stop, pause and flush their own redis-server, never the suite's shared one.
let server: Awaited<ReturnType<typeof privateRedisWithAdmin>>['server'];
let admin: Redis;
let limiterClient: () => Redis;
beforeAll(async () => {
  ({ server, admin, client: limiterClient } = await privateRedisWithAdmin());
});

describe('rateLimit() when Redis is slow', () => {
  it("'allow' passes requests uncounted and 'deny' answers 503 once Redis is slower than timeout", async () => {
    const redis = limiterClient();
    await redis.ping();
    const logger = recordingLogger();
    const allow = appWith(rateLimit({ redis, prefix: 'slow-allow', limit: 1, timeout: '100ms', logger }));
    const deny = appWith(
      rateLimit({ redis, prefix: 'slow-deny', limit: 1, timeout: '100ms', onRedisError: 'deny', logger: silentLogger }),
    );
    await admin.call('CLIENT', 'PAUSE', '1500', 'WRITE');
    try {
      for (let i = 0; i < 3; i++) {
        const response = await request(allow).get('/').expect(200);
        expect(response.headers.ratelimit).toBeUndefined();
      }
      const denied = await request(deny).get('/').expect(503);
      expect(denied.headers['retry-after']).toBe('1');
      expect(logger.warnings).toHaveLength(1);
      expect(logger.warnings[0]).toMatch(/did not answer within 100 ms/);
    } finally {
      await admin.call('CLIENT', 'UNPAUSE');
    }
    redis.disconnect();
  });

  it('never re-sends an increment that timed out on a connection that then dropped', async () => {
    const redis = limiterClient();
    await redis.ping();
    const id = await redis.client('ID');
    const options = { redis, prefix: 'replay', limit: 5, timeout: '100ms', key: () => 'c', logger: silentLogger };
    const app = appWith(rateLimit(options));
    await admin.call('CLIENT', 'PAUSE', '5000', 'WRITE');
    try {
      await request(app).get('/').expect(200); // held by the pause, times out, fails open
      const ready = eventCount(redis, 'ready', 1);
      await admin.client('KILL', 'ID', String(id));
      await ready;
    } finally {
      await admin.call('CLIENT', 'UNPAUSE');
    }
    expect(await admin.exists(counterKey(options, 'c'))).toBe(0);
    const counted = await request(app).get('/').expect(200);
    expect(counted.headers.ratelimit).toMatch(/r=4;/);
    redis.disconnect();
  });
});

describe('rateLimit() when Redis is down', () => {
  it("'allow' passes, 'deny' answers 503, nothing queues, one warning; counting resumes when Redis returns", async () => {
    const redis = limiterClient();
    await redis.ping();
    const logger = recordingLogger();
    const allow = appWith(rateLimit({ redis, prefix: 'down', limit: 3, timeout: '150ms', key: () => 'c', logger }));
    const deny = appWith(
      rateLimit({ redis, prefix: 'down-deny', limit: 3, timeout: '150ms', onRedisError: 'deny', logger: silentLogger }),
    );
    await request(allow).get('/').expect(200);

    await server.stop();
    await eventCount(redis, 'reconnecting', 1);
    for (let i = 0; i < 10; i++) await request(allow).get('/').expect(200);
    await request(deny).get('/').expect(503);
    expect(logger.warnings).toHaveLength(1);
    expect((redis as unknown as { offlineQueue: { length: number } }).offlineQueue.length).toBe(0);

    const ready = eventCount(redis, 'ready', 1);
    await server.restart();
    await ready;
    // The restarted server has no scripts cached and no counts: NOSCRIPT is handled, counting starts afresh.
    const first = await request(allow).get('/').expect(200);
    expect(first.headers.ratelimit).toMatch(/r=2;/);
    await request(allow).get('/').expect(200);
    await request(allow).get('/').expect(200);
    await request(allow).get('/').expect(429);
    redis.disconnect();
  });

  it('fails open within the timeout while the first connection is still being attempted', async () => {
    const redis = createRedis({ url: 'redis://127.0.0.1:1', logger: silentLogger, retry: { maxDelay: 20 } }) as Redis;
    const app = appWith(rateLimit({ redis, timeout: '100ms', logger: silentLogger }));
    await request(app).get('/').expect(200);
    const deny = appWith(rateLimit({ redis, timeout: '100ms', onRedisError: 'deny', logger: silentLogger }));
    await request(deny).get('/').expect(503);
    redis.disconnect();
  });
});

describe('rateLimit() scripts', () => {
  it('keeps exact counts when concurrent requests are batched into one pipeline right after SCRIPT FLUSH', async () => {
    const redis = limiterClient();
    const options = { redis, prefix: 'flush-batch', limit: 10, key: () => 'c', logger: silentLogger };
    const app = appWith(rateLimit(options));
    for (let i = 0; i < 3; i++) await request(app).get('/').expect(200);
    await admin.script('FLUSH');
    const statuses = await Promise.all(
      Array.from({ length: 12 }, () =>
        request(app)
          .get('/')
          .then((r) => r.status),
      ),
    );
    expect(statuses.filter((status) => status === 200)).toHaveLength(7);
    expect(await admin.get(counterKey(options, 'c'))).toBe('15');
    redis.disconnect();
  });

  it('survives SCRIPT FLUSH without losing the count (NOSCRIPT → EVAL)', async () => {
    const redis = limiterClient();
    const app = appWith(rateLimit({ redis, prefix: 'flush', limit: 3, key: () => 'c' }));
    await request(app).get('/').expect(200);
    await request(app).get('/').expect(200);
    await admin.script('FLUSH');
    const third = await request(app).get('/').expect(200);
    expect(third.headers.ratelimit).toMatch(/r=0;/);
    await request(app).get('/').expect(429);
    redis.disconnect();
  });
});
