// Invalidation wins every race with a fill, and says what it did without saying what the request held.
import { writeFileSync } from 'node:fs';
import { request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, describe, expect, it } from 'vitest';
import { createCache, type RediswareEvent } from '../../lib/index.js';
import { privateRedisWithAdmin } from '../support/private-redis.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';
import { gate, stackApp } from './support.js';

const redis = useTestRedis('cache-invalidation');
const newCache = (options: Parameters<typeof createCache>[0] = {}) =>
  createCache({ redis: redis.client(), prefix: uniquePrefix('invalidation'), logger: silentLogger, ...options });

describe('an invalidation that lands while a response is being produced', () => {
  it('a PUT during a slow GET: the GET’s older response is not stored', async () => {
    const cache = newCache();
    let version = 1;
    const held = gate();
    const reached = gate();
    const app = stackApp();
    app.use(cache.response());
    app.get('/doc', async (_req, res) => {
      const seen = version; // read before the write below
      if (seen === 1) {
        reached.open();
        await held.opened;
      }
      res.json({ version: seen });
    });
    app.put('/doc', (_req, res) => {
      version++;
      res.send('updated');
    });
    const slow = request(app)
      .get('/doc')
      .then((r) => r);
    await reached.opened; // the GET is in its handler
    await request(app).put('/doc').expect(200);
    held.open();
    expect((await slow).body.version).toBe(1);
    const after = await request(app).get('/doc');
    expect(after.body.version).toBe(2);
  });

  it('invalidateTags() during a slow fill: the fill is not stored', async () => {
    const cache = newCache();
    let version = 1;
    const held = gate();
    const reached = gate();
    const app = stackApp();
    app.get('/news', cache.response({ tags: ['news'] }), async (_req, res) => {
      const seen = version;
      if (seen === 1) {
        reached.open();
        await held.opened;
      }
      res.json({ version: seen });
    });
    const slow = request(app)
      .get('/news')
      .then((r) => r);
    await reached.opened;
    version = 2;
    await cache.invalidateTags('news');
    held.open();
    await slow;
    expect((await request(app).get('/news')).body.version).toBe(2);
  });

  it('cache.delete(key) during a slow wrap(): the value loaded before it is not stored', async () => {
    const cache = newCache();
    let version = 1;
    const held = gate();
    const reached = gate();
    const slow = cache.wrap('settings', async () => {
      const seen = version;
      reached.open();
      await held.opened;
      return { version: seen };
    });
    await reached.opened;
    version = 2;
    await cache.delete('settings');
    held.open();
    expect(await slow).toEqual({ version: 1 });
    expect(await cache.wrap('settings', async () => ({ version }))).toEqual({ version: 2 });
  });
});

describe('what events say', () => {
  it('carries no custom key value, query string or Location a request supplied', async () => {
    const events: RediswareEvent[] = [];
    const cache = newCache({ onEvent: (event) => void events.push(event) });
    const app = express();
    app.use(cache.response({ key: (req) => `${req.path} ${req.headers.authorization ?? ''}`, allowAuthorized: true }));
    app.get('/api/me', (_req, res) => void res.send('me'));
    app.post('/api/me', (_req, res) => void res.send('saved'));
    app.post('/pub/password-reset', (_req, res) => void res.location('/signed-in?code=OAUTH-CODE').send('ok'));
    await request(app).get('/api/me').set('Authorization', 'Bearer SECRET-TOKEN');
    await request(app).post('/api/me').set('Authorization', 'Bearer SECRET-TOKEN');
    const plain = express();
    plain.use(cache.response());
    plain.post('/pub/password-reset', (_req, res) => void res.location('/signed-in?code=OAUTH-CODE').send('ok'));
    await request(plain).post('/pub/password-reset?token=RESET-TOKEN');
    await cache.delete('/pub/password-reset?token=RESET-TOKEN');
    await cache.wrap('user:SECRET-ID', () => 1);
    const invalidations = events.filter((event) => event.type === 'cache.invalidated');
    expect(invalidations.length).toBeGreaterThanOrEqual(3);
    const said = JSON.stringify(events);
    for (const secret of ['SECRET-TOKEN', 'OAUTH-CODE', 'RESET-TOKEN', 'SECRET-ID']) expect(said).not.toContain(secret);
  });
});

describe('a revalidated HIT', () => {
  it('honours Range like any HIT (express.static content, every HIT a revalidation)', async () => {
    const directory = tmpdir();
    const file = join(directory, `redisware-range-${process.pid}.txt`);
    writeFileSync(file, 'abcdefghijklmnopqrstuvwxyz');
    const cache = newCache();
    const app = express();
    app.get('/file', cache.response(), (_req, res) => res.sendFile(file)); // max-age=0: stale at once
    await request(app).get('/file').set('Accept-Encoding', 'identity').expect(200);
    const part = await request(app).get('/file').set('Accept-Encoding', 'identity').set('Range', 'bytes=0-4');
    expect([part.status, part.headers['x-cache'], part.text]).toEqual([206, 'HIT', 'abcde']);
    expect(part.headers['content-range']).toBe('bytes 0-4/26');
  });
});

const servers: Server[] = [];
afterAll(() => {
  for (const server of servers) server.close();
});

/** Sends a request whose request-target is `target`, verbatim (absolute form included). */
function raw(port: number, method: string, target: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = { host: `127.0.0.1:${port}` };
    const req = httpRequest({ host: '127.0.0.1', port, method, path: target, headers }, (res) => {
      let body = '';
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** An app-wide cache in front of one post, listening on a port of its own. */
async function postApp(options: Parameters<typeof createCache>[0] = {}) {
  const cache = newCache(options);
  let title = 'old';
  const app = stackApp();
  app.use(cache.response({ ttl: '1h' }));
  app.get('/posts/1', (_req, res) => void res.send(`title ${title}`));
  app.put('/posts/1', (_req, res) => {
    title = 'new';
    res.status(204).end();
  });
  const server = app.listen(0, '127.0.0.1');
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  return { app, port: (server.address() as AddressInfo).port };
}

describe('an unsafe request in absolute form (RFC 9112 §3.2.2: servers must accept it)', () => {
  it('invalidates the entry its origin-form GET is served from', async () => {
    const { port } = await postApp();
    expect((await raw(port, 'GET', '/posts/1')).body).toBe('title old');
    expect((await raw(port, 'PUT', `http://127.0.0.1:${port}/posts/1`)).status).toBe(204);
    expect((await raw(port, 'GET', '/posts/1')).body).toBe('title new');
  });

  it('never reports the credentials of its target', async () => {
    const events: RediswareEvent[] = [];
    const { port } = await postApp({ onEvent: (event) => void events.push(event) });
    expect((await raw(port, 'PUT', `http://admin:hunter2@127.0.0.1:${port}/posts/1`)).status).toBe(204);
    expect(events.some((event) => event.type === 'cache.invalidated')).toBe(true);
    expect(JSON.stringify(events)).not.toContain('hunter2');
  });
});

describe('under memory pressure', () => {
  it('a PUT invalidates its own entry even once Redis evicted the tag set that listed it (allkeys-lru)', async () => {
    const { admin, client } = await privateRedisWithAdmin();
    const { app } = await postApp({ redis: client() });
    expect((await request(app).get('/posts/1')).text).toBe('title old');
    // The tag set is gone, as allkeys-lru evicts it first (a HIT touches the entry, never its tag set).
    for (const key of await admin.keys('*:t:*')) await admin.del(key);
    expect((await request(app).get('/posts/1')).headers['x-cache']).toBe('HIT');
    expect((await request(app).put('/posts/1')).status).toBe(204);
    expect((await request(app).get('/posts/1')).text).toBe('title new');
  });
});

describe('with a client whose keyPrefix begins the cache prefix', () => {
  it('a PUT deletes its own entry directly when the URL’s tag set is gone (evicted)', async () => {
    const { server, admin } = await privateRedisWithAdmin();
    const prefixed = new Redis(server.url, { keyPrefix: 'cache:' });
    try {
      const cache = createCache({ redis: prefixed, logger: silentLogger }); // the default prefix, 'cache'
      let version = 1;
      const app = express();
      app.use(cache.response({ ttl: '5m' }));
      app.get('/item', (_req, res) => void res.send(`v${version}`));
      app.put('/item', (_req, res) => void res.send('updated'));
      expect((await request(app).get('/item')).headers['x-cache']).toBe('MISS');
      expect((await request(app).get('/item')).headers['x-cache']).toBe('HIT');
      for (const key of await admin.keys('*:t:*')) await admin.del(key); // evicted
      version = 2;
      expect((await request(app).put('/item')).status).toBe(200);
      expect((await request(app).get('/item')).text).toBe('v2');
    } finally {
      prefixed.disconnect();
    }
  });
});
