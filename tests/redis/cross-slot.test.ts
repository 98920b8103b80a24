// Behind a proxy in front of a Redis Cluster (Envoy, twemproxy, a managed "cluster behind one endpoint"), keys of
// several slots in one command are refused with CROSSSLOT. A one-node Cluster addressed as a plain Redis is exactly
// that, seen from the client.
import express, { type Request } from 'express';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCache, createRedis, rateLimit, redisSession } from '../../lib/index.js';
import { fixedWindowScript } from '../../lib/rate-limit/scripts.js';
import { counterKey } from '../rate-limit/support.js';
import { secret, sessionApp } from '../session/support.js';
import { burst } from '../support/burst.js';
import { privateCluster } from '../support/private-cluster.js';
import { type RecordingLogger, recordingLogger, scriptCaller, silentLogger, watchCommands } from '../support/redis.js';

let node: string;
const opened: Redis[] = [];
/** A plain (non-Cluster) client of the node, as an app behind a proxy has. */
async function proxiedClient(): Promise<Redis> {
  const client = createRedis({ url: node, logger: silentLogger }) as Redis;
  opened.push(client);
  await client.ping();
  return client;
}

beforeAll(async () => {
  ({
    nodes: [node],
  } = await privateCluster(1));
}, 60_000);
afterAll(() => {
  for (const client of opened) client.disconnect();
});

const evalshaKeyCounts = (sent: string[][]) =>
  sent.filter((args) => args[0].toLowerCase() === 'evalsha').map((args) => Number(args[2]));

describe('behind a proxy that refuses keys of several slots', () => {
  it('a refused batch is answered call by call, and later calls are sent one by one, after one warning', async () => {
    const client = await proxiedClient();
    const logger: RecordingLogger = recordingLogger();
    const caller = scriptCaller(client, undefined, 5_000, logger);
    const keys = Array.from({ length: 6 }, (_, i) => `cross-slot:batch:${i}`);
    const hitAll = () =>
      Promise.all(keys.map((key) => caller.run(fixedWindowScript, [key], [1, 60_000, 100, 0]) as Promise<number[]>));
    const watch = await watchCommands(client, node);
    try {
      const first = await hitAll();
      expect(first.map((reply) => reply[1])).toEqual(Array(6).fill(1));
      await watch.settle();
      // One batch (refused, perhaps after loading the batched script), then the same calls one by one.
      expect(evalshaKeyCounts(watch.sent).filter((n) => n === 1)).toHaveLength(6);
      expect(logger.warnings).toHaveLength(1);
      expect(logger.warnings[0]).toMatch(/CROSSSLOT/);
      watch.reset();

      const second = await hitAll();
      expect(second.map((reply) => reply[1])).toEqual(Array(6).fill(2));
      await watch.settle();
      expect(evalshaKeyCounts(watch.sent)).toEqual(Array(6).fill(1));
      expect(logger.warnings).toHaveLength(1);
    } finally {
      watch.stop();
    }
    // Never applied twice: each key counted each call once.
    for (const key of keys) expect(await client.get(key)).toBe('2');
  });

  it('rateLimit counts every request of a crowd of clients exactly once and never fails open', async () => {
    const client = await proxiedClient();
    const logger = recordingLogger();
    const app = express();
    const options = {
      redis: client,
      prefix: 'rl',
      limit: 1,
      key: (req: Request) => String(req.headers['x-client']),
      logger,
    };
    app.use(rateLimit(options));
    app.get('/', (_req, res) => void res.send('ok'));
    const crowd = Array.from({ length: 60 }, (_, i) => ({ path: '/', headers: { 'X-Client': `c${i}` } }));
    const first = await burst(app, crowd);
    expect(first.map((r) => [r.status, r.headers.ratelimit])).toEqual(crowd.map(() => [200, '"default";r=0;t=900']));
    expect(logger.warnings.filter((warning) => /CROSSSLOT/.test(warning))).toHaveLength(1);
    const second = await burst(app, crowd);
    expect(second.map((r) => r.status)).toEqual(crowd.map(() => 429));
    for (let i = 0; i < 60; i++) expect(await client.get(counterKey(options, `c${i}`))).toBe('2');
  });

  it('sessions of many clients load and save under load without a 503', async () => {
    const client = await proxiedClient();
    const app = sessionApp(redisSession({ secret, redis: client, logger: silentLogger }));
    const writes = await burst(
      app,
      Array.from({ length: 40 }, (_, i) => ({ path: `/set?n=${i}` })),
    );
    expect(writes.map((r) => r.status)).toEqual(writes.map(() => 200));
    const cookies = writes.map((r) => r.headers['set-cookie'].split(';')[0]);
    const reads = await burst(
      app,
      cookies.map((cookie) => ({ path: '/peek', headers: { Cookie: cookie } })),
    );
    expect(reads.map((r) => [r.status, JSON.parse(r.body).data.n])).toEqual(cookies.map((_, i) => [200, String(i)]));
  });

  it('the response cache stores tagged entries (tag sets in their own slots) and invalidates them', async () => {
    const client = await proxiedClient();
    const cache = createCache({ redis: client, prefix: 'cache', logger: silentLogger });
    let runs = 0;
    const app = express();
    app.get('/items/:id', cache.response({ tags: (req) => [`item:${req.params.id}`, 'items'] }), (req, res) => {
      runs++;
      res.json({ id: req.params.id });
    });
    await request(app).get('/items/1').expect(200);
    expect((await request(app).get('/items/1').expect(200)).headers['x-cache']).toBe('HIT');
    expect(await cache.invalidateTags('items')).toBe(1);
    expect((await request(app).get('/items/1').expect(200)).headers['x-cache']).toBe('MISS');
    expect(runs).toBe(2);
  });

  it('batch: false sends one script call per request from the start, without a warning', async () => {
    const client = await proxiedClient();
    const logger = recordingLogger();
    const app = express();
    app.use(
      rateLimit({
        redis: client,
        prefix: 'unbatched',
        key: (req) => String(req.headers['x-client']),
        batch: false,
        logger,
      }),
    );
    app.get('/', (_req, res) => void res.send('ok'));
    const watch = await watchCommands(client, node);
    try {
      const responses = await burst(
        app,
        Array.from({ length: 30 }, (_, i) => ({ path: '/', headers: { 'X-Client': `c${i}` } })),
      );
      const statuses = responses.map((r) => r.status);
      expect(statuses).toEqual(Array(30).fill(200));
      await watch.settle();
      expect(evalshaKeyCounts(watch.sent).filter((n) => n !== 1)).toEqual([]);
    } finally {
      watch.stop();
    }
    expect(logger.warnings).toEqual([]);
  });
});
