// What lies under a limiter's keys is repaired, never obeyed — here, absurd numbers of
// the right type: a counter whose expiry lies far beyond the window (an older deployment of the same `name` with a
// longer window, another program), which locks the client out for as long as that expiry says.
import express from 'express';
import { rateLimit as expressRateLimit } from 'express-rate-limit';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { type RateLimitOptions, RateLimitStore, rateLimit } from '../../lib/index.js';
import { counterKeys } from '../rate-limit/support.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('stale-expiry');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const hour = 3_600_000;

describe('a counter whose expiry lies beyond the window', () => {
  it.each([
    ['one rule', { limit: 3, window: 1_000 }],
    [
      'several rules',
      {
        limit: [
          { limit: 3, window: 1_000 },
          { limit: 100, window: 2_000 },
        ],
      },
    ],
  ] as [string, RateLimitOptions][])(
    'fixed-window (%s): a client is admitted again once a window has passed',
    async (_what, rules) => {
      const options: RateLimitOptions = {
        redis: redis.client(),
        key: () => 'victim',
        name: 'login',
        prefix: uniquePrefix('ttl'),
        blockCache: false,
        logger: silentLogger,
        ...rules,
      };
      // Under the same name, an earlier deployment counted per hour (or another program wrote a long-lived count).
      for (const key of counterKeys(options, 'victim')) await redis.client().set(key, '50', 'PX', hour);
      const app = express().get('/', rateLimit(options), (_req, res) => void res.send('ok'));
      await request(app).get('/'); // whatever the first answer, the limiter has seen the value
      await sleep(2_300); // more than every window of the limiter
      const res = await request(app).get('/');
      expect(res.status).toBe(200);
    },
  );

  it('fixed-window: Retry-After never exceeds the window', async () => {
    const options: RateLimitOptions = {
      redis: redis.client(),
      key: () => 'victim',
      limit: 3,
      window: '1m',
      prefix: uniquePrefix('ttl-retry'),
      blockCache: false,
      logger: silentLogger,
    };
    const [key] = counterKeys(options, 'victim');
    await redis.client().set(key, '50', 'PX', 30 * 24 * hour);
    const app = express().get('/', rateLimit(options), (_req, res) => void res.send('ok'));
    const res = await request(app).get('/');
    // Repaired (200), or blocked for at most the window: never for the month the planted expiry says.
    expect(res.status === 200 ? 0 : Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
  });

  it('RateLimitStore under express-rate-limit: a client is admitted again once windowMs has passed', async () => {
    const prefix = `${uniquePrefix('erl-ttl')}:`;
    const store = new RateLimitStore({ redis: redis.client(), prefix, logger: silentLogger });
    await redis.client().set(`${prefix}victim`, '50', 'PX', hour);
    const app = express().get(
      '/',
      expressRateLimit({ windowMs: 1_000, limit: 3, store, keyGenerator: () => 'victim', validate: false }),
      (_req, res) => void res.send('ok'),
    );
    await request(app).get('/');
    await sleep(1_300);
    expect((await request(app).get('/')).status).toBe(200);
  });
});
