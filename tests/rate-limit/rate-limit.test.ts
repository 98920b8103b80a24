import express, { type Request } from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { rateLimit } from '../../lib/index.js';
import { recordingLogger, silentLogger, useTestRedis } from '../support/redis.js';
import { appWith, counterKey } from './support.js';

const redis = useTestRedis('rate-limit');
let counter = 0;
/** A limiter on the suite's Redis with its own key prefix. */
const limiter = (options: Parameters<typeof rateLimit>[0] = {}) =>
  rateLimit({ redis: redis.client(), prefix: `${redis.prefix}:${++counter}`, logger: silentLogger, ...options });

describe('rateLimit() basics', () => {
  it('allows `limit` requests per client, then answers 429 with Retry-After', async () => {
    const app = appWith(limiter({ limit: 3, window: '1m' }));
    for (let i = 0; i < 3; i++) await request(app).get('/').expect(200);
    const limited = await request(app).get('/').expect(429);
    expect(limited.text).toBe('Too many requests, please try again later.');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
  });

  it('defaults to 100 requests per 15 minutes with draft-11 headers', async () => {
    const app = appWith(limiter());
    const response = await request(app).get('/').expect(200);
    expect(response.headers['ratelimit-policy']).toBe('"default";q=100;w=900');
    expect(response.headers.ratelimit).toMatch(/^"default";r=99;t=(900|899)$/);
    expect(response.headers['x-ratelimit-limit']).toBeUndefined();
  });

  it('sends legacy X-RateLimit-* headers, or both styles, or none', async () => {
    const legacy = await request(appWith(limiter({ limit: 5, window: '1m', headers: 'legacy' }))).get('/');
    expect(legacy.headers['x-ratelimit-limit']).toBe('5');
    expect(legacy.headers['x-ratelimit-remaining']).toBe('4');
    const reset = Number(legacy.headers['x-ratelimit-reset']);
    expect(reset).toBeGreaterThan(Date.now() / 1000 + 55);
    expect(reset).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 60);
    expect(legacy.headers.ratelimit).toBeUndefined();

    const both = await request(appWith(limiter({ limit: 5, window: '1m', headers: 'both' }))).get('/');
    expect(both.headers.ratelimit).toBeDefined();
    expect(both.headers['x-ratelimit-remaining']).toBe('4');

    const none = await request(appWith(limiter({ limit: 5, headers: false }))).get('/');
    expect(none.headers.ratelimit).toBeUndefined();
    expect(none.headers['ratelimit-policy']).toBeUndefined();
    expect(none.headers['x-ratelimit-limit']).toBeUndefined();
  });

  it('exposes req.rateLimit', async () => {
    const app = appWith(limiter({ limit: 10, window: '1m' }));
    await request(app).get('/');
    const { body } = await request(app).get('/').expect(200);
    expect(body.rateLimit).toMatchObject({ limit: 10, used: 2, remaining: 8 });
    expect(body.rateLimit.key).toMatch(/^(127\.0\.0\.1|::1|::\/56)$/);
    const resetAt = new Date(body.rateLimit.resetAt).getTime();
    expect(resetAt).toBeGreaterThan(Date.now() + 55_000);
  });

  it('stores one key per client under the prefix, always with a TTL no longer than the window', async () => {
    const prefix = `${redis.prefix}:ttl`;
    const options = { redis: redis.client(), prefix, window: '30s', key: (req: Request) => String(req.query.who) };
    const app = appWith(rateLimit(options));
    await request(app).get('/?who=alice');
    await request(app).get('/?who=alice');
    await request(app).get('/?who=bob');
    const keys = (await redis.client().keys(`${prefix}:*`)).sort();
    expect(keys).toEqual([counterKey(options, 'alice'), counterKey(options, 'bob')]);
    // In the limiter's namespace: its rules' fingerprint (100 per 30 s, fixed window, clients keyed by the app).
    expect(keys).toEqual([`${prefix}:fixed.100-30s.custom:alice`, `${prefix}:fixed.100-30s.custom:bob`]);
    expect(await redis.client().get(counterKey(options, 'alice'))).toBe('2');
    for (const key of keys) {
      const ttl = await redis.client().pttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(30_000);
    }
  });

  it('keeps the window from the first request (INCR+EXPIRE semantics): later hits do not extend it', async () => {
    const options = { redis: redis.client(), prefix: `${redis.prefix}:window`, window: '20s', key: () => 'w' };
    const app = appWith(rateLimit(options));
    await request(app).get('/');
    await redis.client().pexpire(counterKey(options, 'w'), 5_000);
    await request(app).get('/');
    expect(await redis.client().pttl(counterKey(options, 'w'))).toBeLessThanOrEqual(5_000);
  });

  it('restarts a counter key that somehow has no TTL in a new window', async () => {
    const options = { redis: redis.client(), prefix: `${redis.prefix}:repair`, window: '10s', key: () => 'x' };
    const key = counterKey(options, 'x');
    await redis.client().set(key, '3');
    const app = appWith(rateLimit(options));
    // A count no window bounds is stale: this request starts a new window at its cost.
    const { body } = await request(app).get('/').expect(200);
    expect(body.rateLimit).toMatchObject({ used: 1, remaining: 99 });
    expect(await redis.client().get(key)).toBe('1');
    const ttl = await redis.client().pttl(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(10_000);
  });

  it('counts a request again once its window has expired', async () => {
    const app = appWith(limiter({ limit: 1, window: '300ms', key: () => 'expiring' }));
    await request(app).get('/').expect(200);
    await request(app).get('/').expect(429);
    await new Promise((resolve) => setTimeout(resolve, 350));
    await request(app).get('/').expect(200);
  });
});

describe('rateLimit() options', () => {
  it('skips requests for which skip() returns true', async () => {
    const app = appWith(limiter({ limit: 1, window: '1m', skip: (req) => req.query.free === '1' }));
    await request(app).get('/').expect(200);
    await request(app).get('/?free=1').expect(200);
    await request(app).get('/?free=1').expect(200);
    await request(app).get('/').expect(429);
  });

  it('charges `cost` per request, fixed or computed', async () => {
    const app = appWith(limiter({ limit: 10, window: '1m', cost: (req) => Number(req.query.cost ?? 1) }));
    expect((await request(app).get('/?cost=4')).body.rateLimit.used).toBe(4);
    expect((await request(app).get('/?cost=6')).body.rateLimit.used).toBe(10);
    await request(app).get('/?cost=1').expect(429);
  });

  it('takes a dynamic limit(req)', async () => {
    const app = appWith(
      limiter({ limit: async (req) => (req.query.vip ? 3 : 1), window: '1m', key: (req) => String(req.query.who) }),
    );
    await request(app).get('/?who=a').expect(200);
    await request(app).get('/?who=a').expect(429);
    await request(app).get('/?who=b&vip=1').expect(200);
    await request(app).get('/?who=b&vip=1').expect(200);
    const third = await request(app).get('/?who=b&vip=1').expect(200);
    expect(third.headers['ratelimit-policy']).toBe('"default";q=3;w=60');
    await request(app).get('/?who=b&vip=1').expect(429);
  });

  it('uses statusCode and message (string, object as JSON, or function)', async () => {
    const text = appWith(limiter({ limit: 0, statusCode: 503, message: 'slow down' }));
    const textResponse = await request(text).get('/').expect(503);
    expect(textResponse.text).toBe('slow down');
    expect(textResponse.headers['retry-after']).toBeDefined();

    const json = appWith(limiter({ limit: 0, message: { error: 'rate_limited' } }));
    expect((await request(json).get('/').expect(429)).body).toEqual({ error: 'rate_limited' });

    const computed = appWith(limiter({ limit: 0, message: async (_req, _res, info) => ({ retryAt: info.resetAt }) }));
    expect((await request(computed).get('/').expect(429)).body.retryAt).toBeDefined();
  });

  it('hands limited requests to a custom handler with the info', async () => {
    const app = appWith(
      limiter({
        limit: 1,
        window: '1m',
        handler: (_req, res, _next, info) => {
          res.status(418).json({ used: info.used, limit: info.limit });
        },
      }),
    );
    await request(app).get('/').expect(200);
    const limited = await request(app).get('/').expect(418);
    expect(limited.body).toEqual({ used: 2, limit: 1 });
    expect(limited.headers['retry-after']).toBeDefined();
  });

  it('passes an async handler that rejects to the error handler, for a counted and for a remembered block', async () => {
    const app = appWith(
      limiter({
        limit: 1,
        window: '1m',
        handler: async () => {
          throw new Error('handler failed');
        },
      }),
    );
    await request(app).get('/').expect(200);
    // The first limited request is answered after Redis; the next one from the block cache.
    expect((await request(app).get('/').expect(500)).body).toEqual({ error: 'handler failed' });
    expect((await request(app).get('/').expect(500)).body).toEqual({ error: 'handler failed' });
  });

  it('refunds failed requests with skipFailedRequests, without leaving a key without a TTL', async () => {
    const options = {
      redis: redis.client(),
      prefix: `${redis.prefix}:skipfailed`,
      limit: 2,
      window: '1m',
      key: () => 'c',
      skipFailedRequests: true,
    };
    const app = appWith(rateLimit(options));
    for (let i = 0; i < 5; i++) await request(app).get('/fail').expect(500);
    await request(app).get('/not-found').expect(404);
    await expect.poll(() => redis.client().get(counterKey(options, 'c'))).toBe('0');
    expect(await redis.client().pttl(counterKey(options, 'c'))).toBeGreaterThan(0);
    await request(app).get('/').expect(200);
    await request(app).get('/').expect(200);
    await request(app).get('/').expect(429);
  });

  it('refunds successful requests with skipSuccessfulRequests, and never drives a counter negative', async () => {
    const options = {
      redis: redis.client(),
      prefix: `${redis.prefix}:skipsuccess`,
      limit: 1,
      window: '1m',
      key: () => 'c',
      skipSuccessfulRequests: true,
    };
    const app = appWith(rateLimit(options));
    for (let i = 0; i < 4; i++) await request(app).get('/').expect(200);
    await expect.poll(() => redis.client().get(counterKey(options, 'c'))).toBe('0');
    await redis.client().del(counterKey(options, 'c'));
    // A refund arriving after the key expired must not create a key (which would have no TTL).
    await request(app).get('/fail').expect(500);
    await request(app).get('/').expect(429);
  });

  it('reset(client) forgets the count and the local block; get(client) reports it', async () => {
    const mw = limiter({ limit: 2, window: '1m', key: () => 'resettable' });
    const app = appWith(mw);
    expect(await mw.get('resettable')).toBeNull();
    await request(app).get('/');
    await request(app).get('/');
    await request(app).get('/').expect(429);
    const info = await mw.get('resettable');
    expect(info).toMatchObject({ limit: 2, used: 3, remaining: 0, key: 'resettable' });
    expect(info?.resetAt).toBeInstanceOf(Date);
    await mw.reset('resettable');
    expect(await mw.get('resettable')).toBeNull();
    await request(app).get('/').expect(200);
  });

  it('reset() and get() reject a missing or empty client with a TypeError; a number is a client', async () => {
    const mw = limiter({ limit: 2, key: () => '42' });
    await request(appWith(mw)).get('/').expect(200);
    expect(await mw.get(42)).toMatchObject({ used: 1, key: '42' });
    await expect(mw.reset(undefined as never)).rejects.toThrow(/rateLimit reset\(\): client is invalid: undefined/);
    await expect(mw.get('')).rejects.toThrow(/rateLimit get\(\): client is invalid: ""/);
    await mw.reset(42);
    expect(await mw.get('42')).toBeNull();
  });

  it('rejects invalid and unknown options with a TypeError naming the option', () => {
    expect(() => rateLimit({ limit: -1 })).toThrow(/rateLimit: option "limit" is invalid: -1/);
    expect(() => rateLimit({ window: 'soon' })).toThrow(/option "window" is invalid: "soon"/);
    expect(() => rateLimit({ window: 0 })).toThrow(/option "window" is invalid: 0/);
    expect(() => rateLimit({ algorithm: 'leaky' as never })).toThrow(/option "algorithm" is invalid: "leaky"/);
    expect(() => rateLimit({ headers: 'draft-6' as never })).toThrow(/option "headers"/);
    expect(() => rateLimit({ onRedisError: 'ignore' as never })).toThrow(/option "onRedisError"/);
    expect(() => rateLimit({ ipv6Subnet: 200 })).toThrow(/option "ipv6Subnet" is invalid: 200/);
    expect(() => rateLimit({ key: 'ip' as never })).toThrow(/option "key" is invalid: "ip"/);
    expect(() => rateLimit({ redis: {} as never })).toThrow(/option "redis"/);
    expect(() => rateLimit({ max: 5 } as never)).toThrow(/rateLimit: unknown option "max"/);
    expect(() => rateLimit({ message: { count: 1n } })).toThrow(/rateLimit: option "message" is invalid/);
    expect(() => rateLimit({ limit: 5 })).not.toThrow();
  });

  it('passes a throwing or non-string key function to next(err) with a clear message', async () => {
    const throwing = appWith(
      limiter({
        key: () => {
          throw new Error('no tenant header');
        },
      }),
    );
    expect((await request(throwing).get('/').expect(500)).body.error).toBe('no tenant header');
    const wrongType = appWith(limiter({ key: () => ({}) as never }));
    expect((await request(wrongType).get('/').expect(500)).body.error).toMatch(/'key' function returned/);
    const badLimit = appWith(limiter({ limit: () => Number.NaN }));
    expect((await request(badLimit).get('/').expect(500)).body.error).toMatch(/'limit' function returned NaN/);
  });

  it('counts a request whose headers an earlier middleware already sent, without failing it', async () => {
    const mw = limiter({ limit: 5 });
    const app = express();
    app.use((_req, res, next) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('early ');
      next();
    });
    app.use(mw);
    app.get('/', (req, res) => {
      res.end(`used ${req.rateLimit?.used}`);
    });
    const response = await request(app).get('/').expect(200);
    expect(response.text).toBe('early used 1');
    expect(response.headers.ratelimit).toBeUndefined();
  });

  it('survives absurd client keys: huge and odd strings are stored under a bounded key', async () => {
    const prefix = `${redis.prefix}:huge`;
    const options = { redis: redis.client(), prefix, limit: 1, key: (req: Request) => String(req.headers['x-k']) };
    const app = appWith(rateLimit(options));
    const huge = 'x:%{'.repeat(4_000);
    await request(app).get('/').set('x-k', huge).expect(200);
    await request(app).get('/').set('x-k', huge).expect(429);
    const stored = await redis.client().keys(`${prefix}:*`);
    expect(stored).toEqual([counterKey(options, huge)]);
    expect(stored[0].length).toBeLessThan(prefix.length + 100);
  });
});

describe('rateLimit() client IP', () => {
  it('respects trust proxy and groups IPv6 clients by /56', async () => {
    const mw = limiter({ limit: 1, window: '1m' });
    const app = appWith(mw, (a) => a.set('trust proxy', 1));
    await request(app).get('/').set('X-Forwarded-For', '2001:db8:1:100::1').expect(200);
    await request(app).get('/').set('X-Forwarded-For', '2001:db8:1:1ff::2').expect(429);
    await request(app).get('/').set('X-Forwarded-For', '2001:db8:1:200::1').expect(200);
    await request(app).get('/').set('X-Forwarded-For', '::ffff:10.0.0.1').expect(200);
    const mapped = await request(app).get('/').set('X-Forwarded-For', '10.0.0.1').expect(429);
    expect(mapped.body).toBeDefined();
    expect(await mw.get('2001:db8:1:100::/56')).toMatchObject({ used: 2 });
  });

  it('reset() and get() accept the client address in any notation', async () => {
    const mw = limiter({ limit: 1, window: '1m' });
    const app = appWith(mw, (a) => a.set('trust proxy', 1));
    await request(app).get('/').set('X-Forwarded-For', '203.0.113.9').expect(200);
    expect(await mw.get('::ffff:203.0.113.9')).toMatchObject({ used: 1, key: '203.0.113.9' });
    await request(app).get('/').set('X-Forwarded-For', '203.0.113.9').expect(429);
    await mw.reset('::ffff:cb00:7109');
    await request(app).get('/').set('X-Forwarded-For', '203.0.113.9').expect(200);
  });

  it('limits full IPv6 addresses when ipv6Subnet is false', async () => {
    const app = appWith(limiter({ limit: 1, ipv6Subnet: false }), (a) => a.set('trust proxy', 1));
    await request(app).get('/').set('X-Forwarded-For', '2001:db8::1').expect(200);
    await request(app).get('/').set('X-Forwarded-For', '2001:db8::2').expect(200);
    await request(app).get('/').set('X-Forwarded-For', '2001:DB8:0:0::1').expect(429);
  });

  it('never breaks on huge or garbage X-Forwarded-For values', async () => {
    const app = appWith(limiter({ limit: 5 }), (a) => a.set('trust proxy', true));
    await request(app).get('/').set('X-Forwarded-For', 'not-an-ip').expect(200);
    await request(app)
      .get('/')
      .set('X-Forwarded-For', `${'1.2.3.4, '.repeat(1_000)}zz`)
      .expect(200);
    await request(app).get('/').set('X-Forwarded-For', ':::::::').expect(200);
  });

  it('warns once when X-Forwarded-For arrives but trust proxy is off, and once when trust proxy is true', async () => {
    const logger = recordingLogger();
    const app = appWith(limiter({ logger }));
    await request(app).get('/').set('X-Forwarded-For', '1.2.3.4');
    await request(app).get('/').set('X-Forwarded-For', '1.2.3.4');
    expect(logger.warnings.filter((w) => w.includes("'trust proxy' is off"))).toHaveLength(1);

    const trustAll = recordingLogger();
    const open = appWith(limiter({ logger: trustAll }), (a) => a.set('trust proxy', true));
    await request(open).get('/');
    await request(open).get('/');
    expect(trustAll.warnings.filter((w) => w.includes("'trust proxy' is true"))).toHaveLength(1);
  });
});
