// A background refresh (staleWhileRevalidate) replays a request no client waits for: it writes the entry it
// refreshes and nothing else — no session is ended, saved or brought back by it, and its failure keeps nobody waiting.
import { RedisStore as ConnectRedisStore } from 'connect-redis';
import express, { type Request } from 'express';
import session from 'express-session';
import { createClient } from 'redis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCache, redisSession, SessionStore } from '../../lib/index.js';
import { redisUrl, silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';
import { cookieOf, sleep, stackApp } from './support.js';

const redis = useTestRedis('cache-refresh');
const secret = 'a-test-secret-that-is-long-enough-0001';
const data = (req: Request) => req.session as unknown as Record<string, unknown>;
const newCache = () => createCache({ redis: redis.client(), prefix: uniquePrefix('refresh'), logger: silentLogger });
const nodeRedis = createClient({ url: redisUrl() });
beforeAll(async () => {
  await nodeRedis.connect();
});
afterAll(async () => {
  await nodeRedis.quit();
});

describe('a perSession refresh under redisSession is read-only', () => {
  for (const method of ['regenerate', 'destroy'] as const) {
    it(`a refresh whose handler calls ${method}() leaves the user's session alone`, async () => {
      const cache = newCache();
      const app = stackApp();
      app.use(redisSession({ secret, redis: redis.client(), prefix: uniquePrefix('s'), logger: silentLogger }));
      app.get('/login/:user', (req, res) => {
        data(req).user = req.params.user;
        data(req).rotatedAt = Date.now();
        res.send('ok');
      });
      app.get('/me', (req, res) => void res.send(`me: ${data(req).user ?? 'nobody'}`));
      // A page that rotates the session id once it is older than a limit (or ends it): on the user's own request
      // it did neither.
      let rotateAfter = 60_000;
      const cached = cache.response({ perSession: true, ttl: 300, staleWhileRevalidate: '1m' });
      app.get('/home', cached, async (req, res) => {
        if (Date.now() - Number(data(req).rotatedAt) > rotateAfter) {
          if (method === 'regenerate') await req.session.regenerate({ keepData: true });
          else await req.session.destroy();
        }
        res.send(`home of ${data(req).user ?? 'nobody'}`);
      });
      const alice = cookieOf(await request(app).get('/login/alice'));
      expect((await request(app).get('/home').set('Cookie', alice)).text).toBe('home of alice');
      rotateAfter = 0;
      await sleep(400);
      expect((await request(app).get('/home').set('Cookie', alice)).headers['x-cache']).toBe('STALE');
      await sleep(300); // the background refresh has run
      expect((await request(app).get('/me').set('Cookie', alice)).text).toBe('me: alice');
    });
  }

  it('the refresh of the anonymous entry never stores a page that wrote into a new session', async () => {
    const cache = newCache();
    const app = stackApp();
    app.use(redisSession({ secret, redis: redis.client(), prefix: uniquePrefix('s'), logger: silentLogger }));
    let withToken = false;
    app.get('/form', cache.response({ perSession: true, ttl: 1_000, staleWhileRevalidate: '1m' }), (req, res) => {
      if (withToken) data(req).csrf ??= Math.random().toString(36).slice(2); // after a deploy: a CSRF token
      res.send(`form ${data(req).csrf ?? '-'}`);
    });
    expect((await request(app).get('/form')).text).toBe('form -'); // the anonymous entry
    withToken = true;
    await sleep(1_050);
    expect((await request(app).get('/form')).headers['x-cache']).toBe('STALE');
    await sleep(200);
    const one = await request(app).get('/form');
    const two = await request(app).get('/form');
    // The stale page (no token) until a request of a visitor's own renders it; never one visitor's token for two.
    const tokens = [one.text, two.text].filter((text) => text !== 'form -');
    expect(new Set(tokens).size).toBe(tokens.length);
  });
});

describe('a shared entry’s refresh under express-session', () => {
  it('never brings back a session its user logged out of meanwhile (resave: true)', async () => {
    const cache = newCache();
    const app = stackApp();
    const store = new SessionStore({ redis: redis.client(), prefix: `${uniquePrefix('es')}:`, logger: silentLogger });
    app.use(session({ store, secret, saveUninitialized: false, resave: true }));
    app.get('/login/:user', (req, res) => {
      data(req).user = req.params.user;
      res.send('ok');
    });
    app.get('/logout', (req, res, next) => void req.session.destroy((e) => (e ? next(e) : res.send('bye'))));
    app.get('/me', (req, res) => void res.send(`me: ${data(req).user ?? 'nobody'}`));
    let slow = false;
    app.get('/news', cache.response({ ttl: 300, staleWhileRevalidate: '1m' }), async (_req, res) => {
      if (slow) await sleep(400);
      res.send('news');
    });
    expect((await request(app).get('/news')).headers['x-cache']).toBe('MISS');
    const ada = cookieOf(await request(app).get('/login/ada'));
    await sleep(350);
    slow = true;
    expect((await request(app).get('/news').set('Cookie', ada)).headers['x-cache']).toBe('STALE');
    await sleep(50);
    expect((await request(app).get('/logout').set('Cookie', ada)).text).toBe('bye');
    expect((await request(app).get('/me').set('Cookie', ada)).text).toBe('me: nobody');
    await sleep(600); // the refresh has ended
    expect((await request(app).get('/me').set('Cookie', ada)).text).toBe('me: nobody');
  });
});

describe('a background refresh that failed', () => {
  it('does not make the next misses of its URL wait for a lock nobody is producing under', async () => {
    const cache = newCache();
    let failing = false;
    const app = express();
    app.use(cache.response({ ttl: 300, staleWhileRevalidate: 300 }));
    app.get('/report', (_req, res) => (failing ? void res.status(500).send('backend down') : void res.send('report')));
    app.put('/report', (_req, res) => void res.send('updated'));
    expect((await request(app).get('/report')).headers['x-cache']).toBe('MISS');
    await sleep(350);
    failing = true;
    expect((await request(app).get('/report')).headers['x-cache']).toBe('STALE'); // its refresh fails
    await sleep(100);
    failing = false;
    expect((await request(app).put('/report')).status).toBe(200);
    const started = Date.now();
    const next = await request(app).get('/report');
    expect(next.text).toBe('report');
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});

describe.each([
  [
    'SessionStore',
    () => new SessionStore({ redis: redis.client(), prefix: `${uniquePrefix('es')}:`, logger: silentLogger }),
  ],
  ['connect-redis', () => new ConnectRedisStore({ client: nodeRedis, prefix: `${uniquePrefix('cr')}:` })],
])('express-session (%s): a background refresh', (_name, newStore) => {
  it("unset: 'destroy': the refresh a logged-in user's request starts does not log that user out", async () => {
    const cache = newCache();
    const app = stackApp();
    app.use(session({ store: newStore(), secret, saveUninitialized: false, resave: false, unset: 'destroy' }));
    app.get('/login/:user', (req, res) => {
      data(req).user = req.params.user;
      res.send('ok');
    });
    app.get('/me', (req, res) => void res.send(`me: ${data(req).user ?? 'nobody'}`));
    app.get('/news', cache.response({ ttl: 300, staleWhileRevalidate: '1m' }), (_req, res) => void res.send('news'));
    expect((await request(app).get('/news')).headers['x-cache']).toBe('MISS');
    const ada = cookieOf(await request(app).get('/login/ada'));
    expect((await request(app).get('/me').set('Cookie', ada)).text).toBe('me: ada');
    await sleep(350);
    // Ada reads the news page, stale by now: she is served it, and a refresh runs in the background.
    expect((await request(app).get('/news').set('Cookie', ada)).headers['x-cache']).toBe('STALE');
    await sleep(300); // the background refresh has run
    expect((await request(app).get('/me').set('Cookie', ada)).text).toBe('me: ada');
  });

  for (const method of ['regenerate', 'destroy', 'save'] as const) {
    it(`perSession: a refresh whose handler calls ${method}() leaves the user's session alone`, async () => {
      const cache = newCache();
      const app = stackApp();
      app.use(session({ store: newStore(), secret, saveUninitialized: false, resave: false }));
      app.get('/login/:user', (req, res) => {
        data(req).user = req.params.user;
        data(req).rotatedAt = Date.now();
        data(req).views = 0;
        res.send('ok');
      });
      app.get('/me', (req, res) => void res.send(`me: ${data(req).user ?? 'nobody'} ${data(req).views}`));
      // A page that rotates the session id once it is older than a limit (or ends it, or counts a view and saves):
      // on the user's own request it did none of it.
      let actAfter = 60_000;
      const cached = cache.response({ perSession: true, ttl: 300, staleWhileRevalidate: '1m' });
      app.get('/home', cached, async (req, res) => {
        const user = data(req).user ?? 'nobody';
        if (Date.now() - Number(data(req).rotatedAt) > actAfter) {
          const done = (resolve: () => void, reject: (e: unknown) => void) => (e?: unknown) =>
            e ? reject(e) : resolve();
          if (method === 'regenerate') {
            await new Promise<void>((resolve, reject) => req.session.regenerate(done(resolve, reject)));
            data(req).user = user;
            data(req).rotatedAt = Date.now();
          } else if (method === 'destroy') {
            await new Promise<void>((resolve, reject) => req.session.destroy(done(resolve, reject)));
          } else {
            data(req).views = Number(data(req).views) + 1;
            await new Promise<void>((resolve, reject) => req.session.save(done(resolve, reject)));
          }
        }
        res.send(`home of ${user}`);
      });
      const alice = cookieOf(await request(app).get('/login/alice'));
      expect((await request(app).get('/home').set('Cookie', alice)).text).toBe('home of alice');
      actAfter = 0;
      await sleep(400);
      expect((await request(app).get('/home').set('Cookie', alice)).headers['x-cache']).toBe('STALE');
      await sleep(300); // the background refresh has run
      expect((await request(app).get('/me').set('Cookie', alice)).text).toBe('me: alice 0');
    });
  }
});
