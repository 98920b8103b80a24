// Upgrading logs no one out: sessions as the released version writes them (the fixture below is the exact Redis
// representation it produced, copied from a real Redis) are read by this version.
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { redisSession } from '../../lib/index.js';
import { signSessionId } from '../../lib/session/signature.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';
import { secret, sessionApp, setCookie } from './support.js';

const redis = useTestRedis('session-upgrade');

/** A logged-in session with a "remember me" lifetime, as written by the released version (times relative to now). */
const releasedSession = {
  id: 'nsT_Y6gEe1CBBy_CMGhAyRW4grqJjHjDwtjacMrt7xs',
  hash: (now: number) => ({
    _c: String(now - 2 * 3_600_000),
    _s: String(now - 60_000),
    'd:userId': '"u1"',
    'd:cart': '["a",{"n":1}]',
    _m: '3600000',
  }),
  ttlMs: 3_599_988,
  /** The per-user index: `<prefix>:user:<userId>`, a sorted set of ids scored by "alive until" (created + absolute). */
  indexScore: (now: number) => now - 2 * 3_600_000 + 7 * 86_400_000,
  indexTtlMs: 604_799_966,
};

async function plantReleasedSession(prefix: string): Promise<void> {
  const client = redis.client();
  const [seconds] = await client.time();
  const now = Number(seconds) * 1000;
  const key = `${prefix}:${releasedSession.id}`;
  await client.hset(key, releasedSession.hash(now));
  await client.pexpire(key, releasedSession.ttlMs);
  await client.zadd(`${prefix}:user:u1`, releasedSession.indexScore(now), releasedSession.id);
  await client.pexpire(`${prefix}:user:u1`, releasedSession.indexTtlMs);
}

describe('upgrading from the released session format', () => {
  it('keeps a user logged in: data, own lifetime and the per-user index of a released session are read', async () => {
    const prefix = uniquePrefix('released');
    await plantReleasedSession(prefix);
    const session = redisSession({ secret, redis: redis.client(), prefix, logger: silentLogger });
    const app = sessionApp(session);
    const cookie = `sid=${encodeURIComponent(signSessionId(releasedSession.id, secret))}`;

    const response = await request(app).get('/').set('Cookie', cookie).expect(200);
    expect(response.body).toEqual({ id: releasedSession.id, data: { userId: 'u1', cart: ['a', { n: 1 }] } });
    // Its own lifetime survived: the persistent cookie is refreshed with it.
    expect(setCookie(response)).toMatch(/Max-Age=3600;/);

    expect((await session.listByUser('u1')).map((s) => s.id)).toEqual([releasedSession.id]);
    expect(await session.destroyByUser('u1')).toBe(1);
    expect((await request(app).get('/').set('Cookie', cookie).expect(200)).body.data).toEqual({});
  });

  it('writes what the released version reads: the same fields and encodings, so a rollback logs no one out', async () => {
    const prefix = uniquePrefix('written');
    const app = sessionApp(
      redisSession({ secret, redis: redis.client(), prefix, logger: silentLogger }),
      undefined,
      (routes) =>
        routes.get('/remember', (req, res) => {
          req.session.cookie.maxAge = 3_600_000;
          (req.session as unknown as Record<string, unknown>).cart = ['a', { n: 1 }];
          res.send('ok');
        }),
    );
    const login = await request(app).get('/login/u1').expect(302);
    const cookie = (setCookie(login) as string).split(';')[0];
    await request(app).get('/remember').set('Cookie', cookie).expect(200);
    const id = decodeURIComponent(cookie.split('=')[1]).split('.')[0];
    const stored = await redis.client().hgetall(`${prefix}:${id}`);
    // Besides `_i` (when the user's index entry was last written; see the load script), which the released version's
    // scripts pass over as they pass over every field that is neither bookkeeping they know nor `d:` data.
    expect(
      Object.keys(stored)
        .filter((field) => field !== '_i')
        .sort(),
    ).toEqual(Object.keys(releasedSession.hash(0)).sort());
    expect(stored._i).toMatch(/^\d+$/);
    expect(stored).toMatchObject({ 'd:userId': '"u1"', 'd:cart': '["a",{"n":1}]', _m: '3600000' });
    expect(stored._c).toMatch(/^\d+$/);
    expect(stored._s).toMatch(/^\d+$/);
    expect(await redis.client().zrange(`${prefix}:user:u1`, 0, -1)).toEqual([id]);
  });
});
