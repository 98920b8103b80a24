// RateLimitStore does what rate-limit-redis' users rely on: `resetExpiryOnChange`, a stale counter (no expiry, left
// by another store) restarted rather than obeyed, any value it cannot count replaced, and a clear refusal of a
// client of another library.
import express from 'express';
import { rateLimit as expressRateLimit } from 'express-rate-limit';
import { createClient } from 'redis';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { RateLimitStore } from '../../lib/index.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('rate-limit-store-peers');

function storeAndApp(options: Partial<ConstructorParameters<typeof RateLimitStore>[0]> = {}) {
  const prefix = `${uniquePrefix('rl-peers')}:`;
  const store = new RateLimitStore({ redis: redis.client(), prefix, logger: silentLogger, ...options });
  const app = express();
  app.use(expressRateLimit({ windowMs: 60_000, limit: 3, keyGenerator: () => 'client', store }));
  app.get('/', (_req, res) => void res.send('ok'));
  return { app, key: `${prefix}client` };
}

describe('RateLimitStore beside rate-limit-redis', () => {
  it('with resetExpiryOnChange, every hit restarts the window’s expiry', async () => {
    const { app, key } = storeAndApp({ resetExpiryOnChange: true });
    await request(app).get('/').expect(200);
    await redis.client().pexpire(key, 1_000); // as if most of the window had passed
    await request(app).get('/').expect(200);
    expect(await redis.client().pttl(key)).toBeGreaterThan(50_000);
    expect(await redis.client().get(key)).toBe('2');
  });

  it('without it, the window keeps the expiry of its first hit', async () => {
    const { app, key } = storeAndApp();
    await request(app).get('/').expect(200);
    await redis.client().pexpire(key, 1_000);
    await request(app).get('/').expect(200);
    expect(await redis.client().pttl(key)).toBeLessThanOrEqual(1_000);
  });

  it.each([false, true])(
    'restarts at 1 a counter another store left without an expiry (resetExpiryOnChange: %s)',
    async (resetExpiryOnChange) => {
      const { app, key } = storeAndApp({ resetExpiryOnChange });
      await redis.client().set(key, '2');
      await request(app).get('/').expect(200);
      await request(app).get('/').expect(200);
      await request(app).get('/').expect(200);
      await request(app).get('/').expect(429);
      expect(await redis.client().pttl(key)).toBeGreaterThan(0);
    },
  );

  it.each([false, true])(
    'counts from 1 over a value it cannot count: another type, a word, a negative count (resetExpiryOnChange: %s)',
    async (resetExpiryOnChange) => {
      for (const plant of [
        (key: string) => redis.client().rpush(key, 'x'),
        (key: string) => redis.client().set(key, 'abc', 'PX', 60_000),
        (key: string) => redis.client().set(key, '-50', 'PX', 60_000),
      ]) {
        const { app, key } = storeAndApp({ resetExpiryOnChange });
        await plant(key);
        const statuses: number[] = [];
        for (let i = 0; i < 4; i++) statuses.push((await request(app).get('/')).status);
        expect(statuses).toEqual([200, 200, 200, 429]);
      }
    },
  );

  it('refuses a node-redis client by naming it, and says what it takes', () => {
    const nodeRedis = createClient({ url: 'redis://127.0.0.1:1' });
    expect(() => new RateLimitStore({ redis: nodeRedis as never })).toThrow(
      /option "redis" is invalid: a node-redis client \(expected an ioredis 5 or 6 Redis or Cluster client/,
    );
    expect(() => new RateLimitStore({ redis: new Map() as never })).toThrow(/a Map object/);
  });
});
