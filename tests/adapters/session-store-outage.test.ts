// SessionStore under express-session: a logout whose delete cannot reach Redis is held and applied once Redis
// answers again, and the store reads that session as none meanwhile.
import express from 'express';
import session from 'express-session';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RediswareEvent, SessionStore } from '../../lib/index.js';
import { privateRedisWithAdmin } from '../support/private-redis.js';
import { silentLogger } from '../support/redis.js';
import { redisLink } from '../support/redis-link.js';
import { within } from '../support/until.js';

let admin: Redis;
let link: Awaited<ReturnType<typeof redisLink>>;
beforeAll(async () => {
  const { server, admin: adminClient } = await privateRedisWithAdmin();
  admin = adminClient;
  link = await redisLink(server.port);
});
afterEach(() => link.restore());

describe('SessionStore when Redis goes away during a logout', () => {
  it("express-session's destroy() succeeds, and the session is deleted within 1 s of Redis returning", async () => {
    const redis = link.client();
    const events: RediswareEvent[] = [];
    const prefix = `store-logout-${Math.random().toString(36).slice(2)}:`;
    const store = new SessionStore({
      redis,
      prefix,
      timeout: 150,
      logger: silentLogger,
      onEvent: (event) => void events.push(event),
    });
    const app = express();
    app.use(session({ store, secret: 'a test secret', resave: false, saveUninitialized: false }));
    app.post('/login', (req, res) => {
      (req.session as unknown as { user: string }).user = 'alice';
      res.json({ id: req.sessionID });
    });
    app.post('/logout', async (req, res, next) => {
      await link.down(redis); // the session was loaded; Redis goes away before it is destroyed
      req.session.destroy((error) => (error ? next(error) : res.json({ ok: true })));
    });
    const login = await request(app).post('/login').expect(200);
    const { id } = login.body;
    const cookie = (login.headers['set-cookie'] as unknown as string[])[0].split(';')[0];

    await request(app).post('/logout').set('Cookie', cookie).expect(200, { ok: true });
    expect(events).toContainEqual({ type: 'redis.deferred', source: 'session', operation: 'destroy', pending: 1 });
    expect(await store.get(id)).toBeNull(); // refused until the delete is applied, without asking Redis
    await link.up(redis);
    await within(1_000, async () => (await admin.exists(prefix + id)) === 0);
    expect(await store.get(id)).toBeNull();
    redis.disconnect();
  });
});
