// Invalidation wins every race with a fill, and says what it did without saying what the request held.
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createCache, type RediswareEvent } from '../../lib/index.js';
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
