import express, { type Express } from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCache, createRedis, type RediswareEvent, rateLimit, redisSession, withLock } from '../../lib/index.js';
import { boundedCall } from '../../lib/redis/bounded.js';
import { deferUntilRecovered, healthOf, openAfterFailures } from '../../lib/redis/health.js';
import { type EmbeddedRedis, startEmbeddedRedis } from '../../support/embedded-redis.js';
import { eventCount } from '../support/private-redis.js';
import { recordingLogger, silentLogger } from '../support/redis.js';
import { cuttingProxy } from '../support/tcp-proxy.js';

// These tests kill, pause and stall their own redis-server, never the suite's shared one.
let server: EmbeddedRedis;
let admin: Redis;
beforeAll(async () => {
  server = await startEmbeddedRedis();
  admin = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
  admin.on('error', () => {});
});
afterAll(async () => {
  admin.disconnect();
  await server.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** kill -9 of the server, then (later) the same server again on the same port. */
async function killServer(): Promise<() => Promise<void>> {
  const pid = server.pid();
  if (pid === undefined) throw new Error('the test server is not running');
  process.kill(pid, 'SIGKILL');
  return async () => {
    await server.stop(); // marks it stopped (the process is gone already)
    await server.start();
  };
}

/** A route behind all three middlewares, each with `timeout` and its own outage logger. */
function stackedApp(redis: Redis, timeout: string, events: RediswareEvent[] = []) {
  const logger = recordingLogger();
  const onEvent = (event: RediswareEvent) => {
    events.push(event);
  };
  const cache = createCache({ redis, timeout, logger, onEvent, prefix: 'health-cache' });
  const app: Express = express();
  app.use(rateLimit({ redis, timeout, logger, onEvent, prefix: 'health-rate', limit: 1_000_000 }));
  app.use(
    redisSession({
      redis,
      timeout,
      logger,
      onEvent,
      secret: 'health-secret-of-at-least-thirty-two-chars',
      onRedisError: 'continue',
    }),
  );
  app.get('/page', cache.response({ ttl: '1m' }), (req, res) => {
    res.send(`page ${req.query.n ?? ''}`);
  });
  app.get('/job', async (_req, res) => {
    res.send(await withLock('health-job', () => 'done', { redis, timeout }));
  });
  app.post('/login', (req, res) => {
    req.session.userId = 'ada';
    res.send('in');
  });
  return { app, logger, cache };
}

/** Sends `count` requests one after another; resolves to their durations in ms, in order. */
async function timedRequests(agent: ReturnType<typeof request.agent>, count: number): Promise<number[]> {
  const durations: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await agent.get(`/page?n=${i}`).expect(200);
    durations.push(performance.now() - started);
  }
  return durations;
}

describe('a Redis known to be down', () => {
  it('is not waited on: after kill -9 every request behind rateLimit, redisSession and cacheResponse answers at once, and service resumes when Redis returns', async () => {
    const redis = createRedis({
      url: server.url,
      logger: silentLogger,
      retry: { baseDelay: 20, maxDelay: 200 },
    }) as Redis;
    await redis.ping();
    const events: RediswareEvent[] = [];
    const { app, logger } = stackedApp(redis, '1s', events);
    const agent = request.agent(app);
    await agent.post('/login').expect(200); // a session cookie: each request loads its session
    await agent.get('/page').expect(200);
    const closed = eventCount(redis, 'close', 1);
    const restart = await killServer();
    try {
      await closed;
      // Each of these would wait its whole 1 s timeout three times over (once per middleware) without fail-fast.
      const durations = await timedRequests(agent, 30);
      expect(Math.max(...durations)).toBeLessThan(200);
      // Each middleware logged the outage once.
      expect(logger.warnings).toHaveLength(3);
      // A Redis error that reaches Express's own error handler is a 503, not a 500.
      const job = await agent.get('/job').expect(503);
      expect(job.headers['retry-after']).toBe('1');
    } finally {
      await restart();
    }
    const back = Date.now();
    // Back within about a second (the client's reconnection delay is at most 200 ms here).
    for (;;) {
      const response = await request(app).get('/page').expect(200);
      if (response.headers.ratelimit !== undefined) break;
      expect(Date.now() - back).toBeLessThan(1500);
      await sleep(20);
    }
    // One line per middleware says Redis answers again, and each reported it.
    await agent.get('/page?n=again').expect(200);
    // Named as the outage lines name them.
    const names = (pattern: RegExp) => logger.warnings.flatMap((line) => pattern.exec(line)?.[1] ?? []).sort();
    expect(names(/^redisware: (\w+): Redis answers again/)).toEqual(['cache', 'rateLimit', 'redisSession']);
    expect(names(/^redisware: (\w+) could not use Redis/)).toEqual(['cache', 'rateLimit', 'redisSession']);
    const recovered = events.filter((event) => event.type === 'redis.recovered');
    expect(recovered.map((event) => event.source).sort()).toEqual(['cache', 'rateLimit', 'session']);
    redis.disconnect();
  });

  it('is not waited on while it never connected after a failed first attempt', async () => {
    const redis = createRedis({ url: 'redis://127.0.0.1:1', logger: silentLogger, retry: { baseDelay: 500 } }) as Redis;
    await eventCount(redis, 'error', 1);
    const started = performance.now();
    await expect(boundedCall(redis, 1000, () => redis.get('x'))).rejects.toThrow(
      /Redis (is reconnecting|connection closed)/,
    );
    expect(performance.now() - started).toBeLessThan(100);
    redis.disconnect();
  });
});

describe('a connected Redis that stops answering', () => {
  it(`opens a circuit after ${openAfterFailures} timeouts: later calls fail at once, and one trial call closes it when Redis answers again`, async () => {
    const redis = createRedis({ url: server.url, logger: silentLogger }) as Redis;
    await redis.ping();
    const health = healthOf(redis);
    await admin.call('CLIENT', 'PAUSE', '1500', 'ALL');
    const sent: string[] = [];
    const call = (key: string) =>
      boundedCall(redis, 100, () => {
        sent.push(key);
        return redis.set(key, '1', 'PX', 60_000);
      });
    const first = await Promise.allSettled([call('p1'), call('p2'), call('p3')]);
    expect(first.map((result) => result.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(health.down).toBe(true);
    // Failing at once: not sent, not waited for.
    const started = performance.now();
    await expect(call('p4')).rejects.toThrow(/not answering/);
    expect(performance.now() - started).toBeLessThan(20);
    expect(sent).toEqual(['p1', 'p2', 'p3']);
    // While paused, a trial goes out every few hundred ms at most, one at a time, and the rest fail at once.
    const during: PromiseSettledResult<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      during.push(...(await Promise.allSettled([call(`d${i}a`), call(`d${i}b`)])));
      await sleep(25);
    }
    expect(sent.length - 3).toBeGreaterThanOrEqual(1);
    expect(sent.length - 3).toBeLessThanOrEqual(4);
    expect(during.every((result) => result.status === 'rejected')).toBe(true);
    await admin.call('CLIENT', 'UNPAUSE');
    // The late reply of the trial in flight, or the next trial, closes it.
    const back = Date.now();
    while (health.down) {
      await call('probe').catch(() => {});
      expect(Date.now() - back).toBeLessThan(1000);
      await sleep(10);
    }
    await expect(call('after')).resolves.toBe('OK');
    redis.disconnect();
  });

  it('costs a paused Redis one wait per middleware, not one per request: the stack answers at once afterwards, and uses Redis again once it resumes', async () => {
    const redis = createRedis({ url: server.url, logger: silentLogger }) as Redis;
    await redis.ping();
    const { app } = stackedApp(redis, '100ms');
    const agent = request.agent(app);
    await agent.post('/login').expect(200);
    await admin.call('CLIENT', 'PAUSE', '1000', 'ALL');
    let durations: number[];
    try {
      durations = await timedRequests(agent, 12);
    } finally {
      await admin.call('CLIENT', 'UNPAUSE');
    }
    // The first request waits on each middleware (three timeouts open the circuit); the rest fail at once, but for
    // the one trial call let through every few hundred ms (one request may wait one timeout for it).
    expect(durations[0]).toBeGreaterThanOrEqual(250);
    expect(durations.slice(1).filter((ms) => ms >= 90).length).toBeLessThanOrEqual(2);
    const back = Date.now();
    for (;;) {
      const response = await agent.get('/page').expect(200);
      if (response.headers.ratelimit !== undefined) break;
      expect(Date.now() - back).toBeLessThan(1000);
      await sleep(20);
    }
    redis.disconnect();
  });

  it('opens the circuit on replies withheld by a stalled connection (TCP), and closes it once replies flow', async () => {
    const proxy = await cuttingProxy(server.port);
    const redis = createRedis({ url: `redis://127.0.0.1:${proxy.port}`, logger: silentLogger }) as Redis;
    await redis.ping();
    const health = healthOf(redis);
    proxy.holdRepliesAfter('stall-me');
    const call = (key: string) => boundedCall(redis, 100, () => redis.set(key, '1', 'PX', 60_000));
    await Promise.allSettled([call('stall-me'), call('s2'), call('s3')]);
    expect(health.down).toBe(true);
    const started = performance.now();
    await expect(call('s4')).rejects.toThrow(/not answering/);
    expect(performance.now() - started).toBeLessThan(20);
    redis.disconnect();
  });

  it('counts an error reply (BUSY, WRONGTYPE) as an answer, never as a reason to fail fast', async () => {
    const redis = createRedis({ url: server.url, logger: silentLogger }) as Redis;
    await redis.set('health:a-string', 'x', 'PX', 60_000);
    for (let i = 0; i < openAfterFailures + 2; i++) {
      await expect(boundedCall(redis, 500, () => redis.lpush('health:a-string', 'y'))).rejects.toThrow(/WRONGTYPE/);
    }
    expect(healthOf(redis).down).toBe(false);
    redis.disconnect();
  });
});

describe('writes held back during an outage', () => {
  it('are applied when Redis returns, before any other call is sent', async () => {
    const redis = createRedis({
      url: server.url,
      logger: silentLogger,
      retry: { baseDelay: 20, maxDelay: 100 },
    }) as Redis;
    await redis.del('health:held');
    const closed = eventCount(redis, 'close', 1);
    const restart = await killServer();
    const applied: (Error | undefined)[] = [];
    try {
      await closed;
      const held = deferUntilRecovered(redis, {
        source: 'cache',
        key: 'test:held',
        run: (r) => (r as Redis).set('health:held', 'applied', 'PX', 60_000),
        settled: (error) => applied.push(error),
      });
      expect(held).toBe(1);
      // The same write again is one write.
      const twin = {
        source: 'cache' as const,
        key: 'test:held',
        run: (r: unknown) => (r as Redis).set('health:held', 'applied', 'PX', 60_000),
      };
      expect(deferUntilRecovered(redis, twin)).toBe(1);
    } finally {
      await restart();
    }
    // The first call that goes through sees the held write applied.
    const back = Date.now();
    for (;;) {
      const value = await boundedCall(redis, 500, () => redis.get('health:held')).catch(() => 'failed');
      if (value !== 'failed') {
        expect(value).toBe('applied');
        break;
      }
      expect(Date.now() - back).toBeLessThan(1000);
      await sleep(10);
    }
    // The write replaced by its twin was applied with it: both callers were told.
    expect(applied).toEqual([undefined]);
    redis.disconnect();
  });

  it('held while the circuit is open are applied once Redis resumes, with no traffic at all', async () => {
    const redis = createRedis({ url: server.url, logger: silentLogger }) as Redis;
    await redis.del('health:held-open');
    await admin.call('CLIENT', 'PAUSE', '600', 'ALL');
    const call = () => boundedCall(redis, 50, () => redis.get('health:held-open'));
    await Promise.allSettled([call(), call(), call()]);
    expect(healthOf(redis).down).toBe(true);
    const applied: (Error | undefined)[] = [];
    deferUntilRecovered(redis, {
      source: 'cache',
      key: 'test:held-open',
      run: (r) => (r as Redis).set('health:held-open', 'applied', 'PX', 60_000),
      settled: (error) => applied.push(error),
    });
    // Nothing is sent from here on: the pause ends by itself (after 600 ms; a probe in flight then may still wait
    // its 1 s before the next one, with room for a loaded machine).
    const started = Date.now();
    while (applied.length === 0) {
      expect(Date.now() - started).toBeLessThan(4000);
      await sleep(20);
    }
    expect(applied).toEqual([undefined]);
    expect(await admin.get('health:held-open')).toBe('applied');
    expect(healthOf(redis).down).toBe(false);
    redis.disconnect();
  });

  it('are told once, a write replaced while it was being applied included', async () => {
    const redis = createRedis({ url: server.url, logger: silentLogger }) as Redis;
    await redis.ping();
    const told: string[] = [];
    const write = (name: string) => ({
      source: 'cache' as const,
      key: 'test:told-once',
      run: (r: unknown) => (r as Redis).set('health:told-once', name, 'PX', 60_000),
      settled: () => told.push(name),
    });
    deferUntilRecovered(redis, write('first')); // applied at once: Redis is up
    deferUntilRecovered(redis, write('second')); // replaces it while it is applied
    const started = Date.now();
    while (healthOf(redis).held > 0) {
      expect(Date.now() - started).toBeLessThan(1000);
      await sleep(5);
    }
    await sleep(20);
    expect(told.sort()).toEqual(['first', 'second']);
    redis.disconnect();
  });

  it('are given up, each caller told, once the app closes its client before Redis returns', async () => {
    const redis = createRedis({ url: 'redis://127.0.0.1:1', logger: silentLogger, retry: { baseDelay: 50 } }) as Redis;
    await eventCount(redis, 'error', 1);
    const told: (Error | undefined)[] = [];
    deferUntilRecovered(redis, {
      source: 'cache',
      key: 'test:abandoned',
      run: async () => 'OK',
      settled: (error) => told.push(error),
    });
    redis.disconnect();
    const started = Date.now();
    while (told.length === 0) {
      expect(Date.now() - started).toBeLessThan(1000);
      await sleep(20);
    }
    expect(String(told[0])).toMatch(/closed before these writes could be applied/);
    expect(healthOf(redis).held).toBe(0);
  });
});
