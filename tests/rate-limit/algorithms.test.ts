import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { rateLimit } from '../../lib/index.js';
import { silentLogger, useTestRedis } from '../support/redis.js';
import { appWith, counterKey } from './support.js';

const redis = useTestRedis('rate-limit-algorithms');

describe('sliding-window', () => {
  it('admits limit requests in a window, counting only admitted requests, in a key that expires', async () => {
    const options = {
      redis: redis.client(),
      prefix: `${redis.prefix}:sliding`,
      limit: 4,
      window: '1h',
      algorithm: 'sliding-window' as const,
      key: () => 'c',
      logger: silentLogger,
    };
    const app = appWith(rateLimit(options));
    for (let i = 0; i < 4; i++) await request(app).get('/').expect(200);
    const limited = await request(app).get('/').expect(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(7_200);
    await request(app).get('/').expect(429);
    // Only admitted requests are counted, and the key expires (TTL at most two windows).
    const ttl = await redis.client().pttl(counterKey(options, 'c'));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(7_200_000);
    expect(await redis.client().hget(counterKey(options, 'c'), 'c')).toBe('4');
  });

  it('still counts the previous window, weighted by how much of it the sliding window overlaps', async () => {
    const prefix = `${redis.prefix}:sliding-previous`;
    const hour = 3_600_000;
    const [seconds] = await redis.client().time();
    const current = Math.floor((Number(seconds) * 1000) / hour);
    const options = { redis: redis.client(), prefix, limit: 4, window: '1h', algorithm: 'sliding-window' as const };
    const counted = { ...options, key: () => 'c' };
    // The previous hour was far over the limit; at any point of this hour, some of it still weighs.
    await redis.client().hset(counterKey(counted, 'c'), { w: current - 1, c: 1_000_000, p: 0 });
    await redis.client().pexpire(counterKey(counted, 'c'), hour);
    const app = appWith(rateLimit(counted));
    const limited = await request(app).get('/').expect(429);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(3_600);
    // A client whose previous window was quiet is not affected.
    await request(appWith(rateLimit({ ...options, key: () => 'quiet' })))
      .get('/')
      .expect(200);
  });
});

describe('token-bucket', () => {
  it('allows a burst of `limit`, then refills at limit per window', async () => {
    const options = {
      redis: redis.client(),
      prefix: `${redis.prefix}:bucket`,
      limit: 5,
      window: '5s',
      algorithm: 'token-bucket' as const,
      key: () => 'c',
      logger: silentLogger,
      blockCache: false,
    };
    const key = counterKey(options, 'c');
    const mw = rateLimit(options);
    const app = appWith(mw);
    for (let i = 0; i < 5; i++) await request(app).get('/').expect(200);
    const limited = await request(app).get('/').expect(429);
    expect(Number(limited.headers['retry-after'])).toBe(1);
    expect(await redis.client().pttl(key)).toBeLessThanOrEqual(5_000);
    // One token comes back every second: pretend 2.5 s have passed since the bucket was last updated.
    const updatedAt = Number(await redis.client().hget(key, 'ts'));
    await redis.client().hset(key, 'ts', updatedAt - 2_500);
    await request(app).get('/').expect(200);
    await request(app).get('/').expect(200);
    await request(app).get('/').expect(429);
    const info = await mw.get('c');
    expect(info).toMatchObject({ limit: 5, remaining: 0 });
  });

  it('lets a cost larger than the bucket never through, with a finite Retry-After', async () => {
    const app = appWith(
      rateLimit({
        redis: redis.client(),
        prefix: `${redis.prefix}:bucket-cost`,
        limit: 2,
        cost: 3,
        algorithm: 'token-bucket',
        window: '1s',
        key: () => 'c',
      }),
    );
    const limited = await request(app).get('/').expect(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  });
});

describe('skipFailedRequests refunds in every algorithm', () => {
  it.each(['sliding-window', 'token-bucket'] as const)('%s', async (algorithm) => {
    const app = appWith(
      rateLimit({
        redis: redis.client(),
        prefix: `${redis.prefix}:refund-${algorithm}`,
        limit: 2,
        window: '1m',
        algorithm,
        key: () => 'c',
        skipFailedRequests: true,
        blockCache: false,
      }),
    );
    for (let i = 0; i < 4; i++) await request(app).get('/fail').expect(500);
    // Refunds are sent after the response; give them a moment by polling the outcome, not the clock.
    await expect
      .poll(async () => {
        const status = (await request(app).get('/')).status;
        return status;
      })
      .toBe(200);
  });
});

describe('every algorithm', () => {
  it('counts and expires exactly with the longest window an option takes (1000 years)', async () => {
    for (const algorithm of ['fixed-window', 'sliding-window', 'token-bucket'] as const) {
      const prefix = `${redis.prefix}:longest-${algorithm}`;
      const options = { redis: redis.client(), prefix, algorithm, limit: 2, window: '365000d', key: () => 'c' };
      const app = appWith(rateLimit(options));
      await request(app).get('/').expect(200);
      await request(app).get('/').expect(200);
      const limited = await request(app).get('/').expect(429);
      const retryAfter = Number(limited.headers['retry-after']);
      expect(Number.isInteger(retryAfter)).toBe(true);
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(2 * 365_000 * 86_400);
      expect(await redis.client().pttl(counterKey(options, 'c'))).toBeGreaterThan(0);
    }
  });
});
