// The response cache as a whole app meets it: coalescing that never stalls, variants, bounded memory, streaming,
// and an app-wide mount whose unsafe requests invalidate what they change.
import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { cacheKeys } from '../../lib/cache/keys.js';
import { LocalCopies } from '../../lib/cache/local-copies.js';
import { createCache } from '../../lib/index.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('cache-behaviour');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('coalescing never stalls', () => {
  it('across processes, followers of a leader whose response is not stored run at once, not after lock.wait', async () => {
    const prefix = uniquePrefix('stall');
    // Two "processes": two caches with connections of their own, on one Redis.
    const apps = [redis.newClient(), redis.newClient()].map((client) => {
      const cache = createCache({ redis: client, prefix, logger: silentLogger });
      const app = express();
      app.get('/missing', cache.response({ lock: { wait: '3s', ttl: '10s' } }), async (_req, res) => {
        await sleep(200);
        res.status(404).send('not here'); // not stored: statuses is [200]
      });
      return app;
    });
    await request(apps[1]).get('/missing'); // opens the second process's subscriber before the race
    const started = Date.now();
    const timed = (app: express.Express) =>
      request(app)
        .get('/missing')
        .then((r) => ({ status: r.status, ms: Date.now() - started }));
    const leader = timed(apps[0]);
    await sleep(30); // the leader holds the lock
    const follower = await timed(apps[1]);
    expect((await leader).status).toBe(404);
    expect(follower.status).toBe(404);
    // The follower ran its own handler (200 ms) once the leader's head said "not stored": about 430 ms, never 3 s.
    expect(follower.ms).toBeLessThan(1_000);
  });

  it('in one process, followers learn at the leader’s head that its response will not be stored', async () => {
    const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('stall-local'), logger: silentLogger });
    const app = express();
    const started: number[] = [];
    const ended: number[] = [];
    app.get('/private', cache.response(), async (_req, res) => {
      started.push(Date.now());
      res.setHeader('Cache-Control', 'private');
      res.write('first part, ');
      await sleep(300);
      res.end('the end');
      ended.push(Date.now());
    });
    const responses = await Promise.all(Array.from({ length: 3 }, () => request(app).get('/private')));
    expect(responses.map((r) => r.text)).toEqual(Array(3).fill('first part, the end'));
    // Every follower started its own handler while the leader's was still running.
    expect(started).toHaveLength(3);
    expect(Math.max(...started)).toBeLessThan(Math.min(...ended));
  });
});

describe('Vary', () => {
  it('keeps one entry per variant of a URL, and never stores Vary: *', async () => {
    const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('vary'), logger: silentLogger });
    const app = express();
    let runs = 0;
    app.get('/greeting', cache.response(), (req, res) => {
      runs++;
      res.vary('Accept-Language');
      res.send(req.headers['accept-language'] === 'fr' ? 'bonjour' : 'hello');
    });
    app.get('/anything', cache.response(), (_req, res) => {
      res.setHeader('Vary', '*');
      res.send('never the same');
    });
    for (const language of ['en', 'fr', 'en', 'fr', 'fr']) {
      const response = await request(app).get('/greeting').set('Accept-Language', language);
      expect(response.text).toBe(language === 'fr' ? 'bonjour' : 'hello');
    }
    expect(runs).toBe(2);
    await request(app).get('/anything');
    expect((await request(app).get('/anything')).headers['x-cache']).toBe('MISS');
  });

  it('keeps at most 16 variants of one URL, dropping the oldest', async () => {
    const prefix = uniquePrefix('vary-bound');
    const cache = createCache({ redis: redis.client(), prefix, logger: silentLogger });
    const app = express();
    app.get('/v', cache.response(), (req, res) => {
      res.vary('X-Variant');
      res.send(`variant ${req.headers['x-variant']}`);
    });
    for (let i = 0; i < 40; i++) await request(app).get('/v').set('X-Variant', String(i));
    const keys = await redis.client().keys(`${prefix}:*:v:*`);
    expect(keys.length).toBe(16);
    expect((await request(app).get('/v').set('X-Variant', '39')).headers['x-cache']).toBe('HIT');
    expect((await request(app).get('/v').set('X-Variant', '0')).headers['x-cache']).toBe('MISS');
  });
});

describe('bounded memory', () => {
  it('trims tag sets of expired entries, and invalidates in chunks without losing entries added meanwhile', async () => {
    const prefix = uniquePrefix('tags');
    const cache = createCache({ redis: redis.client(), prefix, logger: silentLogger });
    for (let i = 0; i < 5; i++) await cache.set(`short-${i}`, i, { ttl: 50, tags: ['busy'] });
    await sleep(80);
    await cache.set('long', 'kept', { ttl: '1m', tags: ['busy'] });
    // The expired members were trimmed by that store; the set lives as long as its newest member.
    const keys = cacheKeys(prefix);
    expect(await redis.client().zcard(keys.tagSet({ kind: 'tag', tag: 'busy' }))).toBe(1);
    for (let i = 0; i < 450; i++) await cache.set(`item-${i}`, i, { ttl: '1m', tags: ['many'] });
    const invalidating = cache.invalidateTags('many');
    await cache.set('late', 'added while invalidating', { ttl: '1m', tags: ['many'] });
    const deleted = await invalidating;
    expect(deleted).toBeGreaterThanOrEqual(450);
    // The late entry is deleted (it was seen) or still tagged (it was not): never an entry its tag cannot find.
    if (await cache.get('late'))
      expect(await redis.client().zscore(keys.tagSet({ kind: 'tag', tag: 'many' }), keys.value('late'))).not.toBeNull();
    expect(await cache.get('item-7')).toBeUndefined();
  });

  it('caps process-local copies by count and by bytes including their overhead, each holding its own memory', () => {
    const entry = (body: Buffer) => ({
      status: 200,
      headers: [['Content-Type', 'text/plain']] as [string, string][],
      body,
      storedAt: 0,
      freshUntil: 0,
      etag: '"x"',
      version: 'v'.repeat(16),
    });
    const none = new LocalCopies(0);
    none.set('empty', entry(Buffer.alloc(0)));
    expect(none.size).toEqual({ count: 0, bytes: 0 });

    const few = new LocalCopies(10 * 1024 * 1024, 3);
    for (let i = 0; i < 10; i++) few.set(`k${i}`, entry(Buffer.alloc(0)));
    expect(few.size.count).toBe(3);
    expect(few.get('k9')).toBeDefined();
    expect(few.get('k0')).toBeUndefined();

    const small = new LocalCopies(4_096);
    for (let i = 0; i < 20; i++) small.set(`k${i}`, entry(Buffer.alloc(100)));
    expect(small.size.bytes).toBeLessThanOrEqual(4_096);
    expect(small.size.count).toBeLessThan(20); // 100-byte bodies, but each copy costs more than its body

    const socketChunk = Buffer.alloc(64 * 1024);
    const view = socketChunk.subarray(100, 200);
    const copies = new LocalCopies(1024 * 1024);
    copies.set('view', entry(view));
    expect(copies.get('view')?.body.buffer).not.toBe(socketChunk.buffer);
  });
});

describe('streaming', () => {
  it('a text/event-stream response behind an app-wide cache streams as written and is not stored', async () => {
    const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('sse'), logger: silentLogger });
    const app = express();
    app.use(cache.response());
    app.get('/events', async (_req, res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      res.flushHeaders();
      res.write('data: one\n\n');
      await sleep(300);
      res.end('data: two\n\n');
    });
    const server = app.listen(0);
    try {
      const { port } = server.address() as { port: number };
      const started = Date.now();
      const response = await fetch(`http://127.0.0.1:${port}/events`);
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      const first = await reader.read();
      const firstAt = Date.now() - started;
      expect(Buffer.from(first.value ?? []).toString()).toContain('data: one');
      expect(firstAt).toBeLessThan(250); // long before the handler ends
      while (!(await reader.read()).done) {}
      const again = await fetch(`http://127.0.0.1:${port}/events`);
      expect(again.headers.get('x-cache')).toBe('MISS');
      await again.text();
    } finally {
      server.close();
    }
  });
});

describe('mounted app-wide', () => {
  it('a successful unsafe request invalidates its URL and the same-origin Location and Content-Location', async () => {
    const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('unsafe'), logger: silentLogger });
    const app = express();
    app.use(cache.response());
    let version = 1;
    app.get('/items', (_req, res) => void res.json({ list: version }));
    app.get('/items/:id', (req, res) => void res.json({ item: req.params.id, version }));
    app.post('/items', (_req, res) => {
      version++;
      res.location('/items/7').setHeader('Content-Location', 'http://other.example/items/8');
      res.status(201).json({ created: 7 });
    });
    for (const path of ['/items', '/items/7', '/items/8']) await request(app).get(path);
    for (const path of ['/items', '/items/7', '/items/8']) {
      expect((await request(app).get(path)).headers['x-cache'], path).toBe('HIT');
    }
    await request(app).post('/items').expect(201);
    expect((await request(app).get('/items')).body).toEqual({ list: 2 });
    expect((await request(app).get('/items/7')).headers['x-cache']).toBe('MISS');
    // Another origin's Content-Location is not this cache's to invalidate.
    expect((await request(app).get('/items/8')).headers['x-cache']).toBe('HIT');
  });
});
