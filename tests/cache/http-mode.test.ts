// `cache.response({ freshness: 'http' })` in an app: the response's own directives decide what is stored, for how
// long, what is revalidated and what may be served stale, as a shared cache (RFC 9111). The tests of this file run
// concurrently (several wait for a max-age to pass) and share nothing.
import compression from 'compression';
import cors from 'cors';
import express, { type RequestHandler } from 'express';
import helmet from 'helmet';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { type CacheResponseOptions, createCache } from '../../lib/index.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('cache-http-mode');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * An app whose `/doc` runs `handler` behind compression, CORS and helmet and `cache.response({ freshness: 'http',
 * ...options })`; `runs` counts the handler's runs and `asked` records the conditional headers it saw.
 */
function appWith(handler: RequestHandler, options: CacheResponseOptions = {}) {
  const counts = { runs: 0, asked: [] as Array<string | undefined> };
  const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('http-mode'), logger: silentLogger });
  const app = express();
  app.set('etag', false);
  app.use(compression(), cors(), helmet());
  app.get('/doc', cache.response({ freshness: 'http', ttl: '1h', ...options }), (req, res, next) => {
    counts.runs++;
    counts.asked.push((req.headers['if-none-match'] as string | undefined) ?? req.headers['if-modified-since']);
    handler(req, res, next);
  });
  return { app, counts, cache };
}

const answering =
  (headers: Record<string, string>, body: unknown = { document: 'the same every time' }): RequestHandler =>
  (_req, res) => {
    res.set(headers).json(body);
  };

describe.concurrent("freshness: 'http'", () => {
  it('does not reuse a response that states no freshness, as a ttl cache would', async () => {
    const { app, counts } = appWith(answering({}));
    await request(app).get('/doc').expect(200);
    const second = await request(app).get('/doc').expect(200);
    expect(second.headers['x-cache']).toBe('MISS');
    expect(counts.runs).toBe(2);
  });

  it('serves a response for its max-age, with its Age counted on, then asks the handler again', async () => {
    const { app, counts } = appWith(answering({ 'Cache-Control': 'max-age=2', Age: '1' }));
    await request(app).get('/doc').expect(200);
    const hit = await request(app).get('/doc').expect(200);
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(Number(hit.headers.age)).toBeGreaterThanOrEqual(1);
    expect(hit.body).toEqual({ document: 'the same every time' });
    await sleep(1_100); // its Age of 1 plus this uses up its max-age of 2
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('MISS');
    expect(counts.runs).toBe(2);
  });

  it('s-maxage is the lifetime for the cache, and CDN-Cache-Control over both', async () => {
    const shared = appWith(answering({ 'Cache-Control': 'max-age=0, s-maxage=600' }));
    await request(shared.app).get('/doc');
    expect((await request(shared.app).get('/doc')).headers['x-cache']).toBe('HIT');
    const targeted = appWith(answering({ 'Cache-Control': 'no-store', 'CDN-Cache-Control': 'max-age=600' }));
    await request(targeted.app).get('/doc');
    const hit = await request(targeted.app).get('/doc');
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(hit.headers['cache-control']).toBe('no-store'); // passed on as the handler sent it, for browsers
  });

  it('revalidates a no-cache response before every use: a 304 from the handler serves the stored body', async () => {
    const { app, counts } = appWith((req, res) => {
      res.set({ 'Cache-Control': 'no-cache', ETag: '"v1"' });
      if (req.headers['if-none-match'] === '"v1"') res.status(304).end();
      else res.json({ version: 1 });
    });
    await request(app).get('/doc').expect(200);
    const second = await request(app).get('/doc').expect(200);
    expect(second.headers['x-cache']).toBe('HIT');
    expect(second.body).toEqual({ version: 1 });
    await request(app).get('/doc').expect(200);
    expect(counts.asked).toEqual([undefined, '"v1"', '"v1"']);
  });

  it('serves stale when the handler fails within the stale-if-error the response gave', async () => {
    let failing = false;
    const { app } = appWith((_req, res) => {
      if (failing) res.status(503).json({ error: 'down' });
      else res.set('Cache-Control', 'max-age=1, stale-if-error=60').json({ version: 1 });
    });
    await request(app).get('/doc').expect(200);
    await sleep(1_100);
    failing = true;
    const stale = await request(app).get('/doc').expect(200);
    expect(stale.headers['x-cache']).toBe('STALE');
    expect(stale.body).toEqual({ version: 1 });
  });

  it('never serves stale what must-revalidate protects, whatever the route allows', async () => {
    let failing = false;
    const { app } = appWith(
      (_req, res) => {
        if (failing) res.status(503).json({ error: 'down' });
        else res.set('Cache-Control', 'max-age=1, must-revalidate').json({ version: 1 });
      },
      { staleIfError: '1h' },
    );
    await request(app).get('/doc').expect(200);
    await sleep(1_100);
    failing = true;
    await request(app).get('/doc').expect(503);
  });

  it("refreshes in the background within the response's stale-while-revalidate", async () => {
    let version = 1;
    const { app, counts } = appWith((_req, res) => {
      res.set('Cache-Control', 'max-age=1, stale-while-revalidate=60').json({ version: version++ });
    });
    await request(app).get('/doc').expect(200);
    await sleep(1_100);
    const stale = await request(app).get('/doc').expect(200);
    expect(stale.headers['x-cache']).toBe('STALE');
    expect(stale.body).toEqual({ version: 1 });
    for (let i = 0; i < 50 && counts.runs < 2; i++) await sleep(20);
    await sleep(100); // the refreshed entry is stored just after its response ends
    expect((await request(app).get('/doc')).body).toEqual({ version: 2 });
  });

  it('shares a response to a request with Authorization only when its directives allow it', async () => {
    const personal = appWith(answering({ 'Cache-Control': 'max-age=600' }));
    await request(personal.app).get('/doc').set('Authorization', 'Bearer a');
    expect((await request(personal.app).get('/doc').set('Authorization', 'Bearer b')).headers['x-cache']).toBe('MISS');
    const shared = appWith(answering({ 'Cache-Control': 'public, max-age=600' }));
    await request(shared.app).get('/doc').set('Authorization', 'Bearer a');
    expect((await request(shared.app).get('/doc').set('Authorization', 'Bearer b')).headers['x-cache']).toBe('HIT');
  });

  it('never answers a request with Authorization from an entry stored for anyone', async () => {
    const { app, counts } = appWith(answering({ 'Cache-Control': 'max-age=600' }));
    await request(app).get('/doc');
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('HIT');
    expect((await request(app).get('/doc').set('Authorization', 'Bearer a')).headers['x-cache']).toBe('MISS');
    expect(counts.runs).toBe(2);
  });

  it('stores a private="…" response without the headers it names', async () => {
    const { app } = appWith(answering({ 'Cache-Control': 'max-age=600, private="X-User"', 'X-User': 'alice' }));
    expect((await request(app).get('/doc')).headers['x-user']).toBe('alice');
    const hit = await request(app).get('/doc');
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(hit.headers['x-user']).toBeUndefined();
  });

  it('answers a byte range from a stored complete response with 206', async () => {
    const { app, counts } = appWith((_req, res) => {
      res.set('Cache-Control', 'max-age=600').type('text/plain').send('0123456789');
    });
    await request(app).get('/doc').expect(200);
    const partial = await request(app).get('/doc').set('Range', 'bytes=2-4').set('Accept-Encoding', 'identity');
    expect(partial.status).toBe(206);
    expect(partial.headers['content-range']).toBe('bytes 2-4/10');
    expect(partial.text).toBe('234');
    const suffix = await request(app).get('/doc').set('Range', 'bytes=-3').set('Accept-Encoding', 'identity');
    expect(suffix.text).toBe('789');
    expect(counts.runs).toBe(1);
  });

  it("ignores the request's Cache-Control by default, and honours it with requestCacheControl", async () => {
    const ignoring = appWith(answering({ 'Cache-Control': 'max-age=600' }));
    await request(ignoring.app).get('/doc');
    const forced = await request(ignoring.app).get('/doc').set('Cache-Control', 'no-cache');
    expect(forced.headers['x-cache']).toBe('HIT');

    const honouring = appWith(answering({ 'Cache-Control': 'max-age=600' }), { requestCacheControl: true });
    await request(honouring.app).get('/doc').set('Cache-Control', 'only-if-cached').expect(504);
    await request(honouring.app).get('/doc');
    expect((await request(honouring.app).get('/doc').set('Cache-Control', 'only-if-cached')).status).toBe(200);
    expect((await request(honouring.app).get('/doc').set('Cache-Control', 'no-cache')).headers['x-cache']).toBe('MISS');
    expect(honouring.counts.runs).toBe(2);
  });

  it('a request max-age asks for an entry no older than that (requestCacheControl)', async () => {
    const { app, counts } = appWith(answering({ 'Cache-Control': 'max-age=600', Age: '100' }), {
      requestCacheControl: true,
    });
    await request(app).get('/doc');
    expect((await request(app).get('/doc').set('Cache-Control', 'max-age=200')).headers['x-cache']).toBe('HIT');
    expect((await request(app).get('/doc').set('Cache-Control', 'max-age=50')).headers['x-cache']).toBe('MISS');
    expect(counts.runs).toBe(2);
  });

  it('keeps one entry per Vary variant, comparing values as lists (whitespace aside)', async () => {
    const { app, counts } = appWith((req, res) => {
      res.set({ 'Cache-Control': 'max-age=600', Vary: 'X-Flavour' }).json({ flavour: req.headers['x-flavour'] });
    });
    await request(app).get('/doc').set('X-Flavour', 'a,b');
    expect((await request(app).get('/doc').set('X-Flavour', 'a, b')).headers['x-cache']).toBe('HIT');
    expect((await request(app).get('/doc').set('X-Flavour', 'c')).body).toEqual({ flavour: 'c' });
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('MISS'); // absent is not the same as any value
    expect(counts.runs).toBe(3);
  });

  it('obeys a Cache-Control that middleware in front set, when the handler sets none', async () => {
    const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('http-mode'), logger: silentLogger });
    const app = express();
    let runs = 0;
    app.use((_req, res, next) => {
      res.set('Cache-Control', 'no-store');
      next();
    });
    app.get('/api', cache.response({ freshness: 'http' }), (_req, res) => {
      runs++;
      res.json({ ok: true });
    });
    app.get('/page', cache.response({ freshness: 'http' }), (_req, res) => {
      runs++;
      res.set('Cache-Control', 'public, max-age=600').json({ ok: true });
    });
    await request(app).get('/api');
    expect((await request(app).get('/api')).headers['x-cache']).toBe('MISS');
    await request(app).get('/page');
    expect((await request(app).get('/page')).headers['x-cache']).toBe('HIT');
    expect(runs).toBe(3);
  });

  it('sends a client that accepts gzip the whole response, never a range of bytes compression() would re-encode', async () => {
    const { app } = appWith((_req, res) => {
      res.set('Cache-Control', 'max-age=600').type('text/plain').send('x'.repeat(5_000));
    });
    await request(app).get('/doc').expect(200);
    const gzipClient = await request(app).get('/doc').set('Range', 'bytes=0-99').set('Accept-Encoding', 'gzip');
    expect(gzipClient.status).toBe(200);
    expect(gzipClient.headers['content-range']).toBeUndefined();
    expect(gzipClient.text).toHaveLength(5_000);
    const identity = await request(app).get('/doc').set('Range', 'bytes=0-99').set('Accept-Encoding', 'identity');
    expect(identity.status).toBe(206);
    expect(identity.headers['content-encoding']).toBeUndefined();
    expect(identity.text).toHaveLength(100);
  });

  it('marks a 206 no-transform, so that compression() encoding every response still leaves the range alone', async () => {
    const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('http-mode'), logger: silentLogger });
    const app = express();
    app.use(compression({ enforceEncoding: 'gzip', threshold: 0 }));
    app.get('/doc', cache.response({ ttl: '1h' }), (_req, res) => {
      res.type('text/plain').send('y'.repeat(5_000));
    });
    await request(app).get('/doc').expect(200);
    for (const acceptEncoding of ['identity', 'gzip;Q=0']) {
      const response = await request(app).get('/doc').set('Range', 'bytes=0-99').set('Accept-Encoding', acceptEncoding);
      if (response.status === 206) {
        expect(response.headers['content-encoding'], acceptEncoding).toBeUndefined();
        expect(response.text).toHaveLength(100);
        expect(response.headers['cache-control']).toMatch(/no-transform/);
      } else {
        expect(response.status, acceptEncoding).toBe(200); // whole, and compressed as any response
        expect(response.text).toHaveLength(5_000);
      }
    }
    const identity = await request(app).get('/doc').set('Range', 'bytes=0-99').set('Accept-Encoding', 'identity');
    expect(identity.status).toBe(206);
  });

  it('never stores a partial response the handler gave to a Range, even when statuses includes 206', async () => {
    let runs = 0;
    const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('http-mode'), logger: silentLogger });
    const app = express();
    app.get('/doc', cache.response({ ttl: '1h', statuses: [200, 206] }), (req, res) => {
      runs++;
      if (req.headers.range) res.status(206).set('Content-Range', 'bytes 0-1/10').send('01');
      else res.send('0123456789');
    });
    await request(app).get('/doc').set('Range', 'bytes=0-1').expect(206);
    const whole = await request(app).get('/doc').expect(200);
    expect(whole.text).toBe('0123456789');
    expect(runs).toBe(2);
  });

  it('If-Range with a date gets the range only when Last-Modified is a strong validator', async () => {
    const lastModified = new Date(Date.now() - 60_000).toUTCString();
    const { app } = appWith((_req, res) => {
      res.set({ 'Cache-Control': 'max-age=600', 'Last-Modified': lastModified }).type('text/plain').send('0123456789');
    });
    await request(app).get('/doc').expect(200);
    const ranged = await request(app)
      .get('/doc')
      .set({ Range: 'bytes=0-1', 'If-Range': lastModified, 'Accept-Encoding': 'identity' });
    expect(ranged.status).toBe(206);
    const { app: sameSecond } = appWith((_req, res) => {
      const now = new Date().toUTCString();
      res
        .set({ 'Cache-Control': 'max-age=600', 'Last-Modified': now, Date: now })
        .type('text/plain')
        .send('0123456789');
    });
    const stored = await request(sameSecond).get('/doc');
    const weak = await request(sameSecond)
      .get('/doc')
      .set({ Range: 'bytes=0-1', 'If-Range': stored.headers['last-modified'], 'Accept-Encoding': 'identity' });
    expect(weak.status).toBe(200);
  });

  it('a background refresh that fails within stale-if-error keeps the good entry', async () => {
    let failing = false;
    const { app, counts } = appWith((_req, res) => {
      if (failing) res.status(503).set('Cache-Control', 'max-age=600').json({ error: 'down' });
      else res.set('Cache-Control', 'max-age=1, stale-while-revalidate=60, stale-if-error=600').json({ ok: 1 });
    });
    await request(app).get('/doc').expect(200);
    await sleep(1_100);
    failing = true;
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('STALE');
    for (let i = 0; i < 50 && counts.runs < 2; i++) await sleep(20);
    await sleep(150);
    const after = await request(app).get('/doc');
    expect(after.status).toBe(200);
    expect(after.body).toEqual({ ok: 1 });
  });

  it('requestCacheControl: a request directive the cache does not act on leaves stale-if-error alone', async () => {
    let failing = false;
    const { app } = appWith(
      (_req, res) => {
        if (failing) res.status(503).json({ error: 'down' });
        else res.set('Cache-Control', 'max-age=1, stale-if-error=600').json({ ok: 1 });
      },
      { requestCacheControl: true },
    );
    await request(app).get('/doc').expect(200);
    await sleep(1_100);
    failing = true;
    const stale = await request(app).get('/doc').set('Cache-Control', 'no-transform');
    expect(stale.status).toBe(200);
    expect(stale.headers['x-cache']).toBe('STALE');
    const noCache = await request(app).get('/doc').set('Cache-Control', 'no-cache');
    expect(noCache.status).toBe(200); // revalidation failed: the entry answers within its stale-if-error
  });

  it('after a 304, a lifetime that middleware in front set still counts', async () => {
    const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('http-mode'), logger: silentLogger });
    const app = express();
    let runs = 0;
    app.use((_req, res, next) => {
      res.set('Cache-Control', 'public, max-age=1');
      next();
    });
    app.get('/doc', cache.response({ freshness: 'http' }), (req, res) => {
      runs++;
      res.set('ETag', '"v1"');
      if (req.headers['if-none-match'] === '"v1"') res.status(304).end();
      else res.json({ ok: true });
    });
    await request(app).get('/doc').expect(200);
    await sleep(1_100);
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('HIT'); // revalidated: 304
    expect(runs).toBe(2);
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('HIT'); // fresh again for max-age=1
    expect(runs).toBe(2);
  });

  it('a 304 naming another ETag than the stored one does not freshen the stored entry', async () => {
    const { app, counts } = appWith((req, res) => {
      res.set({ 'Cache-Control': 'max-age=1', ETag: req.headers['if-none-match'] ? '"other"' : '"v1"' });
      if (req.headers['if-none-match']) res.status(304).end();
      else res.json({ ok: true });
    });
    await request(app).get('/doc').expect(200);
    await sleep(1_100);
    await request(app).get('/doc').expect(200);
    await request(app).get('/doc').expect(200);
    expect(counts.runs).toBe(3); // not stored as fresh: asked again
  });

  it('a private or no-cache that names no field is read as the bare directive', async () => {
    for (const cc of ['private=, max-age=600', 'private="", max-age=600']) {
      const { app, counts } = appWith(answering({ 'Cache-Control': cc }));
      await request(app).get('/doc');
      expect((await request(app).get('/doc')).headers['x-cache'], cc).toBe('MISS');
      expect(counts.runs).toBe(2);
    }
    const { app, counts } = appWith(answering({ 'Cache-Control': 'no-cache=, max-age=600' }));
    await request(app).get('/doc');
    await request(app).get('/doc');
    expect(counts.runs).toBe(2); // no-cache: not served without asking the handler
  });

  it('a Vary naming a property every object has is a header like any other', async () => {
    const { app } = appWith(answering({ 'Cache-Control': 'max-age=600', Vary: 'Constructor, toString' }));
    await request(app).get('/doc').expect(200);
    expect((await request(app).get('/doc').expect(200)).headers['x-cache']).toBe('HIT');
  });

  it('rejects invalid options by name', () => {
    const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('http-mode'), logger: silentLogger });
    expect(() => cache.response({ freshness: 'rfc' as 'http' })).toThrow(/freshness/);
    expect(() => cache.response({ freshness: 'http', heuristic: 2 })).toThrow(/heuristic/);
  });
});
