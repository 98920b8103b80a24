// What code written for express-session reaches for: req.sessionID, req.session.cookie ("remember me"),
// Partitioned cookies, genid, a session id in a header, and bodies merged into the session.
import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { redisSession } from '../../lib/index.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';
import { cookiePair, secret, sessionApp, setCookie } from './support.js';

const redis = useTestRedis('session-parity');
const day = 86_400_000;
const idOf = (pair: string) => decodeURIComponent(pair.split('=')[1]).split('.')[0];
const session = (options: Partial<Parameters<typeof redisSession>[0]> = {}) => {
  const prefix = uniquePrefix('parity');
  return {
    prefix,
    middleware: redisSession({ secret, redis: redis.client(), prefix, logger: silentLogger, ...options }),
  };
};

describe('express-session parity', () => {
  it('has req.sessionID, the id of req.session', async () => {
    const { middleware } = session();
    const app = sessionApp(middleware, undefined, (routes) => {
      routes.get('/ids', (req, res) => {
        (req.session as unknown as Record<string, unknown>).seen = true;
        res.json({ sessionID: req.sessionID, id: req.session.id });
      });
    });
    const first = await request(app).get('/ids').expect(200);
    expect(first.body.sessionID).toBe(first.body.id);
    expect(first.body.sessionID).toBe(idOf(cookiePair(first)));
    const again = await request(app).get('/ids').set('Cookie', cookiePair(first)).expect(200);
    expect(again.body.sessionID).toBe(first.body.sessionID);
  });

  it('gives a session its own lifetime through req.session.cookie.maxAge ("remember me"): cookie and server TTL', async () => {
    const { middleware, prefix } = session({ ttl: '1h', absoluteTimeout: '30d' });
    const app = sessionApp(middleware, undefined, (routes) => {
      routes.get('/remember', (req, res) => {
        (req.session as unknown as Record<string, unknown>).userId = 'ada';
        req.session.cookie.maxAge = 14 * day;
        res.json({ maxAge: req.session.cookie.maxAge, expires: req.session.cookie.expires });
      });
      routes.get('/forget', (req, res) => {
        req.session.cookie.expires = null;
        res.json({ maxAge: req.session.cookie.maxAge });
      });
    });
    const browserSession = await request(app).get('/set?a=1').expect(200);
    expect(setCookie(browserSession)).not.toMatch(/Max-Age/);

    const remembered = await request(app).get('/remember').expect(200);
    expect(remembered.body.maxAge).toBe(14 * day);
    expect(setCookie(remembered)).toMatch(/Max-Age=1209600;/);
    const key = `${prefix}:${idOf(cookiePair(remembered))}`;
    expect(await redis.client().pttl(key)).toBeGreaterThan(13 * day);
    // Every request refreshes the persistent cookie (rolling) and keeps the session's own idle timeout.
    const next = await request(app).get('/peek').set('Cookie', cookiePair(remembered)).expect(200);
    expect(setCookie(next)).toMatch(/Max-Age=1209600;/);
    expect(await redis.client().pttl(key)).toBeGreaterThan(13 * day);

    const forgotten = await request(app).get('/forget').set('Cookie', cookiePair(remembered)).expect(200);
    expect(forgotten.body.maxAge).toBeNull();
    expect(setCookie(forgotten)).toMatch(/^sid=[^;]+; Path=\//);
    expect(setCookie(forgotten)).not.toMatch(/Max-Age/);
    expect(await redis.client().pttl(key)).toBeLessThanOrEqual(3_600_000);
  });

  it('caps a session lifetime by the absolute timeout, on the server', async () => {
    const { middleware, prefix } = session({ ttl: '1h', absoluteTimeout: '2d' });
    const app = sessionApp(middleware, undefined, (routes) => {
      routes.get('/remember', (req, res) => {
        (req.session as unknown as Record<string, unknown>).userId = 'ada';
        req.session.cookie.maxAge = 30 * day;
        res.send('ok');
      });
    });
    const remembered = await request(app).get('/remember').expect(200);
    expect(await redis.client().pttl(`${prefix}:${idOf(cookiePair(remembered))}`)).toBeLessThanOrEqual(2 * day);
  });

  it('rejects a bad lifetime with a TypeError naming it', async () => {
    const { middleware } = session();
    const app = sessionApp(middleware, undefined, (routes) => {
      routes.get('/bad-lifetime', (req, res) => {
        try {
          req.session.cookie.maxAge = -5;
          res.send('accepted');
        } catch (error) {
          res.send((error as Error).message);
        }
      });
    });
    expect((await request(app).get('/bad-lifetime')).text).toMatch(/req\.session\.cookie\.maxAge is invalid: -5/);
  });

  it('sends Partitioned cookies when asked', async () => {
    const { middleware } = session({ cookie: { partitioned: true, secure: true, sameSite: 'none' } });
    const response = await request(sessionApp(middleware)).get('/set?a=1').expect(200);
    expect(setCookie(response)).toMatch(/; Partitioned/);
    expect(setCookie(response)).toMatch(/; Secure/);
  });

  it('makes ids with genid(req), signs them, and loads them back', async () => {
    let made = 0;
    const { middleware, prefix } = session({ genid: (req) => `${req.headers['x-tenant']}-${++made}-${'x'.repeat(8)}` });
    const app = sessionApp(middleware);
    const created = await request(app).get('/set?a=1').set('X-Tenant', 'acme').expect(200);
    const id = idOf(cookiePair(created));
    expect(id).toBe('acme-1-xxxxxxxx');
    expect(await redis.client().exists(`${prefix}:${id}`)).toBe(1);
    const read = await request(app).get('/peek').set('Cookie', cookiePair(created)).expect(200);
    expect(read.body.data).toEqual({ a: '1' });
    // A forged cookie for that id (another signature) opens nothing.
    const forged = `sid=${encodeURIComponent(`${id}.${'A'.repeat(43)}`)}`;
    expect((await request(app).get('/peek').set('Cookie', forged).expect(200)).body.data).toEqual({});
  });

  it('an id from genid that a cookie cannot carry is an error of the app, named', async () => {
    const { middleware } = session({ genid: () => 'has spaces and ;' });
    const app = sessionApp(middleware);
    const response = await request(app).get('/set?a=1').expect(500);
    expect(response.body.error).toMatch(/'genid' function returned "has spaces and ;"/);
  });

  it('carries the signed id in a header for API clients that send it (header option), never for browsers', async () => {
    const { middleware } = session({ header: 'X-Session-Id', cookie: { maxAge: '30d' } });
    const app = sessionApp(middleware, undefined, (routes) => {
      routes.get('/logout', async (req, res) => {
        await req.session.destroy();
        res.send('bye');
      });
    });
    // An API client asks for its first id with an empty header.
    const created = await request(app).get('/set?a=1').set('X-Session-Id', '').expect(200);
    const signed = created.headers['x-session-id'];
    expect(signed).toMatch(/^[\w-]{43}\.[\w-]{43}$/);
    const read = await request(app).get('/peek').set('X-Session-Id', signed).expect(200);
    expect(read.body.data).toEqual({ a: '1' });
    expect(read.headers['x-session-id']).toBe(signed); // the persistent cookie's refresh: the header with it
    // A browser (cookies only) never gets the id where its page scripts could read it.
    const browser = await request(app).get('/set?b=2').expect(200);
    expect(browser.headers['x-session-id']).toBeUndefined();
    const refreshed = await request(app).get('/peek').set('Cookie', cookiePair(browser)).expect(200);
    expect(setCookie(refreshed)).toBeDefined();
    expect(refreshed.headers['x-session-id']).toBeUndefined();
    // A forged header is a fresh session, never an error; logging out clears the header.
    const forged = await request(app)
      .get('/peek')
      .set('X-Session-Id', `${signed.slice(0, 44)}${'A'.repeat(43)}`);
    expect(forged.status).toBe(200);
    expect(forged.body.data).toEqual({});
    const logout = await request(app).get('/logout').set('X-Session-Id', signed).expect(200);
    expect(logout.headers['x-session-id']).toBe('');
  });

  it('keeps a session its own lifetime when a concurrent request saves it, and drops it on regenerate', async () => {
    const { middleware, prefix } = session({ ttl: '10s', absoluteTimeout: '30d' });
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const app = sessionApp(middleware, undefined, (routes) => {
      routes.get('/slow-write', async (req, res) => {
        await held; // loaded before the other request gives the session its lifetime
        (req.session as unknown as Record<string, unknown>).slow = true;
        res.send('slow');
      });
      routes.get('/remember', (req, res) => {
        req.session.cookie.maxAge = 14 * day;
        res.send('remembered');
      });
      routes.get('/forget-me', (req, res) => {
        req.session.cookie.maxAge = undefined as unknown as null; // as express-session code writes it
        res.send('forgotten');
      });
      routes.get('/relogin', async (req, res) => {
        await req.session.regenerate();
        (req.session as unknown as Record<string, unknown>).userId = 'ada';
        res.send('ok');
      });
    });
    const created = await request(app).get('/set?a=1');
    const cookie = cookiePair(created);
    const key = `${prefix}:${idOf(cookie)}`;
    const slow = request(app)
      .get('/slow-write')
      .set('Cookie', cookie)
      .then((r) => r.status);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await request(app).get('/remember').set('Cookie', cookie).expect(200);
    release();
    expect(await slow).toBe(200);
    expect(await redis.client().pttl(key)).toBeGreaterThan(13 * day);

    const relogged = await request(app).get('/relogin').set('Cookie', cookie).expect(200);
    expect(setCookie(relogged)).not.toMatch(/Max-Age/); // the new session has the configured (browser) cookie
    expect(await redis.client().pttl(`${prefix}:${idOf(cookiePair(relogged))}`)).toBeLessThanOrEqual(10_000);
    const forgotten = await request(app).get('/forget-me').set('Cookie', cookiePair(relogged)).expect(200);
    expect(forgotten.text).toBe('forgotten');
  });

  it('refuses a genid id that is already in use instead of merging into that session', async () => {
    const { middleware } = session({ genid: () => 'always-the-same-id' });
    const app = sessionApp(middleware);
    const owner = cookiePair(await request(app).get('/set?owner=first').expect(200));
    const second = await request(app).get('/set?intruder=yes');
    expect(second.status).toBe(503);
    // Refused, it names no session: no cookie goes with the 503.
    expect(second.headers['set-cookie'] ?? []).toEqual([]);
    const first = await request(app).get('/peek').set('Cookie', owner);
    expect(first.body.data).toMatchObject({ owner: 'first' });
    expect(first.body.data.intruder).toBeUndefined();
  });
});

describe('prototype safety', () => {
  it('ignores __proto__, constructor and prototype in Object.assign(req.session, req.body), keeping the rest', async () => {
    const { middleware } = session();
    const app = express();
    app.use(express.json());
    app.use(middleware);
    app.post('/profile', (req, res) => {
      Object.assign(req.session, req.body);
      const proto = Object.getPrototypeOf(req.session);
      res.json({
        polluted: (req.session as unknown as Record<string, unknown>).isAdmin === true,
        hasMethods: typeof proto.save === 'function' && typeof req.session.hasOwnProperty === 'function',
      });
    });
    app.get(
      '/peek',
      (req, res) => void res.json({ ...req.session, isAdmin: (req.session as never as { isAdmin?: unknown }).isAdmin }),
    );
    const body =
      '{"name":"ada","__proto__":{"isAdmin":true},"constructor":{"prototype":{"isAdmin":true}},"prototype":1}';
    const saved = await request(app).post('/profile').set('Content-Type', 'application/json').send(body).expect(200);
    expect(saved.body).toEqual({ polluted: false, hasMethods: true });
    const read = await request(app).get('/peek').set('Cookie', cookiePair(saved)).expect(200);
    expect(read.body).toEqual({ name: 'ada' });
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
  });
});
