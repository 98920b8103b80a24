import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisSession } from '../../lib/index.js';
import { signSessionId } from '../../lib/session/signature.js';
import { recordingLogger, silentLogger, useTestRedis, watchCommands } from '../support/redis.js';
import { cookiePair, secret, sessionApp, setCookie } from './support.js';

const redis = useTestRedis('session');
let counter = 0;
const middleware = (options: Partial<Parameters<typeof redisSession>[0]> = {}) =>
  redisSession({
    secret,
    redis: redis.client(),
    prefix: `${redis.prefix}:${++counter}`,
    logger: silentLogger,
    ...options,
  });
const idOf = (pair: string) => decodeURIComponent(pair.split('=')[1]).split('.')[0];

describe('redisSession() cookies and storage', () => {
  it('sets no cookie and stores nothing for a request that does not touch the session', async () => {
    const prefix = `${redis.prefix}:untouched`;
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix }));
    const response = await request(app).get('/peek').expect(200);
    expect(response.headers['set-cookie']).toBeUndefined();
    expect(await redis.client().keys(`${prefix}:*`)).toEqual([]);
  });

  it('issues a signed, HttpOnly, SameSite=Lax browser-session cookie when the session is first written', async () => {
    const app = sessionApp(middleware());
    const response = await request(app).get('/set?name=ada').expect(200);
    const header = setCookie(response) as string;
    expect(header).toMatch(/^sid=[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}; /);
    expect(header).toMatch(/; HttpOnly/);
    expect(header).toMatch(/; SameSite=Lax/);
    expect(header).toMatch(/; Path=\//);
    expect(header).not.toMatch(/Secure|Expires|Max-Age/);
    const id = idOf(cookiePair(response));
    expect(id).toBe(response.body.id);

    const again = await request(app).get('/').set('Cookie', cookiePair(response)).expect(200);
    expect(again.body).toEqual({ id, data: { name: 'ada' } });
    expect(again.headers['set-cookie']).toBeUndefined();
  });

  it('stores session:<id> with a TTL equal to the idle timeout', async () => {
    const prefix = `${redis.prefix}:layout`;
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix, ttl: '2h' }));
    const response = await request(app).get('/set?name=ada');
    const id = idOf(cookiePair(response));
    const ttl = await redis.client().pttl(`${prefix}:${id}`);
    expect(ttl).toBeGreaterThan(7_100_000);
    expect(ttl).toBeLessThanOrEqual(7_200_000);
  });

  it('marks the cookie Secure when the request is secure (trust proxy honoured)', async () => {
    const app = sessionApp(middleware(), (a) => a.set('trust proxy', 1));
    const response = await request(app).get('/set?a=1').set('X-Forwarded-Proto', 'https');
    expect(setCookie(response)).toMatch(/; Secure/);
  });

  it('sends a persistent cookie with cookie.maxAge, refreshed on every request while rolling', async () => {
    const app = sessionApp(middleware({ cookie: { maxAge: '1h' } }));
    const first = await request(app).get('/set?a=1');
    expect(setCookie(first)).toMatch(/Max-Age=3600/);
    expect(setCookie(first)).toMatch(/Expires=/);
    const read = await request(app).get('/peek').set('Cookie', cookiePair(first));
    expect(setCookie(read)).toMatch(/Max-Age=3600/);

    const notRolling = sessionApp(middleware({ cookie: { maxAge: '1h' }, rolling: false }));
    const created = await request(notRolling).get('/set?a=1');
    const readOnly = await request(notRolling).get('/peek').set('Cookie', cookiePair(created));
    expect(readOnly.headers['set-cookie']).toBeUndefined();
  });

  it('verifies cookies signed with any listed secret and signs new ones with the first (rotation)', async () => {
    const oldSecret = 'the-old-secret-that-is-long-enough-0002';
    const prefix = `${redis.prefix}:rotation`;
    const before = sessionApp(redisSession({ secret: oldSecret, redis: redis.client(), prefix }));
    const response = await request(before).get('/set?name=ada');
    const after = sessionApp(redisSession({ secret: [secret, oldSecret], redis: redis.client(), prefix }));
    const read = await request(after).get('/peek').set('Cookie', cookiePair(response));
    expect(read.body.data).toEqual({ name: 'ada' });
    const fresh = await request(after).get('/set?x=1');
    expect(decodeURIComponent(cookiePair(fresh).split('=')[1])).toBe(signSessionId(fresh.body.id, secret));
  });
});

describe('redisSession() hostile cookies', () => {
  it('gives a fresh empty session, never an error or another session, for every malformed cookie', async () => {
    const app = sessionApp(middleware());
    const victim = await request(app).get('/set?secret=victim-data');
    const pair = cookiePair(victim);
    const value = decodeURIComponent(pair.split('=')[1]);
    const [id, signature] = value.split('.');
    const forged = [
      `sid=${id}`, // unsigned
      `sid=${id}.${'A'.repeat(43)}`, // forged signature
      `sid=${id}.${signature.slice(0, 20)}`, // truncated
      `sid=${id.slice(0, 42)}x.${signature}`, // tampered id
      `sid=${signSessionId(id, 'some-other-secret-that-is-long-enough')}`, // another key
      `sid=${'x'.repeat(6_000)}`, // oversized
      'sid=%E0%A4%A', // bad percent-encoding
      'sid=', // empty
      'sid', // no value
      '=;;; sid==;', // junk
      `sid=${id}.${signature}x`, // trailing garbage
      `sid=${encodeURIComponent(`${id}.${signature}`).replace('.', '%00')}`, // NUL
    ];
    for (const cookie of forged) {
      const response = await request(app).get('/').set('Cookie', cookie);
      expect(response.status, cookie).toBe(200);
      expect(response.body.data, cookie).toEqual({});
      expect(response.body.id, cookie).not.toBe(id);
    }
    // Duplicated cookies: the first one counts; a forged first one never yields the victim's data.
    const duplicated = await request(app)
      .get('/')
      .set('Cookie', `sid=${id}.${'B'.repeat(43)}; ${pair}`);
    expect(duplicated.body.data).toEqual({});
    const validFirst = await request(app).get('/').set('Cookie', `${pair}; sid=garbage`);
    expect(validFirst.body.data).toEqual({ secret: 'victim-data' });
  });

  it('gives a fresh session for a validly signed id the server never stored (expired or unknown)', async () => {
    const app = sessionApp(middleware());
    const unknown = signSessionId('A'.repeat(43), secret);
    const response = await request(app).get('/').set('Cookie', `sid=${unknown}`).expect(200);
    expect(response.body.data).toEqual({});
    expect(response.body.id).not.toBe('A'.repeat(43));
  });
});

describe('redisSession() Redis cost', () => {
  let client: Redis;
  let watch: Awaited<ReturnType<typeof watchCommands>>;
  beforeAll(async () => {
    client = redis.newClient();
    watch = await watchCommands(client);
  });
  afterAll(() => watch.stop());

  it('costs zero commands without a cookie, and one round trip (no data rewritten) for an unchanged session', async () => {
    const app = sessionApp(redisSession({ secret, redis: client, prefix: `${redis.prefix}:cost` }));
    await request(app).get('/peek');
    const created = await request(app).get('/set?name=ada&role=admin');
    await watch.settle();
    watch.reset();
    await request(app).get('/peek');
    await watch.settle();
    expect(watch.sent).toEqual([]);

    await request(app).get('/peek').set('Cookie', cookiePair(created)); // may load the script once
    await watch.settle();
    watch.reset();
    for (let i = 0; i < 5; i++) {
      const response = await request(app).get('/peek').set('Cookie', cookiePair(created));
      expect(response.headers['set-cookie']).toBeUndefined();
    }
    await watch.settle();
    expect(watch.sent.map((args) => args[0].toLowerCase())).toEqual(Array(5).fill('evalsha'));
    // Inside the script: nothing in the hash is rewritten; only the TTL is extended.
    const inside = watch.insideScripts.map((args) => args[0].toLowerCase());
    expect(inside.filter((name) => /^(hset|set|hdel|del)$/.test(name))).toEqual([]);
    expect(inside.filter((name) => name === 'pexpire')).toHaveLength(5);
  });

  it('rewrites the stored last-seen time only once it is older than its resolution (a tenth of ttl)', async () => {
    const prefix = `${redis.prefix}:last-seen`;
    const app = sessionApp(redisSession({ secret, redis: client, prefix, ttl: '2s' }));
    const created = await request(app).get('/set?a=1');
    const key = `${prefix}:${idOf(cookiePair(created))}`;
    const stored = await redis.client().hget(key, '_s');
    await request(app).get('/peek').set('Cookie', cookiePair(created));
    expect(await redis.client().hget(key, '_s')).toBe(stored);
    await new Promise((resolve) => setTimeout(resolve, 250));
    await request(app).get('/peek').set('Cookie', cookiePair(created));
    expect(Number(await redis.client().hget(key, '_s'))).toBeGreaterThanOrEqual(Number(stored) + 200);
    expect(await redis.client().pttl(key)).toBeGreaterThan(1_900);
  });

  it('writes only the changed fields on a change, in one round trip', async () => {
    const app = sessionApp(redisSession({ secret, redis: client, prefix: `${redis.prefix}:cost-write` }));
    const created = await request(app).get('/set?a=1&b=2');
    await request(app).get('/count').set('Cookie', cookiePair(created));
    await watch.settle();
    watch.reset();
    await request(app).get('/count').set('Cookie', cookiePair(created));
    await watch.settle();
    expect(watch.sent.map((args) => args[0].toLowerCase())).toEqual(['evalsha', 'evalsha']);
    const hset = watch.insideScripts.filter((args) => args[0].toLowerCase() === 'hset').at(-1) as string[];
    expect(hset.slice(2)).toEqual(['_s', expect.any(String), 'd:count', '2']);
  });
  it('removes a deleted field (and one set to undefined) from Redis, keeping the others', async () => {
    const prefix = `${redis.prefix}:remove-field`;
    const app = sessionApp(redisSession({ secret, redis: client, prefix }), undefined, (routes) => {
      routes.get('/clear-b', (req, res) => {
        (req.session as unknown as Record<string, unknown>).b = undefined;
        res.send('ok');
      });
    });
    const created = await request(app).get('/set?a=1&b=2&c=3');
    const key = `${prefix}:${idOf(cookiePair(created))}`;
    await request(app).get('/unset/a').set('Cookie', cookiePair(created)).expect(200);
    expect(await client.hkeys(key)).toEqual(expect.not.arrayContaining(['d:a']));
    await request(app).get('/clear-b').set('Cookie', cookiePair(created)).expect(200);
    expect((await client.hkeys(key)).filter((field) => field.startsWith('d:'))).toEqual(['d:c']);
    expect((await request(app).get('/peek').set('Cookie', cookiePair(created))).body.data).toEqual({ c: '3' });
  });
});

describe('redisSession() concurrency', () => {
  it('keeps both changes when concurrent requests change different fields; the same field: last writer wins', async () => {
    let release: () => void = () => {};
    let started: () => void = () => {};
    const inHandler = new Promise<void>((resolve) => {
      started = resolve;
    });
    const app = sessionApp(middleware(), undefined, (a) =>
      a.get('/slow-set', async (req, res) => {
        Object.assign(req.session, { slow: 'kept', same: 'slow-writer' });
        started();
        await new Promise<void>((resolve) => {
          release = resolve;
        });
        res.send('ok');
      }),
    );
    const cookie = cookiePair(await request(app).get('/set?base=1'));
    const slow = request(app)
      .get('/slow-set')
      .set('Cookie', cookie)
      .then((r) => r);
    await inHandler;
    await request(app).get('/set?fast=kept&same=fast-writer').set('Cookie', cookie);
    release();
    await slow;
    const final = await request(app).get('/peek').set('Cookie', cookie);
    expect(final.body.data).toEqual({ base: '1', slow: 'kept', fast: 'kept', same: 'slow-writer' });
  });

  it('never resurrects a session destroyed while another request on it was in flight', async () => {
    const prefix = `${redis.prefix}:resurrect`;
    let release: () => void = () => {};
    let started: () => void = () => {};
    const inHandler = new Promise<void>((resolve) => {
      started = resolve;
    });
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix }), undefined, (a) =>
      a.get('/slow-write', async (req, res) => {
        (req.session as unknown as Record<string, unknown>).late = 'write';
        started();
        await new Promise<void>((resolve) => {
          release = resolve;
        });
        res.send('ok');
      }),
    );
    const created = await request(app).get('/set?user=u1');
    const cookie = cookiePair(created);
    const id = idOf(cookie);
    const slow = request(app)
      .get('/slow-write')
      .set('Cookie', cookie)
      .then((r) => r);
    await inHandler;
    const logout = await request(app).get('/logout').set('Cookie', cookie).expect(302);
    expect(setCookie(logout)).toMatch(/Expires=Thu, 01 Jan 1970/);
    release();
    await slow;
    expect(await redis.client().exists(`${prefix}:${id}`)).toBe(0);
    const after = await request(app).get('/peek').set('Cookie', cookie);
    expect(after.body.data).toEqual({});
  });

  it('commits the change before the response is sent, so a redirect never beats the write', async () => {
    const prefix = `${redis.prefix}:redirect`;
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix }));
    const response = await request(app).get('/redirect-after-write').expect(302);
    const id = idOf(cookiePair(response));
    expect(await redis.client().hget(`${prefix}:${id}`, 'd:written')).toBe('"before-redirect"');
  });
});

describe('redisSession() timeouts', () => {
  it('expires an idle session on the server, and rolling requests keep an active one alive', async () => {
    const app = sessionApp(middleware({ ttl: '400ms' }));
    const created = await request(app).get('/set?a=1');
    const cookie = cookiePair(created);
    for (let i = 0; i < 4; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect((await request(app).get('/peek').set('Cookie', cookie)).body.data).toEqual({ a: '1' });
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await request(app).get('/peek').set('Cookie', cookie)).body.data).toEqual({});
  });

  it('enforces the idle timeout from the stored last-seen time, not only the key TTL', async () => {
    const prefix = `${redis.prefix}:idle-stamp`;
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix, ttl: '1h' }));
    const created = await request(app).get('/set?a=1');
    const id = idOf(cookiePair(created));
    await redis.client().hset(`${prefix}:${id}`, '_s', Date.now() - 2 * 3_600_000);
    expect((await request(app).get('/peek').set('Cookie', cookiePair(created))).body.data).toEqual({});
    expect(await redis.client().exists(`${prefix}:${id}`)).toBe(0);
  });

  it('enforces the absolute timeout from the stored creation time even for an active session', async () => {
    const prefix = `${redis.prefix}:absolute`;
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix, absoluteTimeout: '1d' }));
    const created = await request(app).get('/set?a=1');
    const id = idOf(cookiePair(created));
    await redis.client().hset(`${prefix}:${id}`, '_c', Date.now() - 2 * 86_400_000);
    expect((await request(app).get('/peek').set('Cookie', cookiePair(created))).body.data).toEqual({});
    // A key's TTL never outlives the absolute timeout either.
    const fresh = await request(app).get('/set?b=1');
    expect(await redis.client().pttl(`${prefix}:${idOf(cookiePair(fresh))}`)).toBeLessThanOrEqual(86_400_000);
  });

  it('with rolling: false, only writes extend the idle timeout', async () => {
    const prefix = `${redis.prefix}:not-rolling`;
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix, ttl: '1h', rolling: false }));
    const created = await request(app).get('/set?a=1');
    const key = `${prefix}:${idOf(cookiePair(created))}`;
    await redis.client().pexpire(key, 60_000);
    await request(app).get('/peek').set('Cookie', cookiePair(created));
    expect(await redis.client().pttl(key)).toBeLessThanOrEqual(60_000);
    await request(app).get('/set?b=2').set('Cookie', cookiePair(created));
    expect(await redis.client().pttl(key)).toBeGreaterThan(3_500_000);
  });
});

describe('req.session methods', () => {
  it('regenerate() moves to a new id, deletes the old key and drops data unless keepData', async () => {
    const prefix = `${redis.prefix}:regenerate`;
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix }));
    const anonymous = await request(app).get('/set?cart=3');
    const oldId = idOf(cookiePair(anonymous));
    const login = await request(app).get('/login/u1').set('Cookie', cookiePair(anonymous)).expect(302);
    const newId = idOf(cookiePair(login));
    expect(newId).not.toBe(oldId);
    expect(await redis.client().exists(`${prefix}:${oldId}`)).toBe(0);
    const me = await request(app).get('/peek').set('Cookie', cookiePair(login));
    expect(me.body.data).toEqual({ userId: 'u1' });
    // The old cookie no longer opens anything.
    expect((await request(app).get('/peek').set('Cookie', cookiePair(anonymous))).body.data).toEqual({});

    const kept = await request(app).get('/regenerate-keep').set('Cookie', cookiePair(login));
    expect(idOf(cookiePair(kept))).not.toBe(newId);
    expect((await request(app).get('/peek').set('Cookie', cookiePair(kept))).body.data).toEqual({ userId: 'u1' });
  });

  it('destroy() deletes the key and sends an expired cookie', async () => {
    const prefix = `${redis.prefix}:destroy`;
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix }));
    const created = await request(app).get('/set?a=1');
    const id = idOf(cookiePair(created));
    const logout = await request(app).get('/logout').set('Cookie', cookiePair(created)).expect(302);
    expect(setCookie(logout)).toMatch(/^sid=; /);
    expect(setCookie(logout)).toMatch(/Expires=Thu, 01 Jan 1970 00:00:00 GMT/);
    expect(await redis.client().exists(`${prefix}:${id}`)).toBe(0);
  });

  it('puts the Set-Cookie in headers sent before the end (res.write, res.writeHead): new, regenerated, destroyed', async () => {
    const prefix = `${redis.prefix}:streamed`;
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix }), undefined, (routes) => {
      routes.get('/stream-set', (req, res) => {
        (req.session as unknown as Record<string, unknown>).a = 1;
        res.write('streamed ');
        res.end('body');
      });
      routes.get('/stream-login', async (req, res) => {
        await req.session.regenerate();
        (req.session as unknown as Record<string, unknown>).userId = 'u1';
        res.write('streamed ');
        res.end('body');
      });
      routes.get('/head-logout', async (req, res) => {
        await req.session.destroy();
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end('bye');
      });
    });
    const created = await request(app).get('/stream-set').expect(200);
    const firstId = idOf(cookiePair(created));
    expect(await redis.client().hget(`${prefix}:${firstId}`, 'd:a')).toBe('1');

    const login = await request(app).get('/stream-login').set('Cookie', cookiePair(created)).expect(200);
    expect(login.text).toBe('streamed body');
    const loggedInId = idOf(cookiePair(login));
    expect(loggedInId).not.toBe(firstId);
    expect(await redis.client().exists(`${prefix}:${firstId}`)).toBe(0);
    expect((await request(app).get('/peek').set('Cookie', cookiePair(login))).body.data).toEqual({ userId: 'u1' });

    const logout = await request(app).get('/head-logout').set('Cookie', cookiePair(login)).expect(200);
    expect(setCookie(logout)).toMatch(/^sid=; /);
    expect(await redis.client().exists(`${prefix}:${loggedInId}`)).toBe(0);
  });

  it('puts the Set-Cookie in streamed headers when reload() finds the session gone and new data is saved', async () => {
    const prefix = `${redis.prefix}:reload-gone`;
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix }), undefined, (routes) => {
      routes.get('/expire-then-stream', async (req, res) => {
        await redis.client().del(`${prefix}:${req.session.id}`);
        await req.session.reload();
        (req.session as unknown as Record<string, unknown>).again = 'yes';
        res.write('streamed ');
        res.end('body');
      });
    });
    const created = await request(app).get('/set?a=1');
    const firstId = idOf(cookiePair(created));
    const streamed = await request(app).get('/expire-then-stream').set('Cookie', cookiePair(created)).expect(200);
    expect(streamed.text).toBe('streamed body');
    const newId = idOf(cookiePair(streamed));
    expect(newId).not.toBe(firstId);
    expect((await request(app).get('/peek').set('Cookie', cookiePair(streamed))).body.data).toEqual({ again: 'yes' });
  });

  it('leaves the response alone on a request that only reads plain values, unless a persistent cookie is refreshed', async () => {
    const hooksOf = (res: object) => ({ end: Object.hasOwn(res, 'end'), writeHead: Object.hasOwn(res, 'writeHead') });
    const appWith = (maxAge?: string) => {
      const prefix = `${redis.prefix}:unhooked-${maxAge ?? 'browser'}`;
      const options = { secret, redis: redis.client(), prefix, ...(maxAge ? { cookie: { maxAge } } : {}) };
      return sessionApp(redisSession(options), undefined, (routes) => {
        routes.get('/hooks/seed', (req, res) => {
          Object.assign(req.session, { a: '1', nested: { k: 'v' } });
          res.send('ok');
        });
        routes.get('/hooks/untouched', (_req, res) => {
          res.json(hooksOf(res));
        });
        routes.get('/hooks/read-plain', (req, res) => {
          const session = req.session as unknown as Record<string, unknown>;
          res.json({ a: session.a, id: req.session.id, has: 'a' in session, ...hooksOf(res) });
        });
        routes.get('/hooks/read-object', (req, res) => {
          const nested = (req.session as unknown as Record<string, unknown>).nested;
          res.json({ nested, ...hooksOf(res) });
        });
        routes.get('/hooks/write', (req, res) => {
          (req.session as unknown as Record<string, unknown>).b = 'x';
          res.json(hooksOf(res));
        });
      });
    };
    const browserCookie = appWith();
    const created = await request(browserCookie).get('/hooks/seed');
    const login = cookiePair(created);
    const untouched = await request(browserCookie).get('/hooks/untouched').set('Cookie', login);
    expect(untouched.body).toEqual({ end: false, writeHead: false });
    const plain = await request(browserCookie).get('/hooks/read-plain').set('Cookie', login);
    expect(plain.body).toMatchObject({ a: '1', has: true, end: false, writeHead: false });
    expect(setCookie(plain)).toBeUndefined();
    // A new session that is not changed owes nothing either.
    const anonymous = await request(browserCookie).get('/hooks/read-plain');
    expect(anonymous.body).toMatchObject({ end: false, writeHead: false });
    expect(setCookie(anonymous)).toBeUndefined();
    // An object handed out may be changed in place: the end is held from then on.
    const object = await request(browserCookie).get('/hooks/read-object').set('Cookie', login);
    expect(object.body).toEqual({ nested: { k: 'v' }, end: true, writeHead: false });
    // A loaded session owes no cookie when changed; a new one will (it may be saved mid-stream).
    expect((await request(browserCookie).get('/hooks/write').set('Cookie', login)).body).toEqual({
      end: true,
      writeHead: false,
    });
    expect((await request(browserCookie).get('/hooks/write')).body).toEqual({ end: true, writeHead: true });

    const persistent = appWith('1h');
    const createdPersistent = await request(persistent).get('/set?a=1');
    const refreshed = await request(persistent).get('/hooks/untouched').set('Cookie', cookiePair(createdPersistent));
    expect(refreshed.body).toEqual({ end: false, writeHead: true });
    expect(setCookie(refreshed)).toMatch(/Max-Age=3600/);
  });

  it('saves a change made by any route into the session: in place, assigned, defined, deleted or found by listing', async () => {
    const prefix = `${redis.prefix}:change-paths`;
    type Cart = { items: string[] };
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix }), undefined, (routes) => {
      routes.get('/change/seed', (req, res) => {
        (req.session as unknown as { cart: Cart }).cart = { items: ['first'] };
        res.send('ok');
      });
      routes.get('/change/in-place', (req, res) => {
        (req.session as unknown as { cart: Cart }).cart.items.push('in-place');
        res.send('ok');
      });
      routes.get('/change/via-values', (req, res) => {
        for (const value of Object.values(req.session))
          if (Array.isArray((value as Cart).items)) (value as Cart).items.push('values');
        res.send('ok');
      });
      routes.get('/change/via-descriptor', (req, res) => {
        const cart = Object.getOwnPropertyDescriptor(req.session, 'cart') as { value: Cart };
        cart.value.items.push('descriptor');
        res.send('ok');
      });
      routes.get('/change/assign', (req, res) => {
        Object.assign(req.session, { assigned: 1 });
        res.send('ok');
      });
      routes.get('/change/define', (req, res) => {
        Object.defineProperty(req.session, 'defined', {
          value: 2,
          enumerable: true,
          writable: true,
          configurable: true,
        });
        res.send('ok');
      });
      routes.get('/change/delete', (req, res) => {
        delete (req.session as unknown as Record<string, unknown>).assigned;
        res.send('ok');
      });
      routes.get('/change/methods-through-session', async (req, res) => {
        const { save } = req.session;
        (req.session as unknown as Record<string, unknown>).saved = 'explicitly';
        await save.call(req.session);
        res.json({ id: req.session.id });
      });
    });
    const created = await request(app).get('/change/seed');
    const login = cookiePair(created);
    for (const path of ['in-place', 'via-values', 'via-descriptor', 'assign', 'define']) {
      await request(app).get(`/change/${path}`).set('Cookie', login).expect(200);
    }
    expect((await request(app).get('/peek').set('Cookie', login)).body.data).toEqual({
      cart: { items: ['first', 'in-place', 'values', 'descriptor'] },
      assigned: 1,
      defined: 2,
    });
    await request(app).get('/change/delete').set('Cookie', login).expect(200);
    const saved = await request(app).get('/change/methods-through-session').set('Cookie', login).expect(200);
    expect(saved.body.id).toBe(idOf(login));
    expect((await request(app).get('/peek').set('Cookie', login)).body.data).toEqual({
      cart: { items: ['first', 'in-place', 'values', 'descriptor'] },
      defined: 2,
      saved: 'explicitly',
    });
  });

  it('save() writes immediately and reload() reads back what Redis holds; touch() extends the TTL', async () => {
    const prefix = `${redis.prefix}:methods`;
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix, ttl: '1h' }));
    const created = await request(app).get('/set?a=1');
    const response = await request(app).get('/save-then-reload').set('Cookie', cookiePair(created));
    expect(response.body.data).toEqual({ a: '1', saved: 'yes' });
    const key = `${prefix}:${idOf(cookiePair(created))}`;
    await redis.client().pexpire(key, 10_000);
    await request(app).get('/touch').set('Cookie', cookiePair(created));
    expect(await redis.client().pttl(key)).toBeGreaterThan(3_500_000);
  });

  it('answers express-session style callbacks (passport calls regenerate(cb), then save(cb))', async () => {
    const prefix = `${redis.prefix}:callbacks`;
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix }), undefined, (routes) => {
      routes.get('/passport-login', (req, res, next) => {
        const returned = req.session.regenerate((error) => {
          if (error) return next(error);
          (req.session as unknown as Record<string, unknown>).passport = { user: 'ada' };
          req.session.save((error) => (error ? next(error) : res.json({ returned: String(returned) })));
        });
      });
      routes.get('/callbacks', (req, res, next) => {
        req.session.touch((error) => {
          if (error) return next(error);
          req.session.reload((error) => {
            if (error) return next(error);
            req.session.destroy((error) => (error ? next(error) : res.json({ data: { ...req.session } })));
          });
        });
      });
    });
    const before = await request(app).get('/set?a=1');
    const login = await request(app).get('/passport-login').set('Cookie', cookiePair(before)).expect(200);
    expect(login.body.returned).toBe('undefined');
    expect(idOf(cookiePair(login))).not.toBe(idOf(cookiePair(before)));
    expect(await redis.client().exists(`${prefix}:${idOf(cookiePair(before))}`)).toBe(0);
    const key = `${prefix}:${idOf(cookiePair(login))}`;
    expect(await redis.client().hget(key, 'd:passport')).toBe('{"user":"ada"}');
    const destroyed = await request(app).get('/callbacks').set('Cookie', cookiePair(login)).expect(200);
    expect(destroyed.body.data).toEqual({});
    expect(setCookie(destroyed)).toMatch(/Expires=Thu, 01 Jan 1970/);
    expect(await redis.client().exists(key)).toBe(0);
  });

  it('passes a failed save to its callback', async () => {
    const client = redis.newClient();
    const saveErrors: (Error | undefined)[] = [];
    const app = sessionApp(redisSession({ secret, redis: client, logger: silentLogger }), undefined, (routes) => {
      routes.get('/save-without-redis', (req, res) => {
        (req.session as unknown as Record<string, unknown>).a = 1;
        client.disconnect();
        req.session.save((error) => {
          saveErrors.push(error);
          res.send('after the save');
        });
      });
    });
    // The response's own save then fails as well: 503, as for any save that fails.
    await request(app).get('/save-without-redis').expect(503);
    expect(saveErrors).toEqual([expect.any(Error)]);
  });

  it('saves the other fields and reports a field JSON cannot hold (cycle, BigInt), never failing the response', async () => {
    const prefix = `${redis.prefix}:unstorable`;
    const logger = recordingLogger();
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix, logger }), undefined, (routes) => {
      routes.get('/cycle', (req, res) => {
        const cyclic: Record<string, unknown> = {};
        cyclic.self = cyclic;
        Object.assign(req.session, { good: 'kept', cyclic, big: 1n });
        Object.defineProperty(req.session, 'getter', {
          enumerable: true,
          get() {
            throw new Error('getter failed');
          },
        });
        res.write('streamed ');
        res.end('end');
      });
      routes.get('/save-cycle', async (req, res) => {
        const cyclic: Record<string, unknown> = {};
        cyclic.self = cyclic;
        (req.session as unknown as Record<string, unknown>).cyclic = cyclic;
        res.json({
          error: await req.session.save().then(
            () => 'none',
            (error: Error) => error.message,
          ),
        });
      });
    });
    const response = await request(app).get('/cycle').expect(200, 'streamed end');
    expect((await request(app).get('/peek').set('Cookie', cookiePair(response))).body.data).toEqual({ good: 'kept' });
    expect(logger.errors.join('\n')).toMatch(/"cyclic" \(Converting circular structure/);
    expect(logger.errors.join('\n')).toMatch(/"big" \(Do not know how to serialize a BigInt/);
    expect(logger.errors.join('\n')).toMatch(/"getter" \(getter failed\)/);
    const saved = await request(app).get('/save-cycle').set('Cookie', cookiePair(response)).expect(200);
    expect(saved.body.error).toMatch(/session fields cannot be stored as JSON.*"cyclic"/);
  });

  it('a second res.end() while the first waits for the save neither overtakes the save nor replaces the body', async () => {
    const prefix = `${redis.prefix}:double-end`;
    const app = sessionApp(redisSession({ secret, redis: redis.client(), prefix }), undefined, (routes) => {
      routes.get('/double-end', (req, res) => {
        (req.session as unknown as Record<string, unknown>).written = 'yes';
        res.end('first');
        res.end('second');
      });
    });
    const response = await request(app).get('/double-end').expect(200);
    expect(response.text).toBe('first');
    const key = `${prefix}:${idOf(cookiePair(response))}`;
    expect(await redis.client().hget(key, 'd:written')).toBe('"yes"');
  });

  it('has a read-only id: assigning it, directly or with Object.assign, changes nothing and fails nothing', async () => {
    const app = sessionApp(middleware(), undefined, (a) => {
      a.get('/assign-id', (req, res) => {
        const before = req.session.id;
        (req.session as unknown as { id: string }).id = 'mine';
        Object.assign(req.session, { id: 'also-mine', cart: 2 });
        res.json({ kept: req.session.id === before, cart: (req.session as unknown as { cart?: number }).cart });
      });
    });
    const response = await request(app).get('/assign-id').expect(200);
    expect(response.body).toEqual({ kept: true, cart: 2 });
    const read = await request(app).get('/').set('Cookie', cookiePair(response)).expect(200);
    expect(read.body.id).toBe(idOf(cookiePair(response)));
    expect(read.body.data).toEqual({ cart: 2 });
  });
});

describe('log out everywhere', () => {
  it('lists a user’s sessions and destroys them all, leaving other users alone', async () => {
    const prefix = `${redis.prefix}:by-user`;
    const session = redisSession({ secret, redis: redis.client(), prefix });
    const app = sessionApp(session);
    const laptop = cookiePair(await request(app).get('/login/u1'));
    const phone = cookiePair(await request(app).get('/login/u1'));
    const other = cookiePair(await request(app).get('/login/u2'));

    const listed = await session.listByUser('u1');
    expect(listed.map((s) => s.id).sort()).toEqual([idOf(laptop), idOf(phone)].sort());
    for (const entry of listed) {
      expect(entry.createdAt).toBeInstanceOf(Date);
      expect(entry.lastSeenAt.getTime()).toBeGreaterThanOrEqual(entry.createdAt.getTime());
    }
    expect(await redis.client().pttl(`${prefix}:user:u1`)).toBeGreaterThan(0);

    // Logging out one device removes it from the index.
    await request(app).get('/logout').set('Cookie', phone);
    expect((await session.listByUser('u1')).map((s) => s.id)).toEqual([idOf(laptop)]);

    expect(await session.destroyByUser('u1')).toBe(1);
    expect((await request(app).get('/peek').set('Cookie', laptop)).body.data).toEqual({});
    expect((await request(app).get('/peek').set('Cookie', other)).body.data).toEqual({ userId: 'u2' });
    expect(await session.listByUser('u1')).toEqual([]);
  });
});

describe('redisSession() options', () => {
  it('listByUser() and destroyByUser() reject a missing, empty or non-scalar user id with a TypeError', async () => {
    const sessions = redisSession({ secret, redis: redis.client(), prefix: `${redis.prefix}:bad-user` });
    await expect(sessions.listByUser(undefined as never)).rejects.toThrow(
      /listByUser\(\): userId is invalid: undefined/,
    );
    await expect(sessions.listByUser({} as never)).rejects.toThrow(/listByUser\(\): userId is invalid: object/);
    await expect(sessions.destroyByUser('')).rejects.toThrow(/destroyByUser\(\): userId is invalid: ""/);
    expect(await sessions.listByUser(7)).toEqual([]);
  });

  it('rejects a missing or short secret and unknown options, naming the option', () => {
    expect(() => redisSession({} as never)).toThrow(/redisSession: option "secret" is invalid/);
    expect(() => redisSession({ secret: 'short' })).toThrow(
      /option "secret" is invalid: a string of 5 characters \(not shown\)/,
    );
    expect(() => redisSession({ secret: [secret, 'short'] })).toThrow(/option "secret.1" is invalid/);
    expect(() => redisSession({ secret, ttl: 'forever' })).toThrow(/option "ttl" is invalid: "forever"/);
    expect(() => redisSession({ secret, cookie: { sameSite: 'sometimes' as never } })).toThrow(
      /option "cookie.sameSite"/,
    );
    expect(() => redisSession({ secret, resave: true } as never)).toThrow(/unknown option "resave"/);
    // Checked once here, so that issuing the cookie can never throw inside a response.
    expect(() => redisSession({ secret, cookie: { domain: 'bad domain;' } })).toThrow(/option "cookie.domain"/);
    expect(() => redisSession({ secret, cookie: { path: '/a;b' } })).toThrow(/option "cookie.path" is invalid/);
    expect(() => redisSession({ secret, cookie: { domain: '.example.com', path: '/app' } })).not.toThrow();
  });
});
