// Knowing whether Redis answers: `await redisReady()` at start-up, and `healthCheck()` for load-balancer probes.
// Each test stops, pauses or restarts a redis-server of its own.
import express from 'express';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { closeDefaultRedis, createRedis, healthCheck, RedisUnavailableError, redisReady } from '../lib/index.js';
import { healthOf } from '../lib/redis/health.js';
import { eventCount, privateRedisWithAdmin, unusedPort } from './support/private-redis.js';
import { silentLogger } from './support/redis.js';

let setup: Awaited<ReturnType<typeof privateRedisWithAdmin>>;
beforeAll(async () => {
  setup = await privateRedisWithAdmin();
});

const opened: Redis[] = [];
function open(url: string, options: { lazyConnect?: boolean } = {}): Redis {
  const client = createRedis({
    url,
    logger: silentLogger,
    retry: { baseDelay: 10, maxDelay: 50 },
    ...options,
  }) as Redis;
  opened.push(client);
  return client;
}
afterEach(() => {
  for (const client of opened.splice(0)) client.disconnect();
});

/** The listeners a client has, by event: redisReady() must leave them as it found them. */
function listenerCounts(client: Redis): Record<string, number> {
  return Object.fromEntries(client.eventNames().map((name) => [String(name), client.listenerCount(name)]));
}

/** Runs `work` with REDIS_URL set to `url` (the shared default client is made from it). */
async function withDefaultUrl(url: string, work: () => Promise<void>): Promise<void> {
  const saved = process.env.REDIS_URL;
  process.env.REDIS_URL = url;
  try {
    await work();
  } finally {
    await closeDefaultRedis();
    if (saved === undefined) delete process.env.REDIS_URL;
    else process.env.REDIS_URL = saved;
  }
}

describe('redisReady()', () => {
  it('resolves once Redis answers, for a client still connecting and for a lazyConnect client (which it connects)', async () => {
    const connecting = open(setup.server.url);
    await redisReady(connecting);
    expect(connecting.status).toBe('ready');
    const lazy = open(setup.server.url, { lazyConnect: true });
    await redisReady(lazy, { timeout: '2s' });
    expect(lazy.status).toBe('ready');
  });

  it('waits for a Redis that comes up within its timeout', async () => {
    await setup.server.stop();
    const client = open(setup.server.url);
    await eventCount(client, 'reconnecting', 2);
    const ready = redisReady(client, { timeout: '10s' });
    await setup.server.restart();
    await expect(ready).resolves.toBeUndefined();
    expect(await client.ping()).toBe('PONG');
  });

  it('rejects with a RedisUnavailableError saying what it tried (the address, never the password) and the last connection error', async () => {
    const port = await unusedPort();
    const client = open(`redis://alice:hunter2@127.0.0.1:${port}`);
    const error = await redisReady(client, { timeout: '300ms' }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RedisUnavailableError);
    const { message } = error as Error;
    expect(message).toContain(`127.0.0.1:${port}`);
    expect(message).toContain('300ms');
    expect(message).toMatch(/ECONNREFUSED/);
    expect(message).not.toContain('hunter2');
  });

  it('rejects within its timeout when Redis is connected but does not answer (paused)', async () => {
    const client = open(setup.server.url);
    await client.ping();
    await setup.admin.call('CLIENT', 'PAUSE', '1500', 'ALL');
    try {
      const started = Date.now();
      await expect(redisReady(client, { timeout: '200ms' })).rejects.toThrow(/did not answer within 200ms/);
      expect(Date.now() - started).toBeLessThan(1_400);
    } finally {
      await setup.admin.call('CLIENT', 'UNPAUSE');
    }
  });

  it('rejects at once for a client that has been closed', async () => {
    const client = open(setup.server.url);
    await client.quit();
    await expect(redisReady(client, { timeout: '10s' })).rejects.toThrow(/closed/);
  });

  it('leaves no listener behind, whether it resolved or rejected', async () => {
    // Each client has one health watcher of its own, for as long as it lives (not per call): made up front here.
    const up = open(setup.server.url);
    healthOf(up);
    const before = listenerCounts(up);
    await redisReady(up);
    expect(listenerCounts(up)).toEqual(before);

    const down = open(`redis://127.0.0.1:${await unusedPort()}`);
    healthOf(down);
    // While a client reconnects, ioredis itself holds a 'ready' and a 'close' listener per connection attempt in
    // flight: those two are left out of the count.
    const ours = (client: Redis) => {
      const { ready: _ready, close: _close, ...rest } = listenerCounts(client);
      return rest;
    };
    const beforeDown = ours(down);
    await expect(redisReady(down, { timeout: '100ms' })).rejects.toThrow(RedisUnavailableError);
    expect(ours(down)).toEqual(beforeDown);
  });

  it('uses the shared default client when given none, and takes the options alone', async () => {
    await withDefaultUrl(setup.server.url, async () => {
      await redisReady();
      await redisReady({ timeout: '1s' });
    });
  });

  it('rejects a bad timeout with a TypeError naming the option, and something else than a client', async () => {
    const client = open(setup.server.url, { lazyConnect: true });
    await expect(redisReady(client, { timeout: 'soon' })).rejects.toThrow(
      /redisReady: option "timeout" is invalid: "soon"/,
    );
    await expect(redisReady(client, { bogus: 1 } as never)).rejects.toThrow(/redisReady: unknown option "bogus"/);
    await expect(redisReady('redis://127.0.0.1' as never)).rejects.toThrow(TypeError);
  });
});

describe('healthCheck()', () => {
  function probeApp(options: Parameters<typeof healthCheck>[0]) {
    const app = express();
    app.get('/healthz', healthCheck(options));
    return app;
  }

  it('answers 200 with the connection state and the latency of a PING while Redis answers, never cached', async () => {
    const redis = open(setup.server.url);
    const response = await request(probeApp({ redis })).get('/healthz').expect(200);
    expect(response.body).toEqual({ status: 'ok', redis: 'ready', latencyMs: expect.any(Number) });
    expect(response.headers['cache-control']).toBe('no-store');
  });

  it('answers 503 at once while Redis is down, without waiting for its timeout, and 200 again once it is back', async () => {
    const redis = open(setup.server.url);
    const app = probeApp({ redis, timeout: '5s' });
    await request(app).get('/healthz').expect(200);
    await setup.server.stop();
    await eventCount(redis, 'reconnecting', 1);
    const started = Date.now();
    const response = await request(app).get('/healthz').expect(503);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(response.body).toMatchObject({ status: 'unavailable', redis: 'reconnecting' });
    expect(response.headers['cache-control']).toBe('no-store');
    const ready = eventCount(redis, 'ready', 1);
    await setup.server.restart();
    await ready;
    await request(app).get('/healthz').expect(200);
  });

  it('answers 503 within its timeout while Redis is connected but paused', async () => {
    const redis = open(setup.server.url);
    await redis.ping();
    const app = probeApp({ redis, timeout: '200ms' });
    await setup.admin.call('CLIENT', 'PAUSE', '1500', 'ALL');
    try {
      const started = Date.now();
      const response = await request(app).get('/healthz').expect(503);
      expect(Date.now() - started).toBeLessThan(1_400);
      expect(response.body).toMatchObject({ status: 'unavailable', redis: 'ready' });
    } finally {
      await setup.admin.call('CLIENT', 'UNPAUSE');
    }
  });

  it('answers 503 (never 500, never a hang) for a client that has been closed', async () => {
    const redis = open(setup.server.url);
    await redis.quit();
    const response = await request(probeApp({ redis })).get('/healthz').expect(503);
    expect(response.body).toMatchObject({ status: 'unavailable', redis: 'end' });
  });

  it('probes the shared default client when given none, connecting it on the first probe', async () => {
    await withDefaultUrl(setup.server.url, async () => {
      await request(probeApp(undefined)).get('/healthz').expect(200);
    });
  });

  it('rejects unknown and invalid options with a TypeError naming them', () => {
    expect(() => healthCheck({ timeout: 'soon' })).toThrow(/healthCheck: option "timeout" is invalid: "soon"/);
    expect(() => healthCheck({ bogus: true } as never)).toThrow(/healthCheck: unknown option "bogus"/);
    expect(() => healthCheck({ redis: 'redis://x' as never })).toThrow(/healthCheck: option "redis" is invalid/);
  });
});
