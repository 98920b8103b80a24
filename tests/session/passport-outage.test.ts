// passport 0.7 + passport-local on redisSession(), logging out while Redis is down.
import express from 'express';
import type { Redis } from 'ioredis';
import passport from 'passport';
import { Strategy as LocalStrategy } from 'passport-local';
import request from 'supertest';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RedisSessionOptions, redisSession } from '../../lib/index.js';
import { privateRedisWithAdmin } from '../support/private-redis.js';
import { silentLogger } from '../support/redis.js';
import { redisLink } from '../support/redis-link.js';
import { within } from '../support/until.js';
import { cookiePair, secret, setCookie } from './support.js';

let admin: Redis;
let link: Awaited<ReturnType<typeof redisLink>>;
beforeAll(async () => {
  const { server, admin: adminClient } = await privateRedisWithAdmin();
  admin = adminClient;
  link = await redisLink(server.port);
});
afterEach(() => link.restore());

const users = new Map([['ada', { id: 42, username: 'ada', password: 'lovelace' }]]);
const idOf = (pair: string) => decodeURIComponent(pair.split('=')[1]).split('.')[0];
const cleared = /^sid=; .*Expires=Thu, 01 Jan 1970/;

/**
 * The app of the passport docs. `/logout` is passport's `req.logout(cb)`; `/signout`, mounted before
 * `passport.session()` (which reads the session on every request), ends the session with `req.session.destroy()`.
 */
function passportApp(redis: Redis, onRedisError: RedisSessionOptions['onRedisError']) {
  const prefix = `passport-${Math.random().toString(36).slice(2)}`;
  const session = redisSession({ secret, redis, prefix, timeout: '150ms', onRedisError, logger: silentLogger });
  const authenticator = new passport.Passport();
  authenticator.use(
    new LocalStrategy((username, password, done) => {
      const user = users.get(username);
      done(null, user && user.password === password ? user : false);
    }),
  );
  authenticator.serializeUser((user, done) => done(null, (user as { id: number }).id));
  authenticator.deserializeUser((id, done) => done(null, [...users.values()].find((user) => user.id === id) ?? false));
  const app = express();
  app.use(express.urlencoded({ extended: false }));
  app.use(session);
  app.post('/signout', (req, res, next) => {
    req.session.destroy((error) => (error ? next(error) : res.redirect('/me')));
  });
  app.use(authenticator.session());
  app.post('/login', authenticator.authenticate('local', { successRedirect: '/me', failureRedirect: '/login' }));
  app.get('/me', (req, res) => {
    res.json({ user: (req.user as { username?: string } | undefined)?.username ?? null });
  });
  app.post('/logout', (req, res, next) => {
    req.logout((error) => (error ? next(error) : res.redirect('/me')));
  });
  return { app, prefix };
}

async function logIn(app: express.Express): Promise<string> {
  const login = await request(app)
    .post('/login')
    .type('form')
    .send({ username: 'ada', password: 'lovelace' })
    .expect(302);
  return cookiePair(login);
}

describe('passport 0.7 while Redis is down', () => {
  it("'continue': req.logout(cb) logs the user out; the session is deleted once Redis returns", async () => {
    const redis = link.client();
    const { app, prefix } = passportApp(redis, 'continue');
    const cookie = await logIn(app);
    expect((await request(app).get('/me').set('Cookie', cookie).expect(200)).body).toEqual({ user: 'ada' });

    await link.down(redis);
    const logout = await request(app).post('/logout').set('Cookie', cookie).expect(302);
    expect(setCookie(logout)).toMatch(cleared);
    expect((await request(app).get('/me').set('Cookie', cookie).expect(200)).body).toEqual({ user: null });

    await link.up(redis);
    await within(1_000, async () => (await admin.exists(`${prefix}:${idOf(cookie)}`)) === 0);
    expect((await request(app).get('/me').set('Cookie', cookie).expect(200)).body).toEqual({ user: null });
    redis.disconnect();
  });

  it("'fail': a logout route in front of passport.session() logs the user out; passport's own answers 503", async () => {
    const redis = link.client();
    const { app, prefix } = passportApp(redis, 'fail');
    const cookie = await logIn(app);

    await link.down(redis);
    // passport.session() reads the session on every request: with its data unavailable, that is a 503.
    const refused = await request(app).post('/logout').set('Cookie', cookie).expect(503);
    expect(refused.headers['retry-after']).toBe('1');
    const signout = await request(app).post('/signout').set('Cookie', cookie).expect(302);
    expect(setCookie(signout)).toMatch(cleared);
    expect((await request(app).get('/me').set('Cookie', cookie).expect(200)).body).toEqual({ user: null });

    await link.up(redis);
    await within(1_000, async () => (await admin.exists(`${prefix}:${idOf(cookie)}`)) === 0);
    redis.disconnect();
  });
});
