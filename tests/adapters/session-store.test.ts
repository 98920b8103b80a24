// SessionStore: express-session itself on ioredis, in connect-redis' key and value format, so an app switches stores
// without logging anyone out; the store behaviours express-session relies on; single Redis and Cluster.
import { createHmac } from 'node:crypto';
import { RedisStore as ConnectRedisStore } from 'connect-redis';
import express from 'express';
import session from 'express-session';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis } from '../../lib/connection.js';
import { SessionStore } from '../../lib/index.js';
import { privateCluster } from '../support/private-cluster.js';
import { privateRedis, privateRedisWithAdmin } from '../support/private-redis.js';
import { recordingLogger, redisUrl, silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('session-store');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** An express-session app on `store`: /login sets the user, /me reads it, /logout destroys, /rotate regenerates. */
function appWith(store: session.Store, cookie: session.CookieOptions = { maxAge: 60_000 }, rolling = false) {
  const app = express();
  app.use(session({ store, secret: 'a test secret', resave: false, saveUninitialized: false, cookie, rolling }));
  app.post('/login', (req, res) => {
    (req.session as unknown as { user: string }).user = 'alice';
    res.json({ id: req.sessionID });
  });
  app.get('/me', (req, res) => {
    res.json({ user: (req.session as unknown as { user?: string }).user ?? null, id: req.sessionID });
  });
  app.post('/logout', (req, res, next) => {
    req.session.destroy((error) => (error ? next(error) : res.json({ ok: true })));
  });
  app.post('/rotate', (req, res, next) => {
    req.session.regenerate((error) => {
      if (error) return next(error);
      (req.session as unknown as { user: string }).user = 'alice again';
      res.json({ id: req.sessionID });
    });
  });
  return app;
}

const newStore = (options: ConstructorParameters<typeof SessionStore>[0] = {}) =>
  new SessionStore({ redis: redis.client(), prefix: `${uniquePrefix('sess')}:`, logger: silentLogger, ...options });

describe('SessionStore under express-session', () => {
  it('stores the session as connect-redis does: sess:<id>, JSON, expiring with the cookie', async () => {
    const store = newStore();
    const agent = request.agent(appWith(store));
    const { id } = (await agent.post('/login').expect(200)).body;
    expect((await agent.get('/me')).body).toEqual({ user: 'alice', id });
    const stored = JSON.parse((await redis.client().get(store.prefix + id)) as string);
    expect(stored.user).toBe('alice');
    expect(stored.cookie.originalMaxAge).toBe(60_000);
    const ttl = await redis.client().pttl(store.prefix + id);
    expect(ttl).toBeGreaterThan(55_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it('a browser-session cookie (no maxAge) lives for the ttl option', async () => {
    const store = newStore({ ttl: '2h' });
    const agent = request.agent(appWith(store, {}));
    const { id } = (await agent.post('/login')).body;
    const ttl = await redis.client().pttl(store.prefix + id);
    expect(ttl).toBeGreaterThan(7_100_000);
    expect(ttl).toBeLessThanOrEqual(7_200_000);
  });

  it('touch extends the expiry on requests that leave the session unchanged, and never writes its data', async () => {
    const store = newStore();
    const agent = request.agent(appWith(store, { maxAge: 60_000 }, true));
    const { id } = (await agent.post('/login')).body;
    await redis.client().pexpire(store.prefix + id, 5_000);
    await redis.client().set(`${store.prefix + id}:marker`, 'x', 'PX', 60_000);
    const before = await redis.client().get(store.prefix + id);
    await agent.get('/me').expect(200);
    expect(await redis.client().pttl(store.prefix + id)).toBeGreaterThan(55_000);
    expect(await redis.client().get(store.prefix + id)).toBe(before);
  });

  it('touch never shortens an expiry, nor brings back a destroyed session', async () => {
    const store = newStore();
    const key = `${store.prefix}s1`;
    await store.set('s1', { cookie: { expires: new Date(Date.now() + 600_000) }, user: 'alice' });
    await store.touch('s1', { cookie: { expires: new Date(Date.now() + 10_000) } });
    expect(await redis.client().pttl(key)).toBeGreaterThan(590_000);
    await store.destroy('s1');
    await store.touch('s1', { cookie: { expires: new Date(Date.now() + 600_000) } });
    expect(await redis.client().exists(key)).toBe(0);
  });

  it('disableTouch leaves the expiry alone on unchanged requests', async () => {
    const store = newStore({ disableTouch: true });
    const agent = request.agent(appWith(store, { maxAge: 60_000 }, true));
    const { id } = (await agent.post('/login')).body;
    await redis.client().pexpire(store.prefix + id, 5_000);
    await agent.get('/me').expect(200);
    expect(await redis.client().pttl(store.prefix + id)).toBeLessThanOrEqual(5_000);
  });

  it('logout deletes the session, and regenerate replaces it under a new id', async () => {
    const store = newStore();
    const agent = request.agent(appWith(store));
    const { id } = (await agent.post('/login')).body;
    const rotated = (await agent.post('/rotate')).body.id;
    expect(rotated).not.toBe(id);
    expect(await redis.client().exists(store.prefix + id)).toBe(0);
    expect((await agent.get('/me')).body.user).toBe('alice again');
    await agent.post('/logout').expect(200);
    expect(await redis.client().exists(store.prefix + rotated)).toBe(0);
    expect((await agent.get('/me')).body.user).toBeNull();
  });

  it('keeps a rolling session alive on requests that only read it (touch extends the key, as connect-redis)', async () => {
    const store = newStore();
    const agent = request.agent(appWith(store, { maxAge: 2_000 }, true));
    await agent.post('/login').expect(200);
    for (let i = 0; i < 5; i++) {
      await sleep(700);
      expect((await agent.get('/me')).body.user, `after ${(i + 1) * 700} ms`).toBe('alice');
    }
  });

  it('a ttl function decides over the cookie, as in connect-redis; one that says 0 ends the session on touch', async () => {
    const store = newStore({ ttl: () => 10 });
    await store.set('f', { cookie: { expires: new Date(Date.now() + 86_400_000) } });
    const ttl = await redis.client().pttl(`${store.prefix}f`);
    expect(ttl).toBeGreaterThan(9_000);
    expect(ttl).toBeLessThanOrEqual(10_000);
    const ending = newStore({ ttl: () => 0 });
    await redis.client().set(`${ending.prefix}g`, '{"cookie":{}}', 'PX', 60_000);
    await ending.touch('g', { cookie: {} });
    expect(await redis.client().exists(`${ending.prefix}g`)).toBe(0);
  });

  it('a stored value that is not a session is no session (with a warning), not a 500, and all() skips it', async () => {
    const logger = recordingLogger();
    const store = newStore({ logger });
    const values = ['{not json', '42', '"text"', '[]', 'null'];
    for (const [i, value] of values.entries()) await redis.client().set(`${store.prefix}bad${i}`, value, 'PX', 60_000);
    await store.set('good', { cookie: {}, n: 1 });
    for (let i = 0; i < values.length; i++) expect(await store.get(`bad${i}`), values[i]).toBeNull();
    expect(logger.warnings.join('\n')).toMatch(/unreadable/);
    const app = appWith(store);
    await request(app).get('/me').set('Cookie', 'connect.sid=s%3Abad1.x').expect(200);
    expect((await store.all()).map((session) => session.id)).toEqual(['good']);
  });

  it('a callback that throws is logged, never an unhandled rejection', async () => {
    const logger = recordingLogger();
    const store = newStore({ logger });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      store.get('nobody', () => {
        throw new Error('the app callback failed');
      });
      await sleep(100);
      expect(unhandled).toEqual([]);
      expect(logger.errors.join('\n')).toMatch(/the app callback failed/);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it("works with a client that has an ioredis keyPrefix: all, ids and clear find the store's keys", async () => {
    const prefixed = new Redis(redisUrl(), { keyPrefix: `${uniquePrefix('kp')}:` });
    try {
      const store = new SessionStore({ redis: prefixed, prefix: 'sess:', logger: silentLogger });
      await store.set('one', { cookie: {}, n: 1 });
      expect(await store.ids()).toEqual(['one']);
      expect((await store.all()).map((session) => session.n)).toEqual([1]);
      await store.clear();
      expect(await store.length()).toBe(0);
      expect(await store.get('one')).toBeNull();
    } finally {
      prefixed.disconnect();
    }
  });

  it('all, ids, length and clear walk the prefix with SCAN and touch nothing else', async () => {
    const store = newStore();
    const other = `${uniquePrefix('other')}:keep`;
    await redis.client().set(other, '1', 'PX', 60_000);
    for (const sid of ['a', 'b', 'c']) await store.set(sid, { cookie: { originalMaxAge: 60_000 }, n: sid });
    expect((await store.ids()).sort()).toEqual(['a', 'b', 'c']);
    expect(await store.length()).toBe(3);
    const all = await store.all();
    expect(all.map((s) => [s.id, s.n]).sort()).toEqual([
      ['a', 'a'],
      ['b', 'b'],
      ['c', 'c'],
    ]);
    await store.clear();
    expect(await store.length()).toBe(0);
    expect(await redis.client().get(other)).toBe('1');
  });

  it('a prefix with glob characters matches only itself', async () => {
    const base = uniquePrefix('glob');
    const store = newStore({ prefix: `${base}:s*[` });
    await store.set('x', { cookie: {} });
    await redis.client().set(`${base}:sZZ`, '1', 'PX', 60_000);
    expect(await store.ids()).toEqual(['x']);
  });

  it('rejects invalid options by name, and says why there is no disableTTL', () => {
    expect(() => new SessionStore({ disableTTL: true } as never)).toThrow(/option "disableTTL".*every key/);
    expect(() => new SessionStore({ prefix: '' })).toThrow(/option "prefix"/);
    expect(() => new SessionStore({ ttl: -5 })).toThrow(/option "ttl"/);
    expect(() => new SessionStore({ ttl: '1 week' })).toThrow(/option "ttl"/);
    expect(() => new SessionStore({ prefix: 5 as unknown as string })).toThrow(/option "prefix"/);
    expect(() => new SessionStore({ redis: {} as never })).toThrow(/option "redis"/);
  });
});

/** An express-session app like {@link appWith}, plus POST /slow: waits for `gate`, then changes the session. */
function appWithSlowRequest(store: session.Store, saveUninitialized = false) {
  let entered!: () => void;
  let release!: () => void;
  const started = new Promise<void>((resolve) => {
    entered = resolve;
  });
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const app = express();
  app.use(session({ store, secret: 'a test secret', resave: false, saveUninitialized, cookie: { maxAge: 60_000 } }));
  app.post('/slow', async (req, res) => {
    entered();
    await gate;
    (req.session as unknown as { views: number }).views = 1;
    res.json({ id: req.sessionID });
  });
  const base = appWith(store, { maxAge: 60_000 });
  app.use(base);
  return { app, started, release };
}

describe('SessionStore never brings back a destroyed session', () => {
  it('keeps a user logged out when a request that changes the session ends after the logout', async () => {
    const store = newStore();
    const { app, started, release } = appWithSlowRequest(store);
    const agent = request.agent(app);
    const { id } = (await agent.post('/login').expect(200)).body;
    const slow = agent.post('/slow').then((response) => response);
    await started;
    await agent.post('/logout').expect(200);
    release();
    expect((await slow).status).toBe(200);
    expect(await redis.client().exists(store.prefix + id)).toBe(0);
    expect((await agent.get('/me')).body.user).toBeNull();
  });

  it('set() of a session it loaded only updates it: never recreates one destroyed meanwhile', async () => {
    const store = newStore();
    await store.set('gone', { cookie: { originalMaxAge: 60_000 }, user: 'alice' });
    const loaded = await new Promise<session.SessionData>((resolve, reject) =>
      store.load('gone', (error, found) => (error ? reject(error) : resolve(found))),
    );
    await store.destroy('gone');
    await store.set('gone', loaded);
    expect(await redis.client().exists(`${store.prefix}gone`)).toBe(0);
  });

  for (const saveUninitialized of [false, true]) {
    it(`still creates brand-new sessions (saveUninitialized: ${saveUninitialized}), and regenerated ones`, async () => {
      const store = newStore();
      const { app } = appWithSlowRequest(store, saveUninitialized);
      const agent = request.agent(app);
      const first = (await agent.get('/me').expect(200)).body.id;
      expect(await redis.client().exists(store.prefix + first)).toBe(saveUninitialized ? 1 : 0);
      const { id } = (await agent.post('/login').expect(200)).body;
      expect((await agent.get('/me')).body).toEqual({ user: 'alice', id });
      const rotated = (await agent.post('/rotate').expect(200)).body.id;
      expect(rotated).not.toBe(id);
      expect((await agent.get('/me')).body).toEqual({ user: 'alice again', id: rotated });
      await store.set('written-directly', { cookie: {}, n: 1 }); // as connect-redis' own tests do
      expect((await store.get('written-directly'))?.n).toBe(1);
    });
  }
});

describe('SessionStore on bad data under its prefix', () => {
  it('a key of another type is a missing session: a new session, never a 500 WRONGTYPE', async () => {
    const store = newStore();
    const kinds: [string, (key: string) => Promise<unknown>][] = [
      ['hash', (key) => redis.client().hset(key, 'user', 'admin')],
      ['list', (key) => redis.client().rpush(key, '{"user":"admin"}')],
    ];
    for (const [kind, plant] of kinds) {
      const sid = `wrong-type-${kind}`;
      await plant(store.prefix + sid);
      await redis.client().pexpire(store.prefix + sid, 60_000);
      expect(await store.get(sid), kind).toBeNull();
      const cookie = expressSessionCookie(sid, 'a test secret');
      const me = await request(appWith(store)).get('/me').set('Cookie', cookie);
      expect(me.status, kind).toBe(200);
      expect(me.body.user, kind).toBeNull();
      const login = await request(appWith(store)).post('/login').set('Cookie', cookie);
      expect(login.status, kind).toBe(200);
      expect(login.body.id, kind).not.toBe(sid);
    }
    await store.set('good', { cookie: {}, n: 1 });
    const listed = (await store.all()).map((found) => found.id);
    expect(listed).toContain('good');
    expect(listed.filter((id) => id.startsWith('wrong-type'))).toEqual([]);
  });

  it("an unreadable value's warning never prints the session id", async () => {
    const logger = recordingLogger();
    const store = newStore({ logger });
    const sid = 'a-secret-session-id-that-must-not-be-logged';
    await redis.client().set(store.prefix + sid, '{not json', 'PX', 60_000);
    expect(await store.get(sid)).toBeNull();
    expect(await store.all()).toEqual([]);
    expect(logger.warnings.join('\n')).toMatch(/unreadable/);
    expect(logger.warnings.join('\n')).not.toContain(sid);
  });
});

describe("SessionStore's public properties, as connect-redis has them", () => {
  it('has client, prefix, ttl, scanCount, disableTouch, disableTTL and serializer, with their defaults', () => {
    const client = redis.client();
    const store = new SessionStore({ redis: client, logger: silentLogger });
    expect(store.client).toBe(client);
    expect(store.prefix).toBe('sess:');
    expect(store.ttl).toBe(86_400);
    expect(store.scanCount).toBe(100);
    expect(store.disableTouch).toBe(false);
    expect(store.disableTTL).toBe(false);
    expect(store.serializer).toBe(JSON);
    const ttl = () => 10;
    const serializer = { parse: JSON.parse, stringify: JSON.stringify };
    const configured = new SessionStore({ redis: client, ttl, serializer, scanCount: 7, disableTouch: true });
    expect([configured.ttl, configured.serializer, configured.scanCount, configured.disableTouch]).toEqual([
      ttl,
      serializer,
      7,
      true,
    ]);
    expect(new SessionStore({ redis: client, ttl: '1h' }).ttl).toBe(3_600);
  });

  it('client, prefix, serializer and disableTTL are read-only; ttl, scanCount and disableTouch take valid values', async () => {
    const store = newStore();
    const writable = store as unknown as Record<string, unknown>;
    for (const property of ['client', 'prefix', 'serializer', 'disableTTL']) {
      expect(() => {
        writable[property] = undefined;
      }, property).toThrow(TypeError);
    }
    store.ttl = 10;
    await store.set('short', { cookie: {} });
    expect(await redis.client().pttl(`${store.prefix}short`)).toBeLessThanOrEqual(10_000);
    store.scanCount = 5;
    expect(await store.ids()).toEqual(['short']);
    store.disableTouch = true;
    expect(store.disableTouch).toBe(true);
    expect(() => {
      store.ttl = -1;
    }).toThrow(/"ttl"/);
    expect(() => {
      store.scanCount = 0;
    }).toThrow(/"scanCount"/);
    expect(() => {
      writable.disableTouch = 'yes';
    }).toThrow(/"disableTouch"/);
  });

  it('refuses a client that is not ioredis, naming what it is', () => {
    const nodeRedis = createClient({ url: redisUrl() });
    expect(() => new SessionStore({ redis: nodeRedis as never })).toThrow(/node-redis/);
    expect(() => new SessionStore({ redis: nodeRedis as never })).not.toThrow(/\{\}/);
    class SomeClient {}
    expect(() => new SessionStore({ redis: new SomeClient() as never })).toThrow(/SomeClient/);
  });
});

describe('switching from connect-redis without logging anyone out', () => {
  const nodeRedis = createClient({ url: redisUrl() });
  beforeAll(async () => {
    await nodeRedis.connect();
  });
  afterAll(async () => {
    await nodeRedis.quit();
  });

  it('a session written by connect-redis is read by SessionStore, and the other way round', async () => {
    const prefix = `${uniquePrefix('switch')}:`;
    const before = appWith(new ConnectRedisStore({ client: nodeRedis, prefix }));
    const login = await request(before).post('/login');
    const { id } = login.body;
    const cookie = (login.headers['set-cookie'] as unknown as string[])[0].split(';')[0];
    // The same browser (cookie), the app now on SessionStore:
    const after = appWith(new SessionStore({ redis: redis.client(), prefix, logger: silentLogger }));
    expect((await request(after).get('/me').set('Cookie', cookie)).body).toEqual({ user: 'alice', id });

    const written = request.agent(after);
    const second = (await written.post('/login')).body.id;
    const back = new ConnectRedisStore({ client: nodeRedis, prefix });
    const read = await new Promise((resolve, reject) => back.get(second, (e, s) => (e ? reject(e) : resolve(s))));
    expect((read as { user: string }).user).toBe('alice');
  });
});

/** express-session's cookie for `sid` under `secret` (`s:<sid>.<HMAC-SHA256 in base64, unpadded>`). */
function expressSessionCookie(sid: string, secret: string): string {
  const signature = createHmac('sha256', secret).update(sid).digest('base64').replace(/=+$/, '');
  return `connect.sid=${encodeURIComponent(`s:${sid}.${signature}`)}`;
}

describe('upgrading SessionStore', () => {
  it('keeps a user logged in: a session as the released SessionStore wrote it is read by this version', async () => {
    const store = newStore();
    const sid = 'Odubwhm1reiYY7WdCLveZMV7738uEv-N';
    const expires = new Date(Date.now() + 60_000).toISOString();
    // The exact value the released version stored (copied from a real Redis), its expiry moved to the future.
    const released = `{"cookie":{"originalMaxAge":60000,"expires":"${expires}","httpOnly":true,"path":"/"},"user":"alice"}`;
    await redis.client().set(store.prefix + sid, released, 'PX', 60_000);
    const response = await request(appWith(store)).get('/me').set('Cookie', expressSessionCookie(sid, 'a test secret'));
    expect(response.body).toEqual({ user: 'alice', id: sid });
  });
});

describe('SessionStore when Redis fails', () => {
  it('answers within its timeout with an error, never hangs, and unawaited calls never reject unhandled', async () => {
    const server = await privateRedis();
    const client = createRedis({ url: server.url, logger: silentLogger });
    const store = new SessionStore({ redis: client, timeout: 300, logger: silentLogger });
    await store.set('x', { cookie: { originalMaxAge: 60_000 } });
    await server.stop();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      void store.get('x');
      store.set('x', { cookie: {} });
      store.touch('x', { cookie: {} });
      store.destroy('x');
      const started = Date.now();
      const response = await request(appWith(store)).get('/me').set('Cookie', 'connect.sid=s%3Ax.forged');
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(response.status).toBeLessThan(600);
      await expect(store.get('y')).rejects.toThrow();
      // 'x' was destroyed: its delete is held until Redis answers again, and it reads as none meanwhile.
      expect(await store.get('x')).toBeNull();
      await sleep(400);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      client.disconnect();
    }
  });
});

describe('SessionStore when Redis is slow', () => {
  it('bounds all, ids, length and clear by its timeout too', async () => {
    const { admin, client: newClient } = await privateRedisWithAdmin();
    const client = newClient();
    const store = new SessionStore({ redis: client, timeout: 200, logger: silentLogger });
    await store.set('x', { cookie: {} });
    await admin.client('PAUSE', 1_500);
    try {
      for (const method of ['ids', 'all', 'length', 'clear'] as const) {
        const started = Date.now();
        await expect(store[method](), method).rejects.toThrow();
        expect(Date.now() - started, method).toBeLessThan(1_000);
      }
    } finally {
      await admin.client('UNPAUSE');
      client.disconnect();
    }
  });
});

describe('SessionStore on Redis Cluster', () => {
  let nodes: string[];
  let cluster: ReturnType<typeof createRedis>;
  beforeAll(async () => {
    ({ nodes } = await privateCluster());
    cluster = createRedis({ cluster: { nodes }, logger: silentLogger });
  }, 60_000);
  afterAll(async () => {
    await cluster?.quit();
  });

  it('waits for a Cluster client that is not ready yet before walking its masters', async () => {
    const fresh = createRedis({ cluster: { nodes }, logger: silentLogger });
    const store = new SessionStore({ redis: fresh, prefix: `${uniquePrefix('fresh')}:`, logger: silentLogger });
    try {
      expect(await store.ids()).toEqual([]);
      await store.set('a', { cookie: {} });
      const again = createRedis({ cluster: { nodes }, logger: silentLogger });
      const other = new SessionStore({ redis: again, prefix: store.prefix, logger: silentLogger });
      expect(await other.ids()).toEqual(['a']); // asked before this client had learned the slots
      await other.clear();
      expect(await store.length()).toBe(0);
      await again.quit();
    } finally {
      await fresh.quit();
    }
  });

  it('serves express-session and walks every master for all, length and clear', async () => {
    const store = new SessionStore({ redis: cluster, logger: silentLogger });
    const agent = request.agent(appWith(store));
    const { id } = (await agent.post('/login')).body;
    expect((await agent.get('/me')).body.user).toBe('alice');
    for (let i = 0; i < 30; i++) await store.set(`s${i}`, { cookie: { originalMaxAge: 60_000 } });
    // Spread over the masters, as a Cluster does.
    const perNode = await Promise.all(
      nodes.map(async (node) => {
        const direct = new Redis(node);
        const [, keys] = await direct.scan('0', 'MATCH', 'sess:*', 'COUNT', 1000);
        direct.disconnect();
        return keys.length;
      }),
    );
    expect(perNode.filter((count) => count > 0).length).toBeGreaterThan(1);
    expect(await store.length()).toBe(31);
    expect((await store.ids()).includes(id)).toBe(true);
    expect((await store.all()).length).toBe(31);
    await store.clear();
    expect(await store.length()).toBe(0);
  });
});
