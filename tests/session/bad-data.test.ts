// Bad data under the session keys (another program, an old version, a hand edit) is a missing session, never an
// error that sticks to a cookie: planted with a real Redis.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis } from '../../lib/connection.js';
import { redisSession } from '../../lib/index.js';
import { signSessionId } from '../../lib/session/signature.js';
import { privateCluster } from '../support/private-cluster.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';
import { cookiePair, secret, sessionApp, setCookie } from './support.js';

const redis = useTestRedis('session-bad-data');
const idOf = (pair: string) => decodeURIComponent(pair.split('=')[1]).split('.')[0];
const cookieFor = (id: string) => `sid=${encodeURIComponent(signSessionId(id, secret))}`;

function app(options: { rolling?: boolean } = {}) {
  const prefix = uniquePrefix('bad');
  const session = redisSession({ secret, redis: redis.client(), prefix, logger: silentLogger, ...options });
  const keyOf = (id: string) => `${prefix}:${id}`;
  const express = sessionApp(session, undefined, (routes) => {
    routes.get('/clobber-then-set', async (req, res) => {
      // Another program replaces the session key with a string while this request runs.
      await redis.client().set(keyOf(req.session.id), 'not a session', 'PX', 60_000);
      (req.session as unknown as Record<string, unknown>).late = 'change';
      res.send('ok');
    });
  });
  return { app: express, session, prefix, keyOf };
}

/** Expects the cookie naming `id` to be served as a missing session: fresh and empty, and a write gets a new cookie. */
async function expectMissingSession(express: ReturnType<typeof app>['app'], id: string): Promise<void> {
  const read = await request(express).get('/').set('Cookie', cookieFor(id));
  expect(read.status).toBe(200);
  expect(read.body.data).toEqual({});
  expect(read.body.id).not.toBe(id);
  const write = await request(express).get('/set?fresh=yes').set('Cookie', cookieFor(id));
  expect(write.status).toBe(200);
  const fresh = cookiePair(write);
  expect(idOf(fresh)).not.toBe(id);
  expect((await request(express).get('/').set('Cookie', fresh).expect(200)).body.data).toEqual({ fresh: 'yes' });
}

describe('a session key holding something else', () => {
  const planted: [string, (key: string) => Promise<unknown>][] = [
    ['a string', (key) => redis.client().set(key, '{"userId":"admin"}')],
    ['a list', (key) => redis.client().rpush(key, 'd:userId', '"admin"')],
    ['a set', (key) => redis.client().sadd(key, '_c')],
    ['a sorted set', (key) => redis.client().zadd(key, 1, 'd:userId')],
  ];
  for (const [kind, plant] of planted) {
    it(`is a missing session when it is ${kind}: a fresh id and a new cookie, never a 503, and the key is not obeyed`, async () => {
      const { app: express, keyOf } = app();
      const id = 'planted-session-id-000000000000000000000001';
      await plant(keyOf(id));
      await expectMissingSession(express, id);
      expect(await redis.client().type(keyOf(id))).toBe('none');
    });
  }

  it('is a missing session on a read without rolling too', async () => {
    const { app: express, keyOf } = app({ rolling: false });
    const id = 'planted-session-id-000000000000000000000002';
    await redis.client().set(keyOf(id), 'x');
    await expectMissingSession(express, id);
  });

  it('replaced while a request runs: its change is dropped (the session is gone), never a 503', async () => {
    const { app: express, keyOf } = app();
    const created = cookiePair(await request(express).get('/set?before=1').expect(200));
    const response = await request(express).get('/clobber-then-set').set('Cookie', created);
    expect(response.status).toBe(200);
    expect(await redis.client().get(keyOf(idOf(created)))).toBe('not a session');
    await expectMissingSession(express, idOf(created));
  });
});

describe('a session hash with unreadable fields', () => {
  const now = async () => Number((await redis.client().time())[0]) * 1000;
  const cases: [string, (now: number) => Record<string, string>][] = [
    ['a creation time that is not a number', (t) => ({ _c: 'yesterday', _s: String(t), 'd:userId': '"u1"' })],
    ['a last-seen time that is not a number', (t) => ({ _c: String(t), _s: 'NaN', 'd:userId': '"u1"' })],
    ['an infinite creation time', (t) => ({ _c: '1e999', _s: String(t), 'd:userId': '"u1"' })],
    ['a lifetime that is not a number', (t) => ({ _c: String(t), _s: String(t), _m: 'forever', 'd:userId': '"u1"' })],
    ['a negative lifetime', (t) => ({ _c: String(t), _s: String(t), _m: '-5', 'd:userId': '"u1"' })],
    ['a data field that is not JSON', (t) => ({ _c: String(t), _s: String(t), 'd:userId': '{not json' })],
  ];
  for (const [kind, fields] of cases) {
    it(`is a missing session with ${kind}: a fresh id and a new cookie, never its data`, async () => {
      const { app: express, keyOf } = app();
      const id = 'malformed-session-id-00000000000000000000001';
      await redis.client().hset(keyOf(id), fields(await now()));
      await redis.client().pexpire(keyOf(id), 60_000);
      await expectMissingSession(express, id);
    });
  }
});

describe('a per-user index key holding something else', () => {
  it('does not break login, logout, listByUser or destroyByUser: the index is rebuilt', async () => {
    const { app: express, session, prefix } = app();
    const indexKey = `${prefix}:user:u1`;
    await redis.client().set(indexKey, 'not an index');
    const login = await request(express).get('/login/u1');
    expect(login.status).toBe(302);
    const cookie = cookiePair(login);
    expect((await session.listByUser('u1')).map((s) => s.id)).toEqual([idOf(cookie)]);

    await redis.client().del(indexKey);
    await redis.client().rpush(indexKey, 'x');
    expect(await session.listByUser('u1')).toEqual([]);
    expect(await session.destroyByUser('u1')).toBe(0);
    const logout = await request(express).get('/logout').set('Cookie', cookie);
    expect(logout.status).toBe(302);
    expect(setCookie(logout)).toMatch(/Expires=Thu, 01 Jan 1970/);
    expect(await redis.client().exists(`${prefix}:${idOf(cookie)}`)).toBe(0);
  });

  it('listByUser and destroyByUser skip an indexed session whose key holds something else', async () => {
    const { app: express, session, prefix } = app();
    const first = cookiePair(await request(express).get('/login/u2').expect(302));
    const second = cookiePair(await request(express).get('/login/u2').expect(302));
    await redis.client().set(`${prefix}:${idOf(first)}`, 'not a session', 'PX', 60_000);
    expect((await session.listByUser('u2')).map((s) => s.id)).toEqual([idOf(second)]);
    expect(await session.destroyByUser('u2')).toBe(1);
    expect(await redis.client().exists(`${prefix}:${idOf(second)}`)).toBe(0);
  });
});

describe('bad data under the session keys on a Redis Cluster', () => {
  let cluster: ReturnType<typeof createRedis>;
  beforeAll(async () => {
    const { nodes } = await privateCluster();
    cluster = createRedis({ cluster: { nodes }, logger: silentLogger });
  }, 60_000);
  afterAll(async () => {
    await cluster?.quit();
  });

  it('repairs there too: a session key and a per-user index of another type never break a request', async () => {
    const prefix = uniquePrefix('bad-cluster');
    const session = redisSession({ secret, redis: cluster, prefix, logger: silentLogger });
    const express = sessionApp(session);
    const id = 'planted-session-id-on-a-cluster-00000000001';
    await cluster.set(`${prefix}:${id}`, 'not a session', 'PX', 60_000);
    await cluster.set(`${prefix}:user:u1`, 'not an index', 'PX', 60_000);
    await expectMissingSession(express, id);
    expect(await cluster.exists(`${prefix}:${id}`)).toBe(0);
    const login = await request(express).get('/login/u1');
    expect(login.status).toBe(302);
    expect((await session.listByUser('u1')).map((s) => s.id)).toEqual([idOf(cookiePair(login))]);
    expect(await session.destroyByUser('u1')).toBe(1);
  });
});
