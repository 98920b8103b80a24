// Several windows in one limiter: 10 a second and 1,000 a day, checked and counted together.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rateLimit } from '../../lib/index.js';
import { silentLogger, uniquePrefix, useTestRedis, watchCommands } from '../support/redis.js';
import { appWith, counterKeys } from './support.js';

const redis = useTestRedis('rate-limit-rules');
const algorithms = ['fixed-window', 'sliding-window', 'token-bucket'] as const;

describe.each(algorithms)('%s with two rules', (algorithm) => {
  it('lets exactly the tightest rule through under concurrency, counting the blocked requests against neither', async () => {
    const prefix = uniquePrefix(`rules-${algorithm}`);
    const options = {
      prefix,
      algorithm,
      limit: [
        { limit: 10, window: '1h' },
        { limit: 25, window: '1d' },
      ],
      key: () => 'c',
      logger: silentLogger,
    };
    const apps = [redis.newClient(), redis.newClient()].map((client) =>
      appWith(rateLimit({ ...options, redis: client })),
    );
    const statuses = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        request(apps[i % 2])
          .get('/')
          .then((r) => r.status),
      ),
    );
    expect(statuses.filter((status) => status === 200)).toHaveLength(10);
    expect(statuses.filter((status) => status === 429)).toHaveLength(50);
    // Both counters hold the 10 admitted requests, each with a TTL, in one Cluster slot ({c}).
    const keys = counterKeys(options, 'c');
    expect(keys).toEqual([expect.stringMatching(/:\{c\}:1h$/), expect.stringMatching(/:\{c\}:1d$/)]);
    for (const key of keys) {
      expect(await redis.client().pttl(key)).toBeGreaterThan(0);
    }
    if (algorithm === 'fixed-window') {
      for (const key of keys) expect(await redis.client().get(key)).toBe('10');
    }
  });
});

describe('several rules: headers, req.rateLimit and Redis cost', () => {
  let watch: Awaited<ReturnType<typeof watchCommands>>;
  const client = () => redis.client();
  beforeAll(async () => {
    watch = await watchCommands(client());
  });
  afterAll(() => watch.stop());

  it('reports every rule in RateLimit and RateLimit-Policy (draft-11) and the binding one in req.rateLimit', async () => {
    const limiter = rateLimit({
      redis: client(),
      prefix: uniquePrefix('rules-headers'),
      limit: [
        { limit: 2, window: '1s' },
        { limit: 1000, window: '1d', name: 'daily' },
      ],
      key: () => 'c',
      headers: 'both',
      logger: silentLogger,
    });
    const app = appWith(limiter);
    const first = await request(app).get('/').expect(200);
    expect(first.headers['ratelimit-policy']).toBe('"1s";q=2;w=1, "daily";q=1000;w=86400');
    expect(first.headers.ratelimit).toMatch(/^"1s";r=1;t=1, "daily";r=999;t=86400$/);
    expect(first.body.rateLimit).toMatchObject({ limit: 2, used: 1, remaining: 1 });
    expect(first.body.rateLimit.rules.map((rule: { name: string }) => rule.name)).toEqual(['1s', 'daily']);
    expect(first.headers['x-ratelimit-limit']).toBe('2');
    await request(app).get('/').expect(200);
    const blocked = await request(app).get('/').expect(429);
    expect(blocked.headers['retry-after']).toBe('1');
    expect(blocked.headers.ratelimit).toMatch(/^"1s";r=0;t=1, "daily";r=998;t=86400$/);
    expect(await limiter.get('c')).toMatchObject({ limit: 2, used: 2, remaining: 0 });
    await limiter.reset('c');
    expect(await limiter.get('c')).toBeNull();
  });

  it('costs one round trip per counted request, whatever the number of rules', async () => {
    const app = appWith(
      rateLimit({
        redis: client(),
        prefix: uniquePrefix('rules-cost'),
        limit: [
          { limit: 100, window: '1s' },
          { limit: 1000, window: '1h' },
          { limit: 10_000, window: '1d' },
        ],
        key: () => 'c',
        logger: silentLogger,
      }),
    );
    await request(app).get('/'); // may load the script (NOSCRIPT, then EVAL)
    await watch.settle();
    watch.reset();
    for (let i = 0; i < 5; i++) await request(app).get('/').expect(200);
    await watch.settle();
    expect(watch.sent.map((args) => args[0].toLowerCase())).toEqual(Array(5).fill('evalsha'));
  });

  it('counts two rules with the same window apart (each has its own key, by name)', async () => {
    const app = appWith(
      rateLimit({
        redis: client(),
        prefix: uniquePrefix('rules-same-window'),
        limit: [
          { limit: 10, window: '1m', name: 'burst' },
          { limit: 4, window: '1m', name: 'strict' },
        ],
        key: () => 'c',
        logger: silentLogger,
      }),
    );
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push((await request(app).get('/')).status);
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
  });

  it('rejects rules that cannot be told apart, naming the option', () => {
    expect(() =>
      rateLimit({
        limit: [
          { limit: 1, window: '1s' },
          { limit: 2, window: 1000 },
        ],
      }),
    ).toThrow(/option "limit" is invalid.*same name/);
    expect(() => rateLimit({ limit: [] })).toThrow(/option "limit" is invalid/);
    expect(() => rateLimit({ limit: [{ limit: 1, window: '1s', name: 'a b' }] })).toThrow(/option "limit/);
  });
});
