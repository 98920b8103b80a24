// Logging out while Redis is down or stalled: the cookie is cleared at once, the session is deleted (with its
// per-user index entry) as soon as Redis answers again, and this process refuses its id until then.
import express, { type Express } from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RedisSessionOptions, type RediswareEvent, redisSession } from '../../lib/index.js';
import { deferUntilRecovered, healthOf, maxDeferredWrites } from '../../lib/redis/health.js';
import { privateRedisWithAdmin } from '../support/private-redis.js';
import { recordingLogger, silentLogger } from '../support/redis.js';
import { redisLink } from '../support/redis-link.js';
import { within } from '../support/until.js';
import { cookiePair, secret, setCookie } from './support.js';

// These tests cut and pause the link to their own redis-server (never the suite's shared one), whose data survives.
let admin: Redis;
let link: Awaited<ReturnType<typeof redisLink>>;
let sessionClient: () => Redis;
beforeAll(async () => {
  const { server, admin: adminClient } = await privateRedisWithAdmin();
  admin = adminClient;
  link = await redisLink(server.port);
  sessionClient = () => link.client();
});
afterEach(() => link.restore());

const idOf = (pair: string) => decodeURIComponent(pair.split('=')[1]).split('.')[0];
const cleared = /^sid=; .*Expires=Thu, 01 Jan 1970/;

/** An app with Express's own error handler (no handler of the app's): what a user gets by default. */
function logoutApp(options: Partial<RedisSessionOptions> & { redis: Redis }) {
  const events: RediswareEvent[] = [];
  const prefix = `logout-${Math.random().toString(36).slice(2)}`;
  const session = redisSession({
    secret,
    timeout: '150ms',
    logger: silentLogger,
    prefix,
    onEvent: (event) => void events.push(event),
    ...options,
  });
  const app: Express = express();
  app.use(session);
  app.get('/login/:user', (req, res, next) => {
    req.session.regenerate((error) => {
      if (error) return next(error);
      (req.session as unknown as Record<string, unknown>).userId = req.params.user;
      res.send('ok');
    });
  });
  app.get('/logout', (req, res, next) => {
    req.session.destroy((error) => (error ? next(error) : res.redirect('/')));
  });
  app.get('/logout-habit', (req, res) => {
    req.session.destroy(); // as code written for express-session does: neither awaited nor given a callback
    res.redirect('/');
  });
  app.get('/me', (req, res) => {
    res.json({ user: (req.session as unknown as Record<string, unknown>).userId ?? null });
  });
  app.get('/open', (_req, res) => {
    res.send('open');
  });
  return { app, session, prefix, events };
}

const stopRedis = (redis: Redis) => link.down(redis);
const restartRedis = (redis: Redis) => link.up(redis);

describe('a user can log out while Redis is down', () => {
  it("'fail': the cookie is cleared at once, and the session and its index entry are deleted within 1 s of Redis returning", async () => {
    const redis = sessionClient();
    const { app, session, prefix, events } = logoutApp({ redis });
    const leaving = cookiePair(await request(app).get('/login/u1').expect(200));
    const staying = cookiePair(await request(app).get('/login/u1').expect(200));
    const key = `${prefix}:${idOf(leaving)}`;

    await stopRedis(redis);
    const logout = await request(app).get('/logout').set('Cookie', leaving).expect(302);
    expect(setCookie(logout)).toMatch(cleared);
    expect(events).toContainEqual({ type: 'redis.deferred', source: 'session', operation: 'destroy', pending: 1 });
    // Until the delete is applied, this process refuses the id: a fresh session, not a 503.
    expect((await request(app).get('/me').set('Cookie', leaving).expect(200)).body).toEqual({ user: null });
    // A session that was not logged out cannot be read: 503, from Express's own error handler, with Retry-After.
    const unreadable = await request(app).get('/me').set('Cookie', staying).expect(503);
    expect(unreadable.headers['retry-after']).toBe('1');
    // A route that does not use the session needs no Redis.
    await request(app).get('/open').set('Cookie', staying).expect(200, 'open');

    await restartRedis(redis);
    // The session, then its index entry (two steps: on Cluster they live in different slots).
    const gone = async (user: string, pair: string, sessionKey: string) =>
      (await admin.exists(sessionKey)) === 0 && (await admin.zscore(`${prefix}:user:${user}`, idOf(pair))) === null;
    await within(1_000, () => gone('u1', leaving, key));
    expect((await session.listByUser('u1')).map((s) => s.id)).toEqual([idOf(staying)]);
    expect((await request(app).get('/me').set('Cookie', leaving).expect(200)).body).toEqual({ user: null });
    expect((await request(app).get('/me').set('Cookie', staying).expect(200)).body).toEqual({ user: 'u1' });
    redis.disconnect();
  });

  it("'continue': destroy() ends the session the cookie names, although its data could not be read", async () => {
    const redis = sessionClient();
    const { app, session, prefix } = logoutApp({ redis, onRedisError: 'continue' });
    const leaving = cookiePair(await request(app).get('/login/u2').expect(200));

    await stopRedis(redis);
    expect((await request(app).get('/me').set('Cookie', leaving).expect(200)).body).toEqual({ user: null });
    expect(setCookie(await request(app).get('/logout').set('Cookie', leaving).expect(302))).toMatch(cleared);

    await restartRedis(redis);
    await within(1_000, async () => (await admin.exists(`${prefix}:${idOf(leaving)}`, `${prefix}:user:u2`)) === 0);
    expect(await session.listByUser('u2')).toEqual([]);
    redis.disconnect();
  });

  it('a logout neither awaited nor given a callback never rejects unhandled, and still deletes the session', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const redis = sessionClient();
      const { app, prefix } = logoutApp({ redis });
      const leaving = cookiePair(await request(app).get('/login/u3').expect(200));
      await stopRedis(redis);
      expect(setCookie(await request(app).get('/logout-habit').set('Cookie', leaving).expect(302))).toMatch(cleared);
      await restartRedis(redis);
      await within(1_000, async () => (await admin.exists(`${prefix}:${idOf(leaving)}`)) === 0);
      redis.disconnect();
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe("with the app's own ioredis client", () => {
  it('a logout while Redis is down is applied once it returns', async () => {
    const redis = new Redis(link.url); // ioredis' defaults: offline queue, 20 retries per request
    redis.on('error', () => {});
    const { app, prefix } = logoutApp({ redis });
    const leaving = cookiePair(await request(app).get('/login/u8').expect(200));
    await stopRedis(redis);
    expect(setCookie(await request(app).get('/logout').set('Cookie', leaving).expect(302))).toMatch(cleared);
    await restartRedis(redis);
    // The session, then its index entry (two steps: on Cluster they live in different slots).
    await within(1_000, async () => (await admin.exists(`${prefix}:${idOf(leaving)}`, `${prefix}:user:u8`)) === 0);
    redis.disconnect();
  });
});

describe('a user can log out while Redis stalls', () => {
  it('a logout whose delete times out is held, answered at once, and applied once Redis answers', async () => {
    const redis = sessionClient();
    const { app, session, prefix, events } = logoutApp({ redis });
    const leaving = cookiePair(await request(app).get('/login/u4').expect(200));
    await admin.call('CLIENT', 'PAUSE', '700', 'ALL');
    try {
      const logout = await request(app).get('/logout').set('Cookie', leaving).expect(302);
      expect(setCookie(logout)).toMatch(cleared);
      expect(events.filter((event) => event.type === 'redis.deferred')).toHaveLength(1);
    } finally {
      await within(2_000, async () => (await admin.ping()) === 'PONG');
    }
    const gone = async () =>
      (await admin.exists(`${prefix}:${idOf(leaving)}`)) === 0 && (await admin.exists(`${prefix}:user:u4`)) === 0;
    await within(1_000, gone);
    await within(1_000, async () => healthOf(redis).held === 0);
    expect(await session.listByUser('u4')).toEqual([]);
    redis.disconnect();
  });

  it('a loaded session whose delete fails (Redis gone mid-request) is logged out all the same: destroy() resolves', async () => {
    const redis = sessionClient();
    const { app, prefix } = logoutApp({ redis });
    app.get('/logout-after-outage', async (req, res) => {
      await stopRedis(redis); // the session was loaded; Redis goes away before it is destroyed
      await req.session.destroy();
      res.send('logged out');
    });
    const leaving = cookiePair(await request(app).get('/login/u5').expect(200));
    const logout = await request(app).get('/logout-after-outage').set('Cookie', leaving).expect(200, 'logged out');
    expect(setCookie(logout)).toMatch(cleared);
    await restartRedis(redis);
    await within(
      1_000,
      async () =>
        (await admin.exists(`${prefix}:${idOf(leaving)}`)) === 0 &&
        (await admin.zscore(`${prefix}:user:u5`, idOf(leaving))) === null,
    );
    redis.disconnect();
  });
});

describe('when the queue of held writes is full', () => {
  it('a logout says it could not be applied (503, redis.dropped) and clears the cookie', async () => {
    const redis = sessionClient();
    const errors = recordingLogger();
    const { app, events } = logoutApp({ redis, logger: errors });
    const leaving = cookiePair(await request(app).get('/login/u6').expect(200));
    await stopRedis(redis);
    for (let i = 0; i < maxDeferredWrites; i++) {
      deferUntilRecovered(redis, { source: 'session', key: `filler-${i}`, run: async () => undefined });
    }
    const logout = await request(app).get('/logout').set('Cookie', leaving).expect(503);
    expect(logout.headers['retry-after']).toBe('1');
    expect(setCookie(logout)).toMatch(cleared);
    expect(events).toContainEqual({ type: 'redis.dropped', source: 'session', operation: 'destroy', pending: 0 });
    await restartRedis(redis);
    redis.disconnect();
  });
});

describe("'fail' while Redis is down: what needs the session's data", () => {
  it('answers 503 for a read, a write or save(), with the route run; regenerate() starts a new session', async () => {
    const redis = sessionClient();
    const { app } = logoutApp({ redis });
    const failures: { status?: number; statusCode?: number }[] = [];
    app.get('/save', (req, res) => {
      req.session.save((error) => {
        failures.push(error as never);
        res.status((error as { status?: number } | undefined)?.status ?? 200).send('answered');
      });
    });
    app.get('/write', (req, res) => {
      (req.session as unknown as Record<string, unknown>).x = 1;
      res.send('written');
    });
    app.get('/regenerate', (req, res, next) => {
      req.session.regenerate((error) => (error ? next(error) : res.json({ data: { ...req.session } })));
    });
    const cookie = cookiePair(await request(app).get('/login/u7').expect(200));
    await stopRedis(redis);
    await request(app).get('/save').set('Cookie', cookie).expect(503, 'answered');
    expect(failures[0]).toMatchObject({ status: 503, statusCode: 503 });
    await request(app).get('/write').set('Cookie', cookie).expect(503);
    const regenerated = await request(app).get('/regenerate').set('Cookie', cookie).expect(200);
    expect(regenerated.body).toEqual({ data: {} });
    // The new session is not saved (there is nothing in it): the old cookie is cleared.
    expect(setCookie(regenerated)).toMatch(cleared);
    await restartRedis(redis);
    redis.disconnect();
  });
});

describe('an async route that reads a session Redis could not give', () => {
  it("answers 503 on Express 4 and 5 alike, and never rejects unhandled (the README's own logout-everywhere route)", async () => {
    const redis = sessionClient();
    const { app, session } = logoutApp({ redis });
    app.post('/logout-everywhere', async (req, res) => {
      // As the README writes it, with no try/catch: Express 4 does not catch a rejected route.
      const userId = (req.session as unknown as Record<string, string | undefined>).userId;
      if (userId) await session.destroyByUser(userId);
      res.redirect('/');
    });
    const pair = cookiePair(await request(app).get('/login/u9').expect(200));
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      await stopRedis(redis);
      const answer = await request(app).post('/logout-everywhere').set('Cookie', pair).expect(503);
      expect(answer.headers['retry-after']).toBe('1');
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await restartRedis(redis);
    }
    redis.disconnect();
  });
});

describe('what an outage logs', () => {
  it('logs a failed save once per outage, not once per request', async () => {
    const redis = sessionClient();
    const logger = recordingLogger();
    const { app } = logoutApp({ redis, logger });
    await request(app).get('/login/u10').expect(200);
    await stopRedis(redis);
    for (let i = 0; i < 4; i++) await request(app).get('/login/u10').expect(503);
    expect(logger.errors.filter((line) => /saving the session failed/.test(line))).toEqual([]);
    expect(logger.warnings.filter((line) => /could not use Redis/.test(line))).toHaveLength(1);
    await restartRedis(redis);
    redis.disconnect();
  });

  it('says so when the app closes its client while a logout is still held', async () => {
    const redis = sessionClient();
    const logger = recordingLogger();
    const { app } = logoutApp({ redis, logger });
    const leaving = cookiePair(await request(app).get('/login/u11').expect(200));
    await stopRedis(redis);
    await request(app).get('/logout').set('Cookie', leaving).expect(302);
    redis.disconnect();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(logger.errors).toContainEqual(
      expect.stringMatching(/held session delete failed: the Redis client was closed/),
    );
  });
});

describe('a session that could not be saved', () => {
  it('gets no cookie with its 503: the client is not given an id that names nothing', async () => {
    const redis = sessionClient();
    const { app } = logoutApp({ redis });
    await request(app).get('/login/u12').expect(200);
    await stopRedis(redis);
    const refused = await request(app).get('/login/u12').expect(503);
    expect(refused.headers['set-cookie'] ?? []).toEqual([]);
    await restartRedis(redis);
    redis.disconnect();
  });
});
