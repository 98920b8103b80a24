// The response cache inside the stack a real app has: compression, CORS, helmet, a request id, rateLimit and
// sessions in front of it, proxies, and clients that revalidate.
import { get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import compression from 'compression';
import cors from 'cors';
import express, { type Express } from 'express';
import requestId from 'express-request-id';
import helmet from 'helmet';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createCache, rateLimit, redisSession } from '../../lib/index.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('cache-stack');
const newCache = () => createCache({ redis: redis.client(), prefix: uniquePrefix('stack'), logger: silentLogger });
const document = { items: Array.from({ length: 100 }, (_, i) => ({ id: i, name: `item ${i}` })) };

/** A GET answered with its raw bytes, whatever their encoding (supertest would decode gzip itself). */
function raw(app: Express, path: string, headers: Record<string, string>) {
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }>(
    (resolve, reject) => {
      const server = app.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        get({ host: '127.0.0.1', port, path, headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            server.close();
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
          });
        }).on('error', reject);
      });
    },
  );
}

/** Headers whose values must appear once only, whatever the response. */
const singleHeaders = ['access-control-allow-origin', 'x-request-id', 'ratelimit', 'content-security-policy'];

describe('behind compression(), cors(), helmet(), a request id and rateLimit()', () => {
  function stackApp() {
    const cache = newCache();
    let runs = 0;
    const app = express();
    app.use(compression({ threshold: 0 }));
    app.use(cors({ origin: (origin, done) => done(null, origin ?? false) })); // per-origin CORS
    app.use(helmet());
    app.use(requestId());
    app.use(rateLimit({ redis: redis.client(), prefix: uniquePrefix('stack-rl'), limit: 1_000, logger: silentLogger }));
    app.get('/items', cache.response(), (_req, res) => {
      runs++;
      res.json(document);
    });
    return { app, runs: () => runs };
  }

  it('a HIT decodes byte for byte for gzip and identity clients, in any order, with headers set once', async () => {
    const { app, runs } = stackApp();
    const expected = Buffer.from(JSON.stringify(document));
    const order = ['gzip', 'identity', 'gzip', 'identity', 'identity', 'gzip'];
    const seen: string[] = [];
    for (const encoding of order) {
      const response = await raw(app, '/items', { 'Accept-Encoding': encoding, Origin: 'https://a.example' });
      expect(response.status).toBe(200);
      const body = response.headers['content-encoding'] === 'gzip' ? gunzipSync(response.body) : response.body;
      expect(body.equals(expected), `${encoding} ${response.headers['x-cache']}`).toBe(true);
      expect(response.headers['content-encoding']).toBe(encoding === 'gzip' ? 'gzip' : undefined);
      for (const name of singleHeaders) {
        // A header sent twice reaches the client as one value joined with ', '.
        expect(response.headers[name], name).toBeDefined();
        expect(String(response.headers[name]), name).not.toContain(', ');
      }
      seen.push(String(response.headers['x-cache']));
    }
    expect(seen).toEqual(['MISS', 'HIT', 'HIT', 'HIT', 'HIT', 'HIT']);
    expect(runs()).toBe(1);
  });

  it("a HIT carries this request's id, this client's rate-limit state and this origin's CORS header", async () => {
    const { app } = stackApp();
    const first = await request(app).get('/items').set('Origin', 'https://a.example');
    const second = await request(app).get('/items').set('Origin', 'https://b.example');
    expect(second.headers['x-cache']).toBe('HIT');
    expect(second.headers['x-request-id']).not.toBe(first.headers['x-request-id']);
    expect(second.headers['access-control-allow-origin']).toBe('https://b.example');
    expect(first.headers['access-control-allow-origin']).toBe('https://a.example');
    expect(second.headers.ratelimit).toMatch(/r=998;/); // this client's second request of the window
  });

  it('static CORS (origin *) appears once on a HIT', async () => {
    const cache = newCache();
    const app = express();
    app.use(cors());
    app.get('/items', cache.response(), (_req, res) => void res.json(document));
    await request(app).get('/items');
    const hit = await request(app).get('/items');
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(hit.headers['access-control-allow-origin']).toBe('*');
  });
});

describe('the key has the origin', () => {
  function hostApp(trustProxy: boolean) {
    const cache = newCache();
    const app = express();
    if (trustProxy) app.set('trust proxy', 'loopback');
    app.get(
      '/links',
      cache.response(),
      (req, res) => void res.send(`<a href="${req.protocol}://${req.get('host')}/x">x</a>`),
    );
    return app;
  }

  it('a request with another Host header never poisons the entry served for the real one', async () => {
    const app = hostApp(false);
    const poisoned = await request(app).get('/links').set('Host', 'evil.example');
    expect(poisoned.text).toContain('evil.example');
    const honest = await request(app).get('/links').set('Host', 'shop.example');
    expect(honest.headers['x-cache']).toBe('MISS');
    expect(honest.text).toContain('shop.example');
    expect((await request(app).get('/links').set('Host', 'shop.example')).headers['x-cache']).toBe('HIT');
    // Another port is another origin too.
    expect((await request(app).get('/links').set('Host', 'shop.example:4444')).headers['x-cache']).toBe('MISS');
  });

  it('under trust proxy, X-Forwarded-Host and X-Forwarded-Proto are part of it', async () => {
    const app = hostApp(true);
    await request(app).get('/links').set('X-Forwarded-Host', 'evil.example').set('X-Forwarded-Proto', 'https');
    const plain = await request(app).get('/links').set('X-Forwarded-Host', 'evil.example');
    expect(plain.headers['x-cache']).toBe('MISS');
    const shop = await request(app)
      .get('/links')
      .set('X-Forwarded-Host', 'shop.example')
      .set('X-Forwarded-Proto', 'https');
    expect(shop.headers['x-cache']).toBe('MISS');
  });
});

describe('personal responses', () => {
  function sessionApp(options: Parameters<ReturnType<typeof newCache>['response']>[0] = {}) {
    const cache = newCache();
    const app: Express = express();
    app.use(
      redisSession({
        secret: 'a-test-secret-that-is-long-enough-0001',
        redis: redis.client(),
        prefix: uniquePrefix('s'),
        logger: silentLogger,
      }),
    );
    app.get('/login/:user', (req, res) => {
      (req.session as unknown as Record<string, unknown>).user = req.params.user;
      res.send('ok');
    });
    app.get('/me', cache.response(options), (req, res) => {
      res.send(`hello ${(req.session as unknown as { user?: string }).user ?? 'stranger'}`);
    });
    app.get('/public', cache.response(options), (_req, res) => void res.send('the same for everyone'));
    return app;
  }
  const cookieOf = (response: request.Response) => String(response.headers['set-cookie']).split(';')[0];

  it('a page that read session data is never served to another session or an anonymous client', async () => {
    const app = sessionApp();
    const alice = cookieOf(await request(app).get('/login/alice'));
    const bob = cookieOf(await request(app).get('/login/bob'));
    expect((await request(app).get('/me').set('Cookie', alice)).text).toBe('hello alice');
    const bobs = await request(app).get('/me').set('Cookie', bob);
    expect(bobs.text).toBe('hello bob');
    expect(bobs.headers['x-cache']).toBe('BYPASS');
    expect((await request(app).get('/me')).text).toBe('hello stranger');
    // A page that never touches the session is shared as usual.
    await request(app).get('/public').set('Cookie', alice);
    expect((await request(app).get('/public').set('Cookie', bob)).headers['x-cache']).toBe('HIT');
  });

  it('with perSession, each session gets its own entry', async () => {
    const app = sessionApp({ perSession: true });
    const alice = cookieOf(await request(app).get('/login/alice'));
    const bob = cookieOf(await request(app).get('/login/bob'));
    await request(app).get('/me').set('Cookie', alice);
    const again = await request(app).get('/me').set('Cookie', alice);
    expect([again.headers['x-cache'], again.text]).toEqual(['HIT', 'hello alice']);
    const bobs = await request(app).get('/me').set('Cookie', bob);
    expect([bobs.headers['x-cache'], bobs.text]).toEqual(['MISS', 'hello bob']);
  });
});

describe('revalidation', () => {
  function etagApp() {
    const cache = newCache();
    let runs = 0;
    const seenConditionals: (string | undefined)[] = [];
    const app = express();
    app.get('/doc', cache.response(), (req, res) => {
      runs++;
      seenConditionals.push(req.headers['if-none-match']);
      res.json({ doc: true });
    });
    app.get('/empty', cache.response({ statuses: [204] }), (_req, res) => void res.status(204).end());
    return { app, runs: () => runs, seenConditionals };
  }

  it('produces a MISS in full, stores it, and answers a matching validator 304; revalidations are HITs', async () => {
    const { app, runs, seenConditionals } = etagApp();
    const plain = express().get('/doc', (_req, res) => void res.json({ doc: true }));
    const etag = (await request(plain).get('/doc')).headers.etag;
    const first = await request(app).get('/doc').set('If-None-Match', etag);
    expect(first.status).toBe(304);
    expect(first.headers['x-cache']).toBe('MISS');
    expect(seenConditionals).toEqual([undefined]); // the handler produced the full response
    const again = await request(app).get('/doc').set('If-None-Match', etag);
    expect([again.status, again.headers['x-cache']]).toEqual([304, 'HIT']);
    expect(runs()).toBe(1);
    for (const response of [first, again]) {
      expect(response.headers['content-length']).toBeUndefined();
      expect(response.text ?? '').toBe('');
    }
    expect((await request(app).get('/doc')).body).toEqual({ doc: true });
  });

  it('replays the stored Date, and puts no Content-Length on 204 or 304', async () => {
    const { app } = etagApp();
    const miss = await request(app).get('/doc');
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const hit = await request(app).get('/doc');
    expect(hit.headers.date).toBe(miss.headers.date);
    await request(app).get('/empty').expect(204);
    const empty = await request(app).get('/empty').expect(204);
    expect(empty.headers['x-cache']).toBe('HIT');
    expect(empty.headers['content-length']).toBeUndefined();
    const notModified = await request(app).get('/doc').set('If-None-Match', miss.headers.etag);
    expect(notModified.status).toBe(304);
    expect(notModified.headers['content-length']).toBeUndefined();
  });

  it('parses entity-tag lists per RFC 9110 (a comma inside a tag is not a separator)', async () => {
    const cache = newCache();
    const app = express();
    app.get('/tagged', cache.response(), (_req, res) => {
      res.setHeader('ETag', '"a,b"');
      res.send('tagged');
    });
    await request(app).get('/tagged');
    expect((await request(app).get('/tagged').set('If-None-Match', '"x", "a,b"')).status).toBe(304);
    expect((await request(app).get('/tagged').set('If-None-Match', '"a", "b"')).status).toBe(200);
    expect((await request(app).get('/tagged').set('If-None-Match', 'W/"a,b"')).status).toBe(304);
  });

  it('drops headers named in Connection', async () => {
    const cache = newCache();
    const app = express();
    app.get('/hop', cache.response(), (_req, res) => {
      res.setHeader('Connection', 'X-Hop');
      res.setHeader('X-Hop', 'this hop only');
      res.setHeader('X-Kept', 'kept');
      res.send('hop');
    });
    await request(app).get('/hop');
    const hit = await request(app).get('/hop');
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(hit.headers['x-kept']).toBe('kept');
    expect(hit.headers['x-hop']).toBeUndefined();
  });
});
