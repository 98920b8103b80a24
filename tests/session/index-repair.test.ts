// An index that misses a session is repaired when the session is loaded, so destroyByUser finds every session.
import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RediswareEvent, redisSession } from '../../lib/index.js';
import { silentLogger, uniquePrefix, useTestRedis, watchCommands } from '../support/redis.js';
import { within } from '../support/until.js';
import { cookiePair, secret, sessionApp } from './support.js';

const redis = useTestRedis('session-index-repair');
const idOf = (pair: string) => decodeURIComponent(pair.split('=')[1]).split('.')[0];

function indexedApp(ttl = '1h') {
  const prefix = uniquePrefix('repair');
  const events: RediswareEvent[] = [];
  const session = redisSession({
    secret,
    redis: redis.client(),
    prefix,
    ttl,
    logger: silentLogger,
    onEvent: (event) => void events.push(event),
  });
  return { app: sessionApp(session), session, prefix, events };
}

describe('a session missing from its user index', () => {
  it('is indexed again on its next load when its index entry was never written (an earlier version, a failed write)', async () => {
    const { app, session, prefix, events } = indexedApp();
    const cookie = cookiePair(await request(app).get('/login/u1').expect(302));
    const id = idOf(cookie);
    // As a session whose index write failed was left by earlier versions: stored with its user, not indexed.
    await redis.client().zrem(`${prefix}:user:u1`, id);
    await redis.client().hdel(`${prefix}:${id}`, '_i');
    expect(await session.listByUser('u1')).toEqual([]);

    expect((await request(app).get('/peek').set('Cookie', cookie).expect(200)).body.data).toEqual({ userId: 'u1' });
    await within(1_000, async () => (await redis.client().zscore(`${prefix}:user:u1`, id)) !== null);
    expect(events).toContainEqual({ type: 'redis.repaired', source: 'session' });
    expect(await session.destroyByUser('u1')).toBe(1);
    expect((await request(app).get('/peek').set('Cookie', cookie).expect(200)).body.data).toEqual({});
  });

  it('gets an entry lost later (deleted by hand) back on a load once its check is due: a tenth of ttl, at most a minute', async () => {
    const { app, session, prefix } = indexedApp('1s');
    const cookie = cookiePair(await request(app).get('/login/u2').expect(302));
    const id = idOf(cookie);
    await redis.client().zrem(`${prefix}:user:u2`, id);
    // Indexed a moment ago (the login wrote the entry, and said so): not checked again yet.
    await request(app).get('/peek').set('Cookie', cookie).expect(200);
    expect(await redis.client().zscore(`${prefix}:user:u2`, id)).toBeNull();

    await new Promise((resolve) => setTimeout(resolve, 150));
    await request(app).get('/peek').set('Cookie', cookie).expect(200);
    await within(1_000, async () => (await redis.client().zscore(`${prefix}:user:u2`, id)) !== null);
    expect((await session.listByUser('u2')).map((s) => s.id)).toEqual([id]);
  });

  it('is indexed under the user its session now holds, when that changed without the index (a write by hand)', async () => {
    const { app, session, prefix } = indexedApp();
    const cookie = cookiePair(await request(app).get('/login/u3').expect(302));
    const id = idOf(cookie);
    await redis.client().hset(`${prefix}:${id}`, 'd:userId', '"u4"');
    await redis.client().hdel(`${prefix}:${id}`, '_i');
    await request(app).get('/peek').set('Cookie', cookie).expect(200);
    await within(1_000, async () => (await redis.client().zscore(`${prefix}:user:u4`, id)) !== null);
    expect(await session.destroyByUser('u4')).toBe(1);
    expect(await session.listByUser('u3')).toEqual([]);
  });
});

describe('what the index check costs', () => {
  let client: Redis;
  let watch: Awaited<ReturnType<typeof watchCommands>>;
  beforeAll(async () => {
    client = redis.newClient();
    watch = await watchCommands(client);
  });
  afterAll(() => watch.stop());

  it('nothing on the loads of a logged-in session whose entry was written within the resolution', async () => {
    const prefix = uniquePrefix('repair-cost');
    const app = sessionApp(redisSession({ secret, redis: client, prefix, logger: silentLogger }));
    const cookie = cookiePair(await request(app).get('/login/u5').expect(302));
    await request(app).get('/peek').set('Cookie', cookie); // may load the script once
    await watch.settle();
    watch.reset();
    for (let i = 0; i < 5; i++) await request(app).get('/peek').set('Cookie', cookie).expect(200);
    await watch.settle();
    expect(watch.sent.map((args) => args[0].toLowerCase())).toEqual(Array(5).fill('evalsha'));
    expect(watch.insideScripts.filter((args) => /^(hset|zadd)$/i.test(args[0]))).toEqual([]);
  });
});
