// Whose response is it? A response made from a session — redisSession's or express-session's, read or written by
// the handler or by middleware in front, created during the request or loaded — is never served to anyone else.
import { randomBytes } from 'node:crypto';
import { RedisStore as ConnectRedisStore } from 'connect-redis';
import type { Express, NextFunction, Request, Response } from 'express';
import session from 'express-session';
import { createClient } from 'redis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CacheResponseOptions, createCache, redisSession, SessionStore } from '../../lib/index.js';
import { redisUrl, silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';
import { cookieOf, sleep, stackApp } from './support.js';

const redis = useTestRedis('cache-sessions');
const secret = 'a-test-secret-that-is-long-enough-0001';
const newCache = () => createCache({ redis: redis.client(), prefix: uniquePrefix('sessions'), logger: silentLogger });
type Data = Record<string, unknown>;
const data = (req: Request) => req.session as unknown as Data;

/** A CSRF middleware as csurf-like packages work: it keeps a secret in the session, creating it when missing. */
function csrf(req: Request, _res: Response, next: NextFunction) {
  data(req).csrf ??= randomBytes(8).toString('hex');
  next();
}

describe('redisSession: a session created during the request', () => {
  const sessions = (options: { saveUninitialized?: boolean } = {}) =>
    redisSession({ secret, redis: redis.client(), prefix: uniquePrefix('s'), logger: silentLogger, ...options });

  it('perSession: a CSRF token written into a new session by middleware in front is never shared', async () => {
    const cache = newCache();
    const app = stackApp();
    app.use(sessions());
    app.use(csrf);
    app.get('/form', cache.response({ perSession: true }), (req, res) => void res.send(`token ${data(req).csrf}`));
    const first = await request(app).get('/form');
    const second = await request(app).get('/form');
    expect(second.text).not.toBe(first.text);
    // Each visitor's own entry still works once the visitor has a session.
    const cookie = cookieOf(first);
    const again = await request(app).get('/form').set('Cookie', cookie);
    expect(again.text).toBe(first.text);
  });

  it('perSession with saveUninitialized: the first visitor’s new session id is never served to the next', async () => {
    const cache = newCache();
    const app = stackApp();
    app.use(sessions({ saveUninitialized: true }));
    app.get('/whoami', cache.response({ perSession: true }), (req, res) => void res.send(`session ${req.sessionID}`));
    const first = await request(app).get('/whoami');
    const second = await request(app).get('/whoami');
    expect(second.text).not.toBe(first.text);
    expect(second.headers['x-cache']).not.toBe('HIT');
  });

  it('a response that read the session and is not stored says BYPASS, not MISS', async () => {
    const cache = newCache();
    const app = stackApp();
    app.use(sessions());
    app.get('/me', cache.response(), (req, res) => void res.send(`hello ${data(req).user ?? 'stranger'}`));
    for (let i = 0; i < 2; i++) expect((await request(app).get('/me')).headers['x-cache']).toBe('BYPASS');
  });

  it('perSession + staleWhileRevalidate: the background refresh renews the user’s own entry, and only it', async () => {
    const cache = newCache();
    let version = 1;
    const app = stackApp();
    app.use(sessions());
    app.get('/login/:user', (req, res) => {
      data(req).user = req.params.user;
      res.send('ok');
    });
    let renders = 0;
    app.get('/home', cache.response({ perSession: true, ttl: 300, staleWhileRevalidate: '1m' }), (req, res) => {
      renders++;
      res.send(`v${version} for ${data(req).user ?? 'stranger'}`);
    });
    const alice = cookieOf(await request(app).get('/login/alice'));
    expect((await request(app).get('/home').set('Cookie', alice)).text).toBe('v1 for alice');
    expect((await request(app).get('/home')).text).toBe('v1 for stranger');
    version = 2;
    await sleep(350);
    const stale = await request(app).get('/home').set('Cookie', alice);
    expect([stale.headers['x-cache'], stale.text]).toEqual(['STALE', 'v1 for alice']);
    await expect
      .poll(async () => (await request(app).get('/home').set('Cookie', alice)).text, { timeout: 3_000 })
      .toBe('v2 for alice');
    const rendersAfterRefresh = renders;
    const hit = await request(app).get('/home').set('Cookie', alice);
    expect([hit.headers['x-cache'], hit.text]).toEqual(['HIT', 'v2 for alice']);
    expect(renders).toBe(rendersAfterRefresh);
    // The anonymous entry was never written by alice's refresh.
    expect((await request(app).get('/home')).text).not.toContain('alice');
  });
});

describe.each([
  [
    'SessionStore',
    () => new SessionStore({ redis: redis.client(), prefix: `${uniquePrefix('es')}:`, logger: silentLogger }),
  ],
  ['connect-redis', () => new ConnectRedisStore({ client: nodeRedis, prefix: `${uniquePrefix('cr')}:` })],
])('express-session with %s in front', (_name, newStore) => {
  function expressSessionApp(cacheOptions: CacheResponseOptions, sessionOptions: Partial<session.SessionOptions> = {}) {
    const cache = newCache();
    const app: Express = stackApp();
    app.use(session({ store: newStore(), secret, resave: false, saveUninitialized: false, ...sessionOptions }));
    app.get('/login/:user', (req, res) => {
      data(req).user = req.params.user;
      res.send('ok');
    });
    app.get('/account', cache.response(cacheOptions), (req, res) => {
      res.send(`account of ${data(req).user ?? 'nobody'}`);
    });
    app.get('/whoami', cache.response(cacheOptions), (req, res) => void res.send(`session ${req.sessionID}`));
    app.get('/public', cache.response(cacheOptions), (_req, res) => void res.send('the same for everyone'));
    return app;
  }

  it('a page that read the session is never served to another user or an anonymous client', async () => {
    const app = expressSessionApp({});
    const alice = cookieOf(await request(app).get('/login/alice'));
    const bob = cookieOf(await request(app).get('/login/bob'));
    expect((await request(app).get('/account').set('Cookie', alice)).text).toBe('account of alice');
    expect((await request(app).get('/account').set('Cookie', bob)).text).toBe('account of bob');
    expect((await request(app).get('/account')).text).toBe('account of nobody');
    const anonymous = await request(app).get('/account');
    expect([anonymous.headers['x-cache'], anonymous.text]).toEqual(['BYPASS', 'account of nobody']);
    // Pages that never touch the session are shared as usual: stored from a visitor whose session holds nothing
    // (one holding data may have been read before the cache, by passport.session() say), served to everyone.
    expect((await request(app).get('/public').set('Cookie', alice)).headers['x-cache']).toBe('BYPASS');
    expect((await request(app).get('/public')).headers['x-cache']).toBe('MISS');
    expect((await request(app).get('/public').set('Cookie', bob)).headers['x-cache']).toBe('HIT');
    expect((await request(app).get('/public')).headers['x-cache']).toBe('HIT');
  });

  it('perSession: each session has its own entry, keyed by its id', async () => {
    const app = expressSessionApp({ perSession: true });
    const alice = cookieOf(await request(app).get('/login/alice'));
    const bob = cookieOf(await request(app).get('/login/bob'));
    expect((await request(app).get('/account').set('Cookie', alice)).text).toBe('account of alice');
    const again = await request(app).get('/account').set('Cookie', alice);
    expect([again.headers['x-cache'], again.text]).toEqual(['HIT', 'account of alice']);
    const bobs = await request(app).get('/account').set('Cookie', bob);
    expect([bobs.headers['x-cache'], bobs.text]).toEqual(['MISS', 'account of bob']);
    expect((await request(app).get('/account')).text).toBe('account of nobody');
  });

  it('perSession with saveUninitialized: a new session’s id is never served to the next visitor', async () => {
    const app = expressSessionApp({ perSession: true }, { saveUninitialized: true });
    const first = await request(app).get('/whoami');
    const second = await request(app).get('/whoami');
    expect(second.text).not.toBe(first.text);
  });
});

let nodeRedis: ReturnType<typeof createClient>;
beforeAll(async () => {
  nodeRedis = createClient({ url: redisUrl() });
  await nodeRedis.connect();
});
afterAll(async () => {
  await nodeRedis.quit();
});

describe('caches and sessions in any order', () => {
  it('an app-wide cache never stores what a route-level perSession cache answered from a session’s entry', async () => {
    const cache = newCache();
    const routeCache = newCache();
    const app = stackApp();
    app.use(redisSession({ secret, redis: redis.client(), prefix: uniquePrefix('s'), logger: silentLogger }));
    app.get('/login/:user', (req, res) => {
      data(req).user = req.params.user;
      res.send('ok');
    });
    app.use(cache.response({ ttl: '1m' }));
    for (const perSession of [routeCache.response({ perSession: true }), cache.response({ perSession: true })]) {
      const path = `/dash-${Math.random().toString(36).slice(2)}`;
      app.get(path, perSession, (req, res) => void res.send(`dashboard of ${data(req).user ?? 'nobody'}`));
      const ada = cookieOf(await request(app).get('/login/ada'));
      const bob = cookieOf(await request(app).get('/login/bob'));
      await request(app).get(path).set('Cookie', ada);
      const again = await request(app).get(path).set('Cookie', ada);
      expect(again.text).toBe('dashboard of ada');
      expect(again.headers['x-cache']).toBe('HIT');
      expect((await request(app).get(path).set('Cookie', bob)).text).toBe('dashboard of bob');
      expect((await request(app).get(path)).text).toBe('dashboard of nobody');
    }
  });

  it('a cache in front of express-session never stores a page that read the session', async () => {
    const cache = newCache();
    const app = stackApp();
    app.use(cache.response({ ttl: '1m' }));
    app.use(
      session({
        store: new SessionStore({ redis: redis.client(), prefix: `${uniquePrefix('es')}:`, logger: silentLogger }),
        secret,
        resave: false,
        saveUninitialized: false,
      }),
    );
    app.get('/login/:user', (req, res) => {
      data(req).user = req.params.user;
      res.send('ok');
    });
    app.get('/me', (req, res) => void res.send(`me: ${data(req).user ?? 'nobody'}`));
    const ada = cookieOf(await request(app).get('/login/ada'));
    const bob = cookieOf(await request(app).get('/login/bob'));
    expect((await request(app).get('/me').set('Cookie', ada)).text).toBe('me: ada');
    expect((await request(app).get('/me').set('Cookie', bob)).text).toBe('me: bob');
    expect((await request(app).get('/me')).text).toBe('me: nobody');
  });
});
