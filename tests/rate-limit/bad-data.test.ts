// What lies under a limiter's keys is repaired, never obeyed: a value of another type, a count that is no whole
// number, a counter no window bounds, a bucket from the future. Counting goes on from a fresh state (an event
// and one log line say so) — no client is ever let through unlimited, or locked out, by what another program wrote.
import express from 'express';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis, type RateLimitOptions, type RediswareEvent, rateLimit } from '../../lib/index.js';
import { privateCluster } from '../support/private-cluster.js';
import { recordingLogger, silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';
import { counterKeys } from './support.js';

const redis = useTestRedis('rate-limit-bad-data');

type Plant = (client: Redis, key: string) => Promise<unknown>;
const now = Date.now();

/** Values of another type, for every algorithm. */
const wrongTypes: [string, Plant][] = [
  ['a list', (c, key) => c.rpush(key, 'x')],
  ['a set', (c, key) => c.sadd(key, 'x')],
  ['a sorted set', (c, key) => c.zadd(key, 1, 'x')],
];

/** Values of the right type that no limiter wrote, per algorithm. */
const malformed: Record<NonNullable<RateLimitOptions['algorithm']>, [string, Plant][]> = {
  'fixed-window': [
    ['a hash', (c, key) => c.hset(key, 'c', '1')],
    ['a word', (c, key) => c.set(key, 'abc', 'PX', 60_000)],
    ['a fraction', (c, key) => c.set(key, '1.5', 'PX', 60_000)],
    ['a huge negative count', (c, key) => c.set(key, '-1000000', 'PX', 60_000)],
    ['a count past the limit without a TTL', (c, key) => c.set(key, '99999')],
  ],
  'sliding-window': [
    ['a string', (c, key) => c.set(key, '5')],
    ['a window that is no number', (c, key) => c.hset(key, { w: 'x', c: 1, p: 0 })],
    ['a negative count in the current window', (c, key) => c.hset(key, { w: Math.floor(now / 60_000), c: -1e9, p: 0 })],
    ['a count that is not finite', (c, key) => c.hset(key, { w: Math.floor(now / 60_000), c: 'inf', p: 0 })],
  ],
  'token-bucket': [
    ['a string', (c, key) => c.set(key, '5')],
    ['a hugely negative bucket', (c, key) => c.hset(key, { t: -1e18, ts: now })],
    ['a bucket updated in the future', (c, key) => c.hset(key, { t: 0, ts: now + 1e9 })],
    ['a bucket without its time', (c, key) => c.hset(key, { t: 1 })],
  ],
};

/** Plants `plant` under the limiter's key(s) for client 'c', then expects exactly `limit` (3) requests through. */
async function expectRepaired(options: RateLimitOptions, plant: Plant, client: Redis = redis.client()) {
  const events: RediswareEvent[] = [];
  const logger = recordingLogger();
  const limiterOptions: RateLimitOptions = {
    redis: client,
    key: () => 'c',
    onRedisError: 'deny', // an error would answer 503
    blockCache: false,
    logger,
    onEvent: (event) => void events.push(event),
    ...options,
  };
  for (const key of counterKeys(limiterOptions, 'c')) await plant(client, key);
  const app = express().get('/', rateLimit(limiterOptions), (_req, res) => void res.send('ok'));
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) statuses.push((await request(app).get('/')).status);
  expect(statuses).toEqual([200, 200, 200, 429, 429]);
  expect(events.filter((event) => event.type === 'redis.repaired')).toHaveLength(1);
  expect(events.filter((event) => event.type === 'redis.error')).toEqual([]);
  expect(logger.warnings).toHaveLength(1);
  expect(logger.warnings[0]).toMatch(/wrong type or shape/);
  for (const key of counterKeys(limiterOptions, 'c')) expect(await client.pttl(key)).toBeGreaterThan(0);
}

describe.each(['fixed-window', 'sliding-window', 'token-bucket'] as const)(
  '%s with bad data under its key',
  (algorithm) => {
    const cases = [...wrongTypes, ...malformed[algorithm]];

    it.each(cases)('repairs %s and goes on counting', async (_what, plant) => {
      await expectRepaired({ algorithm, limit: 3, window: '1m', prefix: uniquePrefix('bad') }, plant);
    });

    it.each(cases)('with several rules, repairs %s and goes on counting', async (_what, plant) => {
      const limit = [
        { limit: 3, window: 60_000 },
        { limit: 100, window: 3_600_000 },
      ];
      await expectRepaired({ algorithm, limit, prefix: uniquePrefix('bad-rules') }, plant);
    });

    it('get() reads bad data as no count, and writes nothing', async () => {
      const options: RateLimitOptions = {
        redis: redis.client(),
        algorithm,
        key: () => 'c',
        prefix: uniquePrefix('bad-get'),
        logger: silentLogger,
      };
      const [key] = counterKeys(options, 'c');
      await redis.client().rpush(key, 'x');
      expect(await rateLimit(options).get('c')).toBeNull();
      expect(await redis.client().type(key)).toBe('list');
    });
  },
);

describe('on Redis Cluster', () => {
  let cluster: ReturnType<typeof createRedis>;
  beforeAll(async () => {
    const { nodes } = await privateCluster();
    cluster = createRedis({ cluster: { nodes }, logger: silentLogger });
    await new Promise((resolve) => cluster.once('ready', resolve));
  }, 60_000);
  afterAll(() => cluster?.disconnect());

  it.each(['fixed-window', 'sliding-window', 'token-bucket'] as const)(
    '%s repairs a key of another type, with one rule and several',
    async (algorithm) => {
      const plant: Plant = (client, key) => client.rpush(key, 'x');
      await expectRepaired(
        { algorithm, limit: 3, prefix: uniquePrefix('bad-cluster') },
        plant,
        cluster as unknown as Redis,
      );
      const limit = [
        { limit: 3, window: 60_000 },
        { limit: 100, window: 3_600_000 },
      ];
      await expectRepaired(
        { algorithm, limit, prefix: uniquePrefix('bad-cluster-rules') },
        plant,
        cluster as unknown as Redis,
      );
    },
  );
});
