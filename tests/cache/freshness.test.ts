// The tests of this file run concurrently: most wait a second for a max-age to pass, and none shares state.
// How long a stored response is served without its handler: at most `ttl`, never longer than the response itself
// says (s-maxage, max-age, Expires, less its Age); and a stale one with a validator is revalidated with the handler.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createCache } from '../../lib/index.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('cache-freshness');
const newCache = () => createCache({ redis: redis.client(), prefix: uniquePrefix('fresh'), logger: silentLogger });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A route answering with `headers`; `runs` counts the handler's runs, `conditional` those asked conditionally. */
function appWith(headers: Record<string, string>, options: { etag?: boolean; staleWhileRevalidate?: string } = {}) {
  const counts = { runs: 0, conditional: 0 };
  const app = express();
  app.set('etag', options.etag ?? false);
  const cache = newCache();
  app.get(
    '/doc',
    cache.response({ ttl: '1h', staleWhileRevalidate: options.staleWhileRevalidate ?? 0 }),
    (req, res) => {
      counts.runs++;
      if (req.headers['if-none-match'] !== undefined) counts.conditional++;
      res.set(headers).json({ document: 'the same every time' });
    },
  );
  return { app, counts };
}

describe.concurrent("the response's own freshness", () => {
  it('a max-age shorter than ttl: fresh for that long, then produced again', async () => {
    const { app, counts } = appWith({ 'Cache-Control': 'public, max-age=1' });
    await request(app).get('/doc').expect(200);
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('HIT');
    await sleep(1_100);
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('MISS');
    expect(counts.runs).toBe(2);
  });

  it('reads every Cache-Control header the handler set, not only the first', async () => {
    const counts = { runs: 0 };
    const app = express();
    app.get('/doc', newCache().response({ ttl: '1h' }), (_req, res) => {
      counts.runs++;
      res.setHeader('Cache-Control', ['public', 'max-age=1']);
      res.json({ document: 'listed' });
    });
    await request(app).get('/doc').expect(200);
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('HIT');
    await sleep(1_100);
    await request(app).get('/doc').expect(200); // stale after its max-age: the handler is asked again
    expect(counts.runs).toBe(2);
  });

  it('s-maxage is the lifetime for the cache, over max-age (which is for browsers)', async () => {
    const { app, counts } = appWith({ 'Cache-Control': 'public, max-age=0, s-maxage=60' });
    await request(app).get('/doc').expect(200);
    const hit = await request(app).get('/doc');
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(hit.headers['cache-control']).toBe('public, max-age=0, s-maxage=60');
    expect(counts.runs).toBe(1);
  });

  it.each([
    ['an Age past its max-age', { 'Cache-Control': 'max-age=3600', Age: '7200' }],
    ['an Age past its max-age, listed first', { 'Cache-Control': 'max-age=3600', Age: '7200, 0' }],
    ['an Age beyond 2^31 seconds', { 'Cache-Control': 'max-age=3600', Age: '99999999999999999999' }],
    ['an Expires in the past', { Expires: 'Thu, 01 Jan 1970 00:00:00 GMT' }],
    ['an invalid Expires (already expired)', { Expires: '0' }],
  ])('a response already stale as it comes (%s) is never served from the cache', async (_name, headers) => {
    const { app, counts } = appWith(headers);
    await request(app).get('/doc').expect(200);
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('MISS');
    expect(counts.runs).toBe(2);
  });

  it('a malformed Age is ignored', async () => {
    const { app, counts } = appWith({ 'Cache-Control': 'max-age=3600', Age: '-7200' });
    await request(app).get('/doc').expect(200);
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('HIT');
    expect(counts.runs).toBe(1);
  });
});

describe.concurrent('revalidation of a stale entry', () => {
  it("asks the handler with the entry's ETag: its 304 serves the stored body, and the entry is fresh again", async () => {
    const { app, counts } = appWith({ 'Cache-Control': 'max-age=1' }, { etag: true });
    const first = await request(app).get('/doc').expect(200);
    await sleep(1_100);
    const revalidated = await request(app).get('/doc');
    expect(revalidated.status).toBe(200);
    expect(revalidated.body).toEqual(first.body);
    expect(revalidated.headers['x-cache']).toBe('HIT');
    expect(revalidated.headers.etag).toBe(first.headers.etag);
    expect(counts).toEqual({ runs: 2, conditional: 1 });
    // Freshened: the next request does not reach the handler.
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('HIT');
    expect(counts.runs).toBe(2);
  });

  it('asks with If-Modified-Since alone when the handler gave only a Last-Modified', async () => {
    const lastModified = new Date(Date.now() - 60_000).toUTCString();
    const counts = { runs: 0, byDate: 0, byTag: 0 };
    const app = express();
    app.set('etag', false);
    app.get('/doc', newCache().response({ ttl: '1h' }), (req, res) => {
      counts.runs++;
      if (req.headers['if-modified-since'] !== undefined) counts.byDate++;
      if (req.headers['if-none-match'] !== undefined) counts.byTag++;
      res.set({ 'Cache-Control': 'max-age=1', 'Last-Modified': lastModified });
      if (req.fresh) return void res.status(304).end();
      res.json({ document: 'dated' });
    });
    await request(app).get('/doc').expect(200);
    await sleep(1_100);
    const revalidated = await request(app).get('/doc');
    expect([revalidated.status, revalidated.headers['x-cache'], revalidated.body]).toEqual([
      200,
      'HIT',
      { document: 'dated' },
    ]);
    expect(counts).toEqual({ runs: 2, byDate: 1, byTag: 0 });
  });

  it('a revalidated entry is as old as the 304 says (none: just validated), so it is fresh again', async () => {
    // Stored with an Age already past its max-age (kept only because it has a validator); the 304 has none.
    const counts = { runs: 0, conditional: 0 };
    const app = express();
    app.get('/doc', newCache().response({ ttl: '1h' }), (req, res) => {
      counts.runs++;
      if (req.headers['if-none-match'] !== undefined) counts.conditional++;
      else res.set('Age', '100');
      res.set('Cache-Control', 'max-age=60').json({ document: 'relayed' });
    });
    await request(app).get('/doc').expect(200);
    // (A request arriving while the first is still being stored would share that response instead.)
    await sleep(200);
    const revalidated = await request(app).get('/doc');
    expect([revalidated.headers['x-cache'], revalidated.headers.age]).toEqual(['HIT', '0']);
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('HIT');
    expect(counts).toEqual({ runs: 2, conditional: 1 });
  });

  it('keeps the headers the handler removed removed on a revalidated response', async () => {
    const app = express();
    app.use((_req, res, next) => {
      res.setHeader('X-Outer', 'set in front');
      next();
    });
    app.get('/doc', newCache().response({ ttl: '1h' }), (req, res) => {
      if (req.headers['if-none-match'] === undefined) res.removeHeader('X-Outer');
      res.set('Cache-Control', 'max-age=1').json({ document: 'the same' });
    });
    expect((await request(app).get('/doc')).headers['x-outer']).toBeUndefined();
    await sleep(1_100);
    const revalidated = await request(app).get('/doc');
    expect(revalidated.headers['x-cache']).toBe('HIT');
    expect(revalidated.headers['x-outer']).toBeUndefined();
  });

  it("answers 304 to a client whose own validator matches the revalidated entry's", async () => {
    const { app } = appWith({ 'Cache-Control': 'max-age=1' }, { etag: true });
    const first = await request(app).get('/doc').expect(200);
    await sleep(1_100);
    const notModified = await request(app).get('/doc').set('If-None-Match', first.headers.etag);
    expect(notModified.status).toBe(304);
    expect(notModified.text ?? '').toBe('');
    expect(notModified.headers['content-length']).toBeUndefined();
  });

  it('stores what the handler sends instead of a 304: the new response', async () => {
    let version = 1;
    const app = express();
    app.get('/doc', newCache().response({ ttl: '1h' }), (_req, res) => {
      res.set('Cache-Control', 'max-age=1').json({ version });
    });
    await request(app).get('/doc').expect(200);
    version = 2;
    await sleep(1_100);
    const changed = await request(app).get('/doc');
    expect([changed.headers['x-cache'], changed.body]).toEqual(['MISS', { version: 2 }]);
    expect((await request(app).get('/doc')).body).toEqual({ version: 2 });
  });

  it("res.sendFile's default (max-age=0) is revalidated on every request, its body served from the cache", async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'redisware-fresh-')), 'page.html');
    writeFileSync(file, '<p>static page</p>');
    const counts = { runs: 0, conditional: 0 };
    const app = express();
    app.get('/page', newCache().response({ ttl: '1h' }), (req, res) => {
      counts.runs++;
      if (req.headers['if-none-match'] !== undefined) counts.conditional++;
      res.sendFile(file);
    });
    await request(app).get('/page').expect(200);
    for (let i = 0; i < 3; i++) {
      const page = await request(app).get('/page');
      expect([page.status, page.headers['x-cache'], page.text]).toEqual([200, 'HIT', '<p>static page</p>']);
      expect(page.headers['content-type']).toMatch(/^text\/html/);
    }
    // The file was sent in full once; after that the handler was only asked whether it changed (a request that
    // arrives while the previous revalidation is still being stored shares its outcome instead).
    expect(counts.runs - counts.conditional).toBe(1);
    expect(counts.conditional).toBeGreaterThanOrEqual(1);
  });

  it('a background refresh (staleWhileRevalidate) revalidates too', async ({ expect }) => {
    const { app, counts } = appWith({ 'Cache-Control': 'max-age=1' }, { etag: true, staleWhileRevalidate: '1m' });
    await request(app).get('/doc').expect(200);
    await sleep(1_100);
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('STALE');
    await expect.poll(() => counts.conditional, { timeout: 3_000 }).toBe(1);
    await expect.poll(async () => (await request(app).get('/doc')).headers['x-cache'], { timeout: 3_000 }).toBe('HIT');
    expect(counts.runs).toBe(2);
  });
});
