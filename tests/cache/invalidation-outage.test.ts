// An invalidation that cannot reach Redis (killed, paused, its connection cut or its replies withheld) is held in
// the process and applied before it serves anything from Redis again; the route that triggered it answers as its
// handler did. Each test uses the app's own ioredis client, and a redis-server of this file's own.
import express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { invalidateScript } from '../../lib/cache/scripts.js';
import { createCache, type RediswareEvent } from '../../lib/index.js';
import { healthOf, maxDeferredWrites } from '../../lib/redis/health.js';
import { eventCount, privateRedisWithAdmin } from '../support/private-redis.js';
import { recordingLogger, silentLogger, uniquePrefix } from '../support/redis.js';
import { cuttingProxy } from '../support/tcp-proxy.js';
import { until } from '../support/until.js';
import { gate } from './support.js';

let server: Awaited<ReturnType<typeof privateRedisWithAdmin>>['server'];
let admin: Redis;
beforeAll(async () => {
  ({ server, admin } = await privateRedisWithAdmin());
});

const opened: Redis[] = [];
afterAll(() => {
  for (const redis of opened) redis.disconnect();
});
/** The app's own client, reconnecting quickly, at `url` (default: this file's redis-server). */
async function ownClient(url = server.url): Promise<Redis> {
  const redis = new Redis(url, { retryStrategy: () => 20 });
  redis.on('error', () => {});
  opened.push(redis);
  await redis.ping();
  return redis;
}

/** Resolves once Redis answers `redis`'s calls again: the pause is over, and what the client held is applied. */
async function answersAgain(redis: Redis): Promise<void> {
  await admin.ping(); // blocked until a pause is over
  await until(() => !healthOf(redis).down);
}

/** A route cached with the tag `items`, a PUT on its URL, and a route that changes the items and says so. */
function appOn(redis: Redis, logger = silentLogger) {
  const events: RediswareEvent[] = [];
  const cache = createCache({
    redis,
    prefix: uniquePrefix('invalidation-outage'),
    timeout: '100ms',
    logger,
    onEvent: (event) => void events.push(event),
  });
  let version = 1;
  const app = express();
  app.get('/item', cache.response({ ttl: '5m', tags: ['items'] }), (_req, res) => void res.send(`v${version}`));
  app.put('/item', cache.response(), (_req, res) => {
    version++;
    res.status(201).send('saved');
  });
  app.post('/items/changed', async (_req, res) => {
    version++;
    res.json({ deleted: await cache.invalidateTags('items') });
  });
  const deferred = () => events.filter((event) => event.type === 'redis.deferred');
  return { app, cache, events, deferred };
}

/** Stores `/item` and checks that it is served from Redis. */
async function warm(app: express.Express): Promise<void> {
  await request(app).get('/item').expect(200, 'v1');
  expect((await request(app).get('/item')).headers['x-cache']).toBe('HIT');
}

/** The next GET of `/item`: label and body. */
async function nextGet(app: express.Express): Promise<[string, string]> {
  const response = await request(app).get('/item');
  return [response.headers['x-cache'] as string, response.text];
}

describe('an invalidation while Redis is paused (CLIENT PAUSE)', () => {
  it('a PUT answers as its handler did, and once Redis answers again the first GET is a fresh MISS, not the stale entry', async () => {
    const redis = await ownClient();
    const { app, deferred } = appOn(redis);
    await warm(app);
    await admin.call('CLIENT', 'PAUSE', '600', 'ALL');
    const put = await request(app).put('/item');
    expect([put.status, put.text]).toEqual([201, 'saved']);
    expect(deferred()).toEqual([
      { type: 'redis.deferred', source: 'cache', operation: 'invalidate', pending: expect.any(Number) },
    ]);
    await answersAgain(redis);
    expect(await nextGet(app)).toEqual(['MISS', 'v2']);
  });

  it('a route that awaits cache.invalidateTags() answers 200 (0 deleted so far), and the tagged entry is gone once Redis answers again', async () => {
    const redis = await ownClient();
    const { app, events } = appOn(redis);
    await warm(app);
    await admin.call('CLIENT', 'PAUSE', '600', 'ALL');
    await request(app).post('/items/changed').expect(200, { deleted: 0 });
    await request(app).post('/items/changed').expect(200, { deleted: 0 }); // held once
    await answersAgain(redis);
    expect(await nextGet(app)).toEqual(['MISS', 'v3']);
    // Applied, it is reported as any invalidation is: each application once (the second request's is applied
    // again if it came while the first's was on its way), the entry counted once.
    const invalidated = events.flatMap((event) => (event.type === 'cache.invalidated' ? [event] : []));
    expect(invalidated.every((event) => event.tags.join() === 'items' && event.durationMs < 5_000)).toBe(true);
    expect(invalidated.reduce((sum, event) => sum + event.count, 0)).toBe(1);
  });

  it('cache.delete() resolves, and the value is gone once Redis answers again', async () => {
    const redis = await ownClient();
    const { cache } = appOn(redis);
    await cache.set('price', 10);
    await admin.call('CLIENT', 'PAUSE', '600', 'ALL');
    await cache.delete('price');
    await answersAgain(redis);
    expect(await cache.get('price')).toBeUndefined();
  });
});

describe('an invalidation while Redis is killed', () => {
  it('a PUT and a route awaiting invalidateTags() answer as their handlers did, and a response produced before the kill is not stored after Redis returns', async () => {
    const redis = await ownClient();
    const cache = createCache({ redis, prefix: uniquePrefix('killed'), timeout: '100ms', logger: silentLogger });
    let version = 1;
    const held = gate();
    const reached = gate();
    const app = express();
    app.get('/doc', cache.response(), async (_req, res) => {
      const seen = version; // the data as it was before the write
      if (seen === 1) {
        reached.open();
        await held.opened;
      }
      res.send(`v${seen}`);
    });
    app.put('/doc', cache.response(), (_req, res) => {
      version++;
      res.send('saved');
    });
    app.post('/docs/changed', async (_req, res) => {
      version++;
      res.json({ deleted: await cache.invalidateTags('docs') });
    });
    const slow = request(app)
      .get('/doc')
      .then((response) => response);
    await reached.opened; // its lookup read Redis's clock before the kill
    const closed = eventCount(redis, 'close', 1);
    await server.stop();
    await closed;
    await request(app).put('/doc').expect(200, 'saved');
    await request(app).post('/docs/changed').expect(200, { deleted: 0 });
    const ready = eventCount(redis, 'ready', 1);
    await server.restart();
    await ready;
    await until(() => !healthOf(redis).down);
    held.open(); // the old data reaches its store only now, after the PUT's invalidation was applied
    expect((await slow).text).toBe('v1');
    // A second GET waits for the first's store (the same flight), then reads Redis.
    const after = await request(app).get('/doc');
    expect([after.headers['x-cache'], after.text]).toEqual(['MISS', 'v3']);
  });

  it('held invalidations are bounded: the same tag twice is held once, and past the bound one is dropped with a redis.dropped event and a logged error', async () => {
    const redis = await ownClient();
    const logger = recordingLogger();
    const { cache, events, deferred } = appOn(redis, logger);
    const closed = eventCount(redis, 'close', 1);
    await server.stop();
    await closed;
    await cache.invalidateTags('a');
    await cache.invalidateTags('a');
    expect(deferred().map((event) => (event as { pending: number }).pending)).toEqual([1, 1]);
    const many = Array.from({ length: maxDeferredWrites }, (_, i) => `tag-${i}`);
    await expect(cache.invalidateTags(...many)).resolves.toBe(0);
    expect(healthOf(redis).held).toBe(maxDeferredWrites);
    expect(events.filter((event) => event.type === 'redis.dropped')).toEqual([
      { type: 'redis.dropped', source: 'cache', operation: 'invalidate', pending: maxDeferredWrites },
    ]);
    expect(logger.errors).toEqual([expect.stringContaining('dropped')]);
    const ready = eventCount(redis, 'ready', 1);
    await server.restart();
    await ready;
    await until(() => healthOf(redis).held === 0, 15_000);
  }, 30_000);
});

describe('an invalidation whose connection fails mid-command (tests/support/tcp-proxy.ts)', () => {
  it('cut after the script reached Redis: the route answers 200, and after the reconnect the tagged entry is gone', async () => {
    const proxy = await cuttingProxy(server.port);
    const redis = await ownClient(`redis://127.0.0.1:${proxy.port}`);
    const { app } = appOn(redis);
    await warm(app);
    proxy.cutAfter(invalidateScript.sha); // its tombstone is set, its entries are never deleted
    await request(app).post('/items/changed').expect(200, { deleted: 0 });
    expect(proxy.cuts).toBe(1);
    await until(() => !healthOf(redis).down);
    expect(await nextGet(app)).toEqual(['MISS', 'v2']);
  });

  it('replies withheld (a stalled link): the route answers 200, and once the link is replaced the tagged entry is gone', async () => {
    const proxy = await cuttingProxy(server.port);
    const redis = await ownClient(`redis://127.0.0.1:${proxy.port}`);
    const { app } = appOn(redis);
    await warm(app);
    proxy.holdRepliesAfter(invalidateScript.sha);
    await request(app).post('/items/changed').expect(200, { deleted: 0 });
    expect(proxy.holds).toBe(1);
    expect(await nextGet(app)).toEqual(['BYPASS', 'v2']); // nothing is read before the invalidation is applied
    const reconnected = eventCount(redis, 'ready', 1);
    await admin.call('CLIENT', 'KILL', 'TYPE', 'normal'); // every connection but the admin's
    await reconnected;
    await until(() => !healthOf(redis).down);
    expect(await nextGet(app)).toEqual(['MISS', 'v2']);
  });
});
