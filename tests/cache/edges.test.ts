// The response cache at the edges a real app reaches: refreshes that other middleware answer or that stream,
// per-session entries, custom keys with variants, stale fallbacks behind CORS, headers a handler removes.
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import cors from 'cors';
import express from 'express';
import { rateLimit as expressRateLimit } from 'express-rate-limit';
import helmet from 'helmet';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createCache, redisSession } from '../../lib/index.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('cache-edges');
const newCache = () => createCache({ redis: redis.client(), prefix: uniquePrefix('edges'), logger: silentLogger });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const secret = 'a-test-secret-that-is-long-enough-0001';

describe('background refresh (staleWhileRevalidate)', () => {
  it('is not left holding its lock when middleware in front answers the replay itself', async () => {
    const cache = newCache();
    const app = express();
    // Another rate limiter counts the replay as this client's third request, and answers it 429.
    app.use(expressRateLimit({ windowMs: 60_000, limit: 2, keyGenerator: () => 'one-client', validate: false }));
    let runs = 0;
    app.get(
      '/doc',
      cache.response({ ttl: 200, staleWhileRevalidate: 200, lock: { wait: '2s', ttl: '10s' } }),
      (_req, res) => {
        runs++;
        res.json({ runs });
      },
    );
    await request(app).get('/doc').expect(200);
    await sleep(250);
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('STALE'); // the replay gets the 429
    await sleep(300); // past the stale window
    const started = Date.now();
    await request(app).get('/doc'); // a 429 for this client, but never a wait for a lock nobody releases
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(runs).toBe(1);
  });

  it('gives up its lock once the refreshed entry is stored: stale again, it is refreshed again', async () => {
    const prefix = uniquePrefix('edges');
    const cache = createCache({ redis: redis.client(), prefix, logger: silentLogger });
    const app = express();
    let runs = 0;
    const cached = cache.response({ ttl: 200, staleWhileRevalidate: '1m', lock: { wait: '2s', ttl: '10s' } });
    app.get('/doc', cached, (_req, res) => {
      runs++;
      res.json({ runs });
    });
    app.post('/doc', cached, (_req, res) => void res.send('changed'));
    await request(app).get('/doc').expect(200);
    for (const refreshed of [2, 3]) {
      await sleep(250);
      expect((await request(app).get('/doc')).headers['x-cache']).toBe('STALE');
      await expect.poll(() => runs, { timeout: 3_000 }).toBe(refreshed);
      await expect
        .poll(async () => (await request(app).get('/doc')).body, { timeout: 3_000 })
        .toEqual({ runs: refreshed });
    }
    // Invalidated, the next request produces the entry at once: no lock is left for it to wait on.
    await request(app).post('/doc').expect(200);
    const miss = await request(app).get('/doc');
    expect([miss.headers['x-cache'], miss.body]).toEqual(['MISS', { runs: 4 }]);
    // (The MISS's own lock is released as its response goes out, a moment after the client has it.)
    await expect.poll(() => redis.client().keys(`lock:${prefix}:*`)).toEqual([]);
  });

  it('never touches the connection of the client whose request it replays, even when the replay fails mid-response', async () => {
    const cache = newCache();
    const app = express();
    let runs = 0;
    app.get('/doc', cache.response({ ttl: 200, staleWhileRevalidate: '1m' }), (_req, res, next) => {
      runs++;
      if (runs === 1) return void res.json({ runs });
      // The refresh: headers and part of the body out, then a failure.
      res.type('json').write('{"partial":');
      next(new Error('the database went away'));
    });
    // As Express's own final handler does: a response that failed after its headers went out has its socket destroyed.
    app.use((error: Error, req: express.Request, res: express.Response, next: express.NextFunction) => {
      if (!res.headersSent) return next(error);
      req.socket.destroy();
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    let connections = 0;
    server.on('connection', () => connections++);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = () =>
      new Promise<{ cache: unknown; body: string }>((resolve, reject) => {
        const port = (server.address() as { port: number }).port;
        http
          .get({ host: '127.0.0.1', port, path: '/doc', agent }, (response) => {
            let body = '';
            response.on('data', (chunk) => (body += chunk));
            response.on('end', () => resolve({ cache: response.headers['x-cache'], body }));
          })
          .on('error', reject);
      });
    try {
      expect((await get()).cache).toBe('MISS');
      await sleep(250);
      expect((await get()).cache).toBe('STALE');
      await expect.poll(() => runs, { timeout: 3_000 }).toBe(2);
      await sleep(50);
      expect(await get()).toEqual({ cache: 'STALE', body: '{"runs":1}' });
      expect(connections).toBe(1);
    } finally {
      agent.destroy();
      server.closeAllConnections();
      server.close();
    }
  });

  it('completes for a streamed response larger than a socket buffer (res.sendFile)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'redisware-edges-'));
    const file = join(dir, 'big.txt');
    writeFileSync(file, 'x'.repeat(270 * 1024));
    const cache = newCache();
    const app = express();
    let runs = 0;
    app.get('/file', cache.response({ ttl: 200, staleWhileRevalidate: '1m', maxBytes: 1024 * 1024 }), (_req, res) => {
      runs++;
      res.sendFile(file, { maxAge: '1h' }); // fresh for an hour, as far as the response says (the default is 0)
    });
    await request(app).get('/file').expect(200);
    await sleep(250);
    expect((await request(app).get('/file')).headers['x-cache']).toBe('STALE');
    await expect.poll(() => runs, { timeout: 3_000 }).toBe(2);
    await expect.poll(async () => (await request(app).get('/file')).headers['x-cache'], { timeout: 3_000 }).toBe('HIT');
  });
});

describe('perSession', () => {
  it('stores nothing personal when the session middleware comes after the cache', async () => {
    const cache = newCache();
    const app = express();
    app.use('/account', cache.response({ perSession: true }));
    app.use(redisSession({ secret, redis: redis.client(), prefix: uniquePrefix('s'), logger: silentLogger }));
    app.get('/login/:user', (req, res) => {
      (req.session as unknown as Record<string, unknown>).user = req.params.user;
      res.send('ok');
    });
    app.get('/account', (req, res) => void res.send(`account of ${(req.session as never as { user?: string }).user}`));
    const cookieOf = (r: request.Response) => String(r.headers['set-cookie']).split(';')[0];
    const alice = cookieOf(await request(app).get('/login/alice'));
    const bob = cookieOf(await request(app).get('/login/bob'));
    expect((await request(app).get('/account').set('Cookie', alice)).text).toBe('account of alice');
    expect((await request(app).get('/account').set('Cookie', bob)).text).toBe('account of bob');
    expect((await request(app).get('/account')).text).toBe('account of undefined');
  });

  it('shares one entry among visitors who have no session yet', async () => {
    const cache = newCache();
    const app = express();
    app.use(redisSession({ secret, redis: redis.client(), prefix: uniquePrefix('s'), logger: silentLogger }));
    let runs = 0;
    app.get('/welcome', cache.response({ perSession: true }), (req, res) => {
      runs++;
      res.send(`hello ${(req.session as never as { user?: string }).user ?? 'stranger'}`);
    });
    for (let i = 0; i < 5; i++) expect((await request(app).get('/welcome')).text).toBe('hello stranger');
    expect(runs).toBe(1);
  });
});

describe('custom keys and variants', () => {
  it('cache.delete(key) and an unsafe request invalidate every variant stored under a custom key', async () => {
    const cache = newCache();
    const app = express();
    let version = 1;
    const cached = cache.response({ key: () => 'product' });
    app.get('/product', cached, (req, res) => {
      res.vary('Accept-Language');
      res.json({ version, language: req.headers['accept-language'] });
    });
    app.put('/product', cached, (_req, res) => {
      version++;
      res.send('updated');
    });
    const get = () => request(app).get('/product').set('Accept-Language', 'fr');
    await get();
    expect((await get()).headers['x-cache']).toBe('HIT');
    await cache.delete('product');
    expect((await get()).headers['x-cache']).toBe('MISS');
    await request(app).put('/product').expect(200);
    const after = await get();
    expect([after.headers['x-cache'], after.body.version]).toEqual(['MISS', 2]);
  });
});

describe('what outer middleware set', () => {
  it('a staleIfError fallback keeps the CORS and helmet headers of this request', async () => {
    const cache = newCache();
    const app = express();
    app.use(cors(), helmet());
    let fail = false;
    app.get('/doc', cache.response({ ttl: 100, staleIfError: '1m' }), (_req, res) => {
      if (fail) return void res.status(503).send('down');
      res.json({ good: true });
    });
    await request(app).get('/doc');
    await sleep(150);
    fail = true;
    const stale = await request(app).get('/doc').set('Origin', 'https://a.example');
    expect([stale.status, stale.headers['x-cache'], stale.body]).toEqual([200, 'STALE', { good: true }]);
    expect(stale.headers['access-control-allow-origin']).toBe('*');
    expect(stale.headers['x-content-type-options']).toBe('nosniff');
  });

  it('a header the handler removed stays removed on a HIT', async () => {
    const cache = newCache();
    const app = express();
    app.use(helmet());
    app.get('/embeddable', cache.response(), (_req, res) => {
      res.removeHeader('X-Frame-Options');
      res.send('embed me');
    });
    await request(app).get('/embeddable');
    const hit = await request(app).get('/embeddable');
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(hit.headers['x-frame-options']).toBeUndefined();
  });

  it('a cookie that middleware in front set does not keep the response from being stored', async () => {
    const cache = newCache();
    const app = express();
    app.use((_req, res, next) => {
      res.cookie('seen', '1');
      next();
    });
    app.get('/doc', cache.response(), (_req, res) => void res.send('doc'));
    await request(app).get('/doc');
    const hit = await request(app).get('/doc');
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(String(hit.headers['set-cookie'])).toMatch(/^seen=1/); // this request's, set again
  });
});

describe('URLs', () => {
  it('an absolute same-origin Location naming the listening port is invalidated', async () => {
    const cache = newCache();
    const app = express();
    app.use(cache.response());
    let version = 1;
    app.get('/items/1', (_req, res) => void res.json({ version }));
    app.post('/items', (req, res) => {
      version++;
      res.redirect(303, `http://${req.get('host')}/items/1`);
    });
    const server = app.listen(0);
    try {
      const agent = request(server);
      await agent.get('/items/1');
      expect((await agent.get('/items/1')).headers['x-cache']).toBe('HIT');
      await agent.post('/items').expect(303);
      expect((await agent.get('/items/1')).body).toEqual({ version: 2 });
    } finally {
      server.close();
    }
  });

  it('keeps the order of a repeated query parameter apart', async () => {
    const cache = newCache();
    const app = express();
    app.get('/ids', cache.response(), (req, res) => void res.json(req.query.id));
    expect((await request(app).get('/ids?id=3&id=1')).body).toEqual(['3', '1']);
    expect((await request(app).get('/ids?id=1&id=3')).body).toEqual(['1', '3']);
    expect((await request(app).get('/ids?b=2&id=3&id=1&a=1')).headers['x-cache']).toBe('MISS');
  });
});
