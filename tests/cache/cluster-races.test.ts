// Behind a proxy that refuses keys of several slots (a one-node Cluster addressed as a plain Redis), a store is
// three steps: tag sets, then the entry, then the tombstones read again. The entry's step may reach Redis late.
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeScript } from '../../lib/cache/scripts.js';
import { createCache, createRedis } from '../../lib/index.js';
import { privateCluster } from '../support/private-cluster.js';
import { silentLogger } from '../support/redis.js';
import { sleep } from './support.js';

/** A proxy that, once armed, holds every byte a client sends after `marker` for `ms` (a stalled link). */
async function stallingProxy(targetPort: number) {
  const sockets = new Set<Socket>();
  let marker: string | undefined;
  let stallMs = 0;
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    let held: Buffer[] | undefined;
    client.on('data', (chunk: Buffer) => {
      if (held) {
        held.push(chunk);
        return;
      }
      if (marker !== undefined && chunk.toString('latin1').includes(marker)) {
        marker = undefined;
        held = [chunk];
        setTimeout(() => {
          for (const bytes of held ?? []) upstream.write(bytes);
          held = undefined;
        }, stallMs);
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    client.on('close', close);
    upstream.on('error', close);
    upstream.on('close', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    stallAfter(text: string, ms: number) {
      marker = text;
      stallMs = ms;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

let node: string;
const opened: Redis[] = [];
let proxy: Awaited<ReturnType<typeof stallingProxy>>;
beforeAll(async () => {
  ({
    nodes: [node],
  } = await privateCluster(1));
  proxy = await stallingProxy(Number(new URL(node).port));
}, 60_000);
afterAll(async () => {
  for (const client of opened) client.disconnect();
  await proxy.close();
});

function client(url: string): Redis {
  const redis = createRedis({ url, logger: silentLogger }) as Redis;
  opened.push(redis);
  return redis;
}

describe('an invalidation against a fill whose entry reaches Redis late (keys of several slots refused)', () => {
  it('an entry produced before an invalidation is never served after it', async () => {
    const prefix = `attack2-cluster-${Math.random().toString(36).slice(2, 8)}`;
    let version = 1;
    const appOf = (redis: Redis) => {
      const cache = createCache({ redis, prefix, timeout: 200, logger: silentLogger });
      const app = express();
      app.use(cache.response({ ttl: '5m' }));
      app.get('/warm', (_req, res) => void res.send('warm'));
      app.get('/page', (_req, res) => void res.send(`v${version}`));
      return { app, cache };
    };
    // Instance A reaches the node through a link that will stall; instance B directly.
    const a = appOf(client(`redis://127.0.0.1:${proxy.port}`));
    const b = appOf(client(node));
    // A's scripts are cached on the node, and A knows the proxy refuses keys of several slots.
    await request(a.app).get('/warm');
    expect((await request(a.app).get('/warm')).headers['x-cache']).toBe('HIT');

    // A fills /page: its tag set is written, then the entry's script stalls on the way to Redis (longer than the
    // cache's timeout).
    proxy.stallAfter(storeScript.sha, 1_000);
    const filled = await request(a.app).get('/page');
    expect(filled.text).toBe('v1');
    await sleep(300); // A has given up on its store
    // The data changes, and B invalidates /page (a PUT through the cache, and cache.delete too).
    version = 2;
    b.app.put('/page', (_req, res) => void res.send('updated'));
    expect((await request(b.app).put('/page')).status).toBe(200);
    await b.cache.delete('/page');
    await sleep(1_200); // the stalled link delivers A's entry
    // Anything produced before the invalidation is gone.
    const after = await request(b.app).get('/page');
    // And it is untagged: a later cache.delete('/page') does not reach it either.
    await b.cache.delete('/page');
    const later = await request(b.app).get('/page');
    expect([after.text, later.text]).toEqual(['v2', 'v2']);
  });

  it('a value set while its tag was being invalidated is still reached by the next invalidation of that tag', async () => {
    const prefix = `attack2-cluster-${Math.random().toString(36).slice(2, 8)}`;
    const a = createCache({
      redis: client(`redis://127.0.0.1:${proxy.port}`),
      prefix,
      timeout: 2_000,
      logger: silentLogger,
    });
    const b = createCache({ redis: client(node), prefix, timeout: 2_000, logger: silentLogger });
    await a.set('warm', 1, { tags: ['warm'] }); // scripts cached, keys of several slots known to be refused
    await a.set('warm', 1, { tags: ['warm'] });
    // A sets a value tagged `products`; the entry's step takes 300 ms to reach Redis (well within the timeout).
    proxy.stallAfter(storeScript.sha, 300);
    const setting = a.set('product:1', { price: 10 }, { tags: ['products'] });
    await sleep(100);
    await b.invalidateTags('products'); // runs between A's tag step and its entry step
    await setting; // resolves: the set succeeded
    expect(await b.get('product:1')).toEqual({ price: 10 });
    // Later, the products change: every value tagged `products` must go.
    await b.invalidateTags('products');
    expect(await b.get('product:1')).toBeUndefined();
  });
});

describe('a client whose ioredis keyPrefix begins the cache prefix (`cache:` and `cache`)', () => {
  it('behind a proxy that refuses keys of several slots, a PUT and invalidateTags delete the entries they tag', async () => {
    const redis = new Redis(node, { keyPrefix: 'cache:' });
    opened.push(redis);
    const cache = createCache({ redis, logger: silentLogger }); // the default prefix, 'cache'
    let version = 1;
    const app = express();
    app.use(cache.response({ ttl: '5m', tags: () => ['items'] }));
    app.get('/item', (_req, res) => void res.send(`v${version}`));
    app.put('/item', (_req, res) => void res.send('updated'));
    app.get('/other', (_req, res) => void res.send(`other v${version}`));
    expect((await request(app).get('/item')).headers['x-cache']).toBe('MISS');
    expect((await request(app).get('/item')).headers['x-cache']).toBe('HIT');
    expect((await request(app).get('/other')).headers['x-cache']).toBe('MISS');
    version = 2;
    expect((await request(app).put('/item')).status).toBe(200);
    expect((await request(app).get('/item')).text).toBe('v2');
    await cache.invalidateTags('items');
    expect((await request(app).get('/other')).text).toBe('other v2');
    await cache.set('price', 10, { tags: ['prices'] });
    await cache.invalidateTags('prices');
    expect(await cache.get('price')).toBeUndefined();
  });
});
