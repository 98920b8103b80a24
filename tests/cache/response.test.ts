import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheKeys } from '../../lib/cache/keys.js';
import { type Cache, createCache } from '../../lib/index.js';
import { recordingLogger, silentLogger, useTestRedis, watchCommands } from '../support/redis.js';

const redis = useTestRedis('cache');
let counter = 0;
const newCache = (): Cache =>
  createCache({ redis: redis.client(), prefix: `${redis.prefix}:${++counter}`, logger: silentLogger });

/** An app whose routes count how often their handler ran. */
function cachedApp(cache: Cache, options: Parameters<Cache['response']>[0] = {}) {
  const calls = { count: 0 };
  const app: Express = express();
  const cached = cache.response(options);
  app.use(express.json());
  app.all('/items', cached, (req, res) => {
    calls.count++;
    if (req.headers['x-fail']) return void res.status(500).json({ changed: false });
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.json({ changed: true });
    res.json({ items: [1, 2, 3], call: calls.count });
  });
  app.get('/status/:code', cached, (req, res) => {
    calls.count++;
    res.status(Number(req.params.code)).send(`status ${req.params.code}`);
  });
  app.get('/header/:name/:value', cached, (req, res) => {
    calls.count++;
    res.setHeader(String(req.params.name), String(req.params.value));
    res.send(`call ${calls.count}`);
  });
  app.get('/binary', cached, (_req, res) => {
    calls.count++;
    res.type('application/octet-stream').send(binary);
  });
  app.get('/stream', cached, (_req, res) => {
    calls.count++;
    res.type('text/plain');
    res.write('part one, ');
    res.write(Buffer.from('part two, '));
    res.end('end');
  });
  app.get('/piped', cached, (_req, res) => {
    calls.count++;
    res.type('application/octet-stream');
    Readable.from([binary.subarray(0, 1000), binary.subarray(1000)]).pipe(res);
  });
  app.get('/repeated', cached, (_req, res) => {
    calls.count++;
    res.append('Link', '</a>; rel=preload');
    res.append('Link', '</b>; rel=preload');
    res.setHeader('X-Custom', 'kept');
    res.setHeader('Age', '10');
    res.send('repeated');
  });
  app.get('/big', cached, (_req, res) => {
    calls.count++;
    res.send('x'.repeat(2_000));
  });
  app.get('/throws', cached, () => {
    calls.count++;
    throw new Error('handler failed');
  });
  app.get('/slow', cached, async (_req, res) => {
    calls.count++;
    await new Promise((resolve) => setTimeout(resolve, 150));
    res.json({ slow: true, call: calls.count });
  });
  app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).send(error.message);
  });
  return { app, calls };
}

const binary = randomBytes(64 * 1024);

describe('cacheResponse(): misses, hits and keys', () => {
  it('runs the handler on a MISS, then serves the stored response as a HIT with Age', async () => {
    const { app, calls } = cachedApp(newCache());
    const miss = await request(app).get('/items').expect(200);
    expect(miss.headers['x-cache']).toBe('MISS');
    const hit = await request(app).get('/items').expect(200);
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(hit.body).toEqual(miss.body);
    expect(hit.headers['content-type']).toBe(miss.headers['content-type']);
    expect(hit.headers.age).toBe('0');
    expect(calls.count).toBe(1);
  });

  it('shares one entry between GET and HEAD, and canonicalises the query order', async () => {
    const { app, calls } = cachedApp(newCache());
    await request(app).get('/items?b=2&a=1').expect(200);
    const head = await request(app).head('/items?a=1&b=2').expect(200);
    expect(head.headers['x-cache']).toBe('HIT');
    expect(head.text ?? '').toBe('');
    expect((await request(app).get('/items?a=1&b=2')).headers['x-cache']).toBe('HIT');
    expect((await request(app).get('/items?a=1&b=3')).headers['x-cache']).toBe('MISS');
    expect(calls.count).toBe(2);
  });

  it('passes other methods straight to the handler, and a successful one invalidates the URL', async () => {
    const { app, calls } = cachedApp(newCache());
    await request(app).get('/items');
    expect((await request(app).get('/items')).headers['x-cache']).toBe('HIT');
    const post = await request(app).post('/items').send({ a: 1 }).expect(200);
    expect(post.headers['x-cache']).toBe('BYPASS');
    // Invalidated before the POST's response was sent: the very next GET misses.
    expect((await request(app).get('/items')).headers['x-cache']).toBe('MISS');
    expect(calls.count).toBe(3);
    // A failed write does not invalidate.
    await request(app).get('/items');
    await request(app).delete('/items').set('X-Fail', '1').expect(500);
    expect((await request(app).get('/items')).headers['x-cache']).toBe('HIT');
  });

  it.each(['PURGE', 'M-SEARCH', 'LOCK'])(
    'a successful request of a method not known to be safe (%s) invalidates the URL too',
    async (method) => {
      const { app } = cachedApp(newCache());
      await request(app).get('/items');
      expect((await request(app).get('/items')).headers['x-cache']).toBe('HIT');
      await request(app)[method === 'M-SEARCH' ? 'm-search' : (method.toLowerCase() as 'purge')]('/items').expect(200);
      expect((await request(app).get('/items')).headers['x-cache']).toBe('MISS');
    },
  );

  it.each(['OPTIONS', 'PROPFIND'])('a request of a safe method (%s) leaves the stored entry', async (method) => {
    const { app } = cachedApp(newCache());
    await request(app).get('/items');
    await request(app)[method.toLowerCase() as 'options']('/items').expect(200);
    expect((await request(app).get('/items')).headers['x-cache']).toBe('HIT');
  });

  it('stores only the configured statuses (200 by default)', async () => {
    const { app, calls } = cachedApp(newCache());
    await request(app).get('/status/404').expect(404);
    expect((await request(app).get('/status/404')).headers['x-cache']).toBe('MISS');
    expect(calls.count).toBe(2);
    const withNotFound = cachedApp(newCache(), { statuses: [200, 404] });
    await request(withNotFound.app).get('/status/404');
    expect((await request(withNotFound.app).get('/status/404')).headers['x-cache']).toBe('HIT');
  });

  it.each([
    ['Set-Cookie', 'session=abc'],
    ['Cache-Control', 'no-store'],
    ['Cache-Control', 'no-cache'],
    ['Cache-Control', 'private, max-age=60'],
    ['Vary', '*'],
  ])('never stores a response with %s: %s', async (name, value) => {
    const { app, calls } = cachedApp(newCache());
    await request(app).get(`/header/${name}/${encodeURIComponent(value)}`);
    const second = await request(app).get(`/header/${name}/${encodeURIComponent(value)}`);
    // A cookie makes the response its client's own: the cache steps aside (BYPASS); the others are misses.
    expect(second.headers['x-cache']).toBe(name === 'Set-Cookie' ? 'BYPASS' : 'MISS');
    expect(calls.count).toBe(2);
  });

  it('keeps the app’s own Cache-Control when it allows storing', async () => {
    const { app } = cachedApp(newCache());
    await request(app).get('/header/Cache-Control/public%2C%20max-age%3D60');
    const hit = await request(app).get('/header/Cache-Control/public%2C%20max-age%3D60');
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(hit.headers['cache-control']).toBe('public, max-age=60');
  });

  it('bypasses requests with Authorization unless allowAuthorized', async () => {
    const { app, calls } = cachedApp(newCache());
    await request(app).get('/items').set('Authorization', 'Bearer a').expect(200);
    const second = await request(app).get('/items').set('Authorization', 'Bearer b');
    expect(second.headers['x-cache']).toBe('BYPASS');
    expect(calls.count).toBe(2);
    const allowed = cachedApp(newCache(), { allowAuthorized: true });
    await request(allowed.app).get('/items').set('Authorization', 'Bearer a');
    expect((await request(allowed.app).get('/items').set('Authorization', 'Bearer a')).headers['x-cache']).toBe('HIT');
  });

  it('passes bodies over maxBytes through uncached', async () => {
    const { app, calls } = cachedApp(newCache(), { maxBytes: 1_000 });
    expect((await request(app).get('/big')).text).toHaveLength(2_000);
    expect((await request(app).get('/big')).headers['x-cache']).toBe('MISS');
    expect(calls.count).toBe(2);
  });

  it('adds the declared `vary` request headers to the key', async () => {
    const { app, calls } = cachedApp(newCache(), { vary: ['accept-language'] });
    await request(app).get('/items').set('Accept-Language', 'en');
    expect((await request(app).get('/items').set('Accept-Language', 'fr')).headers['x-cache']).toBe('MISS');
    expect((await request(app).get('/items').set('Accept-Language', 'en')).headers['x-cache']).toBe('HIT');
    expect(calls.count).toBe(2);
    // An unsafe method on the URL invalidates every variant.
    await request(app).delete('/items').expect(200);
    await expect
      .poll(async () => (await request(app).get('/items').set('Accept-Language', 'fr')).headers['x-cache'])
      .toBe('MISS');
  });

  it('honours a response Vary header: a request with another value misses', async () => {
    const { app } = cachedApp(newCache());
    await request(app).get('/header/Vary/Accept-Encoding').set('Accept-Encoding', 'gzip');
    expect(
      (await request(app).get('/header/Vary/Accept-Encoding').set('Accept-Encoding', 'br')).headers['x-cache'],
    ).toBe('MISS');
    expect(
      (await request(app).get('/header/Vary/Accept-Encoding').set('Accept-Encoding', 'br')).headers['x-cache'],
    ).toBe('HIT');
  });
  it('stores the response of a concurrent miss for another Vary variant than the one being produced', async () => {
    const app = express();
    let runs = 0;
    app.get('/negotiated', newCache().response(), async (req, res) => {
      runs++;
      await new Promise((resolve) => setTimeout(resolve, 50));
      res.setHeader('Vary', 'Accept-Language');
      res.send(`in ${req.headers['accept-language']}`);
    });
    const [en, fr] = await Promise.all([
      request(app).get('/negotiated').set('Accept-Language', 'en'),
      request(app).get('/negotiated').set('Accept-Language', 'fr'),
    ]);
    expect([en.text, fr.text]).toEqual(['in en', 'in fr']);
    const again = await request(app).get('/negotiated').set('Accept-Language', 'fr');
    expect([again.headers['x-cache'], again.text]).toEqual(['HIT', 'in fr']);
    expect(runs).toBe(2);
  });
});

describe('cacheResponse(): what is stored', () => {
  it('round-trips binary bodies exactly, from res.send, res.write/res.end and a piped stream', async () => {
    const { app } = cachedApp(newCache());
    for (const path of ['/binary', '/piped']) {
      await request(app).get(path).buffer(true);
      const hit = await request(app)
        .get(path)
        .buffer(true)
        .parse((res, done) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => done(null, Buffer.concat(chunks)));
        });
      expect(hit.headers['x-cache'], path).toBe('HIT');
      expect(Buffer.compare(hit.body as Buffer, binary), path).toBe(0);
    }
    await request(app).get('/stream');
    const streamed = await request(app).get('/stream');
    expect(streamed.headers['x-cache']).toBe('HIT');
    expect(streamed.text).toBe('part one, part two, end');
  });

  it('replays stored headers verbatim (repeats included) and adds its Age to the stored Age', async () => {
    const { app } = cachedApp(newCache());
    await request(app).get('/repeated');
    const hit = await request(app).get('/repeated');
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(hit.headers.link).toBe('</a>; rel=preload, </b>; rel=preload');
    expect(hit.headers['x-custom']).toBe('kept');
    expect(Number(hit.headers.age)).toBeGreaterThanOrEqual(10);
  });

  it('answers If-None-Match (weak comparison, lists, *) with 304 and no body', async () => {
    const { app } = cachedApp(newCache());
    const miss = await request(app).get('/items');
    const etag = miss.headers.etag as string;
    expect(etag).toBeDefined();
    for (const header of [etag, etag.replace(/^W\//, ''), `"nope", ${etag}`, '*']) {
      const conditional = await request(app).get('/items').set('If-None-Match', header);
      expect(conditional.status, header).toBe(304);
      expect(conditional.text ?? '').toBe('');
    }
    expect((await request(app).get('/items').set('If-None-Match', '"other"')).status).toBe(200);
  });

  it('never stores a response whose handler threw, or whose client aborted mid-response', async () => {
    const cache = newCache();
    const { app, calls } = cachedApp(cache);
    await request(app).get('/throws').expect(500);
    await request(app).get('/throws').expect(500);
    expect(calls.count).toBe(2);

    let aborted = 0;
    const abortApp = express();
    abortApp.get('/partial', cache.response(), (req, res) => {
      res.write('first half…');
      req.socket.destroy();
      aborted++;
    });
    await request(abortApp)
      .get('/partial')
      .catch(() => undefined);
    await request(abortApp)
      .get('/partial')
      .catch(() => undefined);
    expect(aborted).toBe(2);
  });

  it('costs exactly one Redis command per HIT', async () => {
    const client = redis.newClient();
    const watch = await watchCommands(client);
    const { app } = cachedApp(createCache({ redis: client, prefix: `${redis.prefix}:cost` }));
    await request(app).get('/items');
    // The MISS releases its stampede lock just after responding; let that finish first.
    await expect.poll(async () => (await client.keys(`lock:${redis.prefix}:cost:*`)).length).toBe(0);
    await watch.settle();
    watch.reset();
    for (let i = 0; i < 5; i++) expect((await request(app).get('/items')).headers['x-cache']).toBe('HIT');
    await watch.settle();
    // One EVALSHA each: it confirms the copy this process holds, so the body is not sent again.
    expect(watch.sent.map((args) => args[0].toLowerCase())).toEqual(Array(5).fill('evalsha'));
    watch.stop();
  });

  it('stores an entry as its body plus a small fixed overhead (no JSON-encoded Buffer blow-up)', async () => {
    const prefix = `${redis.prefix}:memory`;
    const cache = createCache({ redis: redis.client(), prefix });
    const body = randomBytes(75 * 1024).toString('base64'); // ~100 KB of JSON
    const app = express();
    app.get('/json', cache.response(), (_req, res) => {
      res.json({ body });
    });
    await request(app).get('/json');
    const [entryKey] = (await redis.client().keys(`${prefix}:*`)).filter((k) => k.includes('GET'));
    const size = JSON.stringify({ body }).length;
    expect(await redis.client().strlen(entryKey)).toBeLessThanOrEqual(size + 1_024);
    // What Redis allocates on top is mostly jemalloc's size-class rounding (this body lands in the 112 KiB class).
    expect(Number(await redis.client().memory('USAGE', entryKey))).toBeLessThanOrEqual(size * 1.1 + 4_096);
  });
});

describe('cacheResponse(): process-local copies', () => {
  it('never serves a local copy that another process replaced or invalidated', async () => {
    const prefix = `${redis.prefix}:local`;
    const body = { value: 'first' };
    const makeApp = (cache: Cache) => {
      const app = express();
      app.get('/doc', cache.response({ ttl: '1m' }), (_req, res) => {
        res.json(body);
      });
      return app;
    };
    const first = makeApp(createCache({ redis: redis.newClient(), prefix }));
    const secondCache = createCache({ redis: redis.newClient(), prefix });
    const second = makeApp(secondCache);
    await request(first).get('/doc');
    expect((await request(first).get('/doc')).body).toEqual({ value: 'first' });
    // The other process invalidates and stores a new version.
    await secondCache.delete('/doc');
    body.value = 'second';
    expect((await request(second).get('/doc')).headers['x-cache']).toBe('MISS');
    const seen = await request(first).get('/doc');
    expect(seen.headers['x-cache']).toBe('HIT');
    expect(seen.body).toEqual({ value: 'second' });
    // Deleted everywhere: the local copy is not used either.
    await secondCache.delete('/doc');
    expect((await request(first).get('/doc')).headers['x-cache']).toBe('MISS');
  });

  it('can be turned off with localBytes: 0', async () => {
    const cache = createCache({ redis: redis.client(), prefix: `${redis.prefix}:nolocal`, localBytes: 0 });
    const { app } = cachedApp(cache);
    await request(app).get('/binary');
    const hit = await request(app).get('/binary');
    expect(hit.headers['x-cache']).toBe('HIT');
  });
});

describe('cacheResponse(): stampedes and stale entries', () => {
  it('runs the handler once for concurrent misses in one process; the others get its response', async () => {
    const { app, calls } = cachedApp(newCache());
    const responses = await Promise.all(Array.from({ length: 15 }, () => request(app).get('/slow')));
    expect(calls.count).toBe(1);
    for (const response of responses) expect(response.body).toEqual({ slow: true, call: 1 });
  });

  it('runs the handler once for concurrent misses across processes sharing Redis', async () => {
    const prefix = `${redis.prefix}:stampede`;
    const first = cachedApp(createCache({ redis: redis.newClient(), prefix }));
    const second = cachedApp(createCache({ redis: redis.newClient(), prefix }));
    const responses = await Promise.all(
      Array.from({ length: 12 }, (_, i) => request(i % 2 ? first.app : second.app).get('/slow')),
    );
    expect(first.calls.count + second.calls.count).toBe(1);
    for (const response of responses) expect(response.body.slow).toBe(true);
  });

  it('waits for a held lock only as long as lock.wait, then runs the handler without storing', async () => {
    const prefix = `${redis.prefix}:held`;
    const cache = createCache({ redis: redis.client(), prefix });
    const { app, calls } = cachedApp(cache, { lock: { wait: '150ms', ttl: '10s' } });
    // The key of /items on this app, and its lock.
    const keys = cacheKeys(prefix);
    const target = { scheme: 'http', host: '127.0.0.1', port: '', path: '/items', query: '' };
    const entryKey = keys.response({ request: { target }, audience: { kind: 'shared' }, vary: [] });
    await redis.client().set(keys.lock(entryKey), 'someone-else', 'PX', 5_000);
    const response = await request(app).get('/items').expect(200);
    expect(response.headers['x-cache']).toBe('MISS');
    expect(calls.count).toBe(1);
    expect(await redis.client().exists(entryKey)).toBe(0);
    // Once the lock is gone, the next MISS stores it as usual.
    await redis.client().del(keys.lock(entryKey));
    await request(app).get('/items').expect(200);
    expect(await redis.client().exists(entryKey)).toBe(1);
  });

  it('staleWhileRevalidate: answers everyone at once from the stale entry, and refreshes it once, in the background', async () => {
    const { app, calls } = cachedApp(newCache(), { ttl: '200ms', staleWhileRevalidate: '1m' });
    const first = await request(app).get('/slow');
    await new Promise((resolve) => setTimeout(resolve, 250));
    const responses = await Promise.all(Array.from({ length: 6 }, () => request(app).get('/slow')));
    expect(responses.map((r) => r.headers['x-cache'])).toEqual(Array(6).fill('STALE'));
    expect(responses.map((r) => r.body)).toEqual(Array(6).fill(first.body));
    // The refresh ran the handler once more (it takes 150 ms), with no client waiting for it.
    await expect.poll(() => calls.count, { timeout: 2_000 }).toBe(2);
    await expect.poll(async () => (await request(app).get('/slow')).headers['x-cache'], { timeout: 2_000 }).toBe('HIT');
    expect((await request(app).get('/slow')).body).toEqual({ slow: true, call: 2 });
    expect(calls.count).toBe(2);
  });

  it('staleIfError: when the handler fails, serves the last good entry', async () => {
    const cache = newCache();
    let fail = false;
    const app = express();
    app.get('/flaky', cache.response({ ttl: '100ms', staleIfError: '1m' }), (_req, res) => {
      if (fail) throw new Error('database down');
      res.json({ good: true });
    });
    await request(app).get('/flaky').expect(200);
    fail = true;
    await new Promise((resolve) => setTimeout(resolve, 150));
    const stale = await request(app).get('/flaky').expect(200);
    expect(stale.headers['x-cache']).toBe('STALE');
    expect(stale.body).toEqual({ good: true });
  });
});

describe('invalidation', () => {
  let cache: Cache;
  beforeAll(() => {
    cache = createCache({ redis: redis.client(), prefix: `${redis.prefix}:tags` });
  });
  afterAll(() => undefined);

  it('deletes entries by key and by tag; tag sets expire with their newest entry', async () => {
    const app = express();
    let calls = 0;
    app.get(
      '/users/:id',
      cache.response({ ttl: '1m', tags: (req) => ['users', `user:${req.params.id}`] }),
      (req, res) => {
        calls++;
        res.json({ id: req.params.id });
      },
    );
    await request(app).get('/users/1');
    await request(app).get('/users/2');
    expect((await request(app).get('/users/1')).headers['x-cache']).toBe('HIT');
    const tagTtl = await redis.client().pttl(cacheKeys(`${redis.prefix}:tags`).tagSet({ kind: 'tag', tag: 'users' }));
    expect(tagTtl).toBeGreaterThan(0);
    expect(tagTtl).toBeLessThanOrEqual(60_000);

    expect(await cache.invalidateTags('user:1')).toBe(1);
    expect((await request(app).get('/users/1')).headers['x-cache']).toBe('MISS');
    expect((await request(app).get('/users/2')).headers['x-cache']).toBe('HIT');
    expect(await cache.invalidateTags('users')).toBe(2);
    expect((await request(app).get('/users/2')).headers['x-cache']).toBe('MISS');

    await cache.delete('GET /users/2');
    expect((await request(app).get('/users/2')).headers['x-cache']).toBe('MISS');
    // A URL path works too.
    await cache.delete('/users/2');
    expect((await request(app).get('/users/2')).headers['x-cache']).toBe('MISS');
    expect(calls).toBe(6);
  });
});

describe('options', () => {
  it('delivers but does not store a response whose tags function throws or returns bad tags, and says why', async () => {
    const logger = recordingLogger();
    const cache = createCache({ redis: redis.client(), prefix: `${redis.prefix}:${++counter}`, logger });
    const app = express();
    app.get(
      '/throws',
      cache.response({
        tags: () => {
          throw new Error('tag lookup failed');
        },
      }),
      (_req, res) => {
        res.send('one');
      },
    );
    app.get('/bad', cache.response({ tags: () => ['ok', 5, ''] as never }), (_req, res) => {
      res.send('two');
    });
    for (const [path, body] of [
      ['/throws', 'one'],
      ['/bad', 'two'],
    ]) {
      await request(app).get(path).expect(200, body);
      expect((await request(app).get(path).expect(200, body)).headers['x-cache']).toBe('MISS');
    }
    expect(await redis.client().keys(`${redis.prefix}:${counter}:*`)).toEqual([]);
    expect(logger.errors.some((e) => e.includes('tag lookup failed'))).toBe(true);
    expect(logger.errors.some((e) => e.includes("the 'tags' function returned"))).toBe(true);
  });

  it('rejects invalid and unknown options by name', () => {
    const cache = newCache();
    expect(() => cache.response({ ttl: 'long' })).toThrow(/cache.response: option "ttl" is invalid: "long"/);
    expect(() => cache.response({ statuses: [] })).toThrow(/option "statuses"/);
    expect(() => cache.response({ maxBytes: -1 })).toThrow(/option "maxBytes" is invalid: -1/);
    expect(() => cache.response({ lock: { wait: 'x' } })).toThrow(/option "lock" is invalid/);
    expect(() => cache.response({ expire: 5 } as never)).toThrow(/unknown option "expire"/);
    expect(() => createCache({ prefix: '' })).toThrow(/createCache: option "prefix"/);
  });
});
