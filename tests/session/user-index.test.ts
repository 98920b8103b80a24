// "Log out everywhere": the per-user index behind listByUser() and destroyByUser().
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { redisSession } from '../../lib/index.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';
import { cookiePair, secret, sessionApp } from './support.js';

const redis = useTestRedis('session-user-index');
const idOf = (pair: string) => decodeURIComponent(pair.split('=')[1]).split('.')[0];

/** An app whose /as/:id logs in as the number or the string `id` (`?type=number`). */
function indexedApp() {
  const prefix = uniquePrefix('by-user');
  const session = redisSession({ secret, redis: redis.client(), prefix, logger: silentLogger });
  const app = sessionApp(session, undefined, (routes) => {
    routes.get('/as/:id', async (req, res) => {
      await req.session.regenerate();
      const id = req.params.id;
      (req.session as unknown as Record<string, unknown>).userId = req.query.type === 'number' ? Number(id) : id;
      res.send('ok');
    });
  });
  const login = async (id: string, type: 'number' | 'string') =>
    cookiePair(await request(app).get(`/as/${id}`).query({ type }).expect(200));
  return { app, session, prefix, login };
}

describe('the user index', () => {
  it('treats 42 and "42" as one user, whichever was stored and whichever is asked for', async () => {
    const { session, login } = indexedApp();
    const asNumber = await login('42', 'number');
    const asString = await login('42', 'string');
    const expected = [idOf(asNumber), idOf(asString)].sort();
    expect((await session.listByUser('42')).map((s) => s.id).sort()).toEqual(expected);
    expect((await session.listByUser(42)).map((s) => s.id).sort()).toEqual(expected);
    expect(await session.destroyByUser(42)).toBe(2);
    expect(await session.listByUser('42')).toEqual([]);
  });

  it('keeps a live session indexed when asked with the other type, so a later destroyByUser finds it', async () => {
    const { app, session, login } = indexedApp();
    const phone = await login('7', 'number');
    expect(await session.listByUser('7')).toHaveLength(1);
    expect(await session.listByUser('7')).toHaveLength(1); // the first listing dropped nothing
    expect(await session.destroyByUser('7')).toBe(1);
    expect((await request(app).get('/peek').set('Cookie', phone).expect(200)).body.data).toEqual({});
  });

  it('drops an entry only once its session is gone, and destroys only sessions that are still that user’s', async () => {
    const { session, prefix, login } = indexedApp();
    const laptop = await login('u1', 'string');
    const tablet = await login('u1', 'string');
    const handedOver = await login('u1', 'string');
    // Redis says the handed-over session is u2's now (its index entry under u1 was not moved).
    await redis.client().hset(`${prefix}:${idOf(handedOver)}`, 'd:userId', '"u2"');
    // Expired, say, a while after it was indexed (past the grace a login in flight is given).
    await redis.client().del(`${prefix}:${idOf(tablet)}`);
    const [seconds] = await redis.client().time();
    const indexedLongAgo = Number(seconds) * 1000 - 120_000 + 7 * 86_400_000;
    await redis.client().zadd(`${prefix}:user:u1`, indexedLongAgo, idOf(tablet));
    expect((await session.listByUser('u1')).map((s) => s.id)).toEqual([idOf(laptop)]);
    const indexed = async () => (await redis.client().zrange(`${prefix}:user:u1`, 0, -1)).sort();
    expect(await indexed()).toEqual([idOf(laptop), idOf(handedOver)].sort());

    expect(await session.destroyByUser('u1')).toBe(1);
    expect(await redis.client().exists(`${prefix}:${idOf(laptop)}`)).toBe(0);
    expect(await redis.client().exists(`${prefix}:${idOf(handedOver)}`)).toBe(1);
    // Exactly the destroyed session left the index: the one it did not destroy keeps its entry.
    expect(await indexed()).toEqual([idOf(handedOver)]);
  });

  it('keeps the entry of a session indexed a moment ago whose first save has not landed yet', async () => {
    const { session, prefix } = indexedApp();
    // What a login in flight looks like: indexed (scored "alive until now + absoluteTimeout"), not saved yet.
    const [seconds] = await redis.client().time();
    const now = Number(seconds) * 1000;
    await redis.client().zadd(`${prefix}:user:u9`, now + 7 * 86_400_000, 'a-login-in-flight');
    await redis.client().pexpire(`${prefix}:user:u9`, 60_000);
    expect(await session.listByUser('u9')).toEqual([]);
    expect(await session.destroyByUser('u9')).toBe(0);
    expect(await redis.client().zrange(`${prefix}:user:u9`, 0, -1)).toEqual(['a-login-in-flight']);
  });
});
