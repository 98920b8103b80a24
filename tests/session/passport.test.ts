// passport 0.7 with passport-local on redisSession(), as the passport docs set them up.
import express, { type NextFunction, type Request, type Response } from 'express';
import passport from 'passport';
import { Strategy as LocalStrategy } from 'passport-local';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { redisSession } from '../../lib/index.js';
import { silentLogger, useTestRedis } from '../support/redis.js';
import { cookiePair, secret, setCookie } from './support.js';

const redis = useTestRedis('passport');
const users = new Map([['ada', { id: 42, username: 'ada', password: 'lovelace' }]]);

function passportApp() {
  const prefix = `${redis.prefix}:${Math.random().toString(36).slice(2)}`;
  const session = redisSession({ secret, redis: redis.client(), prefix, logger: silentLogger });
  const authenticator = new passport.Passport();
  authenticator.use(
    new LocalStrategy((username, password, done) => {
      const user = users.get(username);
      done(null, user && user.password === password ? user : false);
    }),
  );
  authenticator.serializeUser((user, done) => done(null, (user as { id: number }).id));
  authenticator.deserializeUser((id, done) => {
    done(null, [...users.values()].find((user) => user.id === id) ?? false);
  });

  const app = express();
  app.use(express.urlencoded({ extended: false }));
  app.use(session);
  app.use(authenticator.session());
  app.post('/login', authenticator.authenticate('local', { successRedirect: '/me', failureRedirect: '/login' }));
  app.get('/visit', (req, res) => {
    (req.session as unknown as Record<string, unknown>).visited = true;
    res.send('ok');
  });
  app.get('/me', (req, res) => {
    res.json({ user: (req.user as { username?: string } | undefined)?.username ?? null, id: req.session.id });
  });
  app.post('/logout', (req, res, next) => {
    req.logout((error) => (error ? next(error) : res.redirect('/me')));
  });
  app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).json({ error: error.message });
  });
  return { app, session, prefix };
}

const idOf = (pair: string) => decodeURIComponent(pair.split('=')[1]).split('.')[0];

describe('passport 0.7 + passport-local on redisSession()', () => {
  it('logs in on a new session id, keeps req.user on the next request, and indexes the user', async () => {
    const { app, session, prefix } = passportApp();
    const anonymous = cookiePair(await request(app).get('/visit').expect(200));
    const login = await request(app)
      .post('/login')
      .set('Cookie', anonymous)
      .type('form')
      .send({ username: 'ada', password: 'lovelace' })
      .expect(302);
    expect(login.headers.location).toBe('/me');
    const cookie = cookiePair(login);
    // Session fixation: the id the client had before logging in is not the one it is logged in under.
    expect(idOf(cookie)).not.toBe(idOf(anonymous));
    expect(await redis.client().exists(`${prefix}:${idOf(anonymous)}`)).toBe(0);
    const me = await request(app).get('/me').set('Cookie', cookie).expect(200);
    expect(me.body).toEqual({ user: 'ada', id: idOf(cookie) });
    expect(await redis.client().hget(`${prefix}:${idOf(cookie)}`, 'd:passport')).toBe('{"user":42}');
    expect(await session.listByUser(42)).toEqual([]); // passport keeps the user under `passport`, not `userId`
  });

  it('logs out with req.logout(cb): the user is gone and the logged-in session with it', async () => {
    const { app, prefix } = passportApp();
    const login = await request(app)
      .post('/login')
      .type('form')
      .send({ username: 'ada', password: 'lovelace' })
      .expect(302);
    const cookie = cookiePair(login);
    const logout = await request(app).post('/logout').set('Cookie', cookie).expect(302);
    // passport regenerates on logout: the logged-in session is deleted, and an empty one is not stored.
    expect(await redis.client().exists(`${prefix}:${idOf(cookie)}`)).toBe(0);
    if (setCookie(logout)) expect(idOf(cookiePair(logout))).not.toBe(idOf(cookie));
    expect((await request(app).get('/me').set('Cookie', cookie).expect(200)).body.user).toBeNull();
  });

  it('keeps no session for a failed login', async () => {
    const { app, prefix } = passportApp();
    const failed = await request(app)
      .post('/login')
      .type('form')
      .send({ username: 'ada', password: 'wrong' })
      .expect(302);
    expect(failed.headers.location).toBe('/login');
    expect(setCookie(failed)).toBeUndefined();
    const [, keys] = await redis.client().scan('0', 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    expect(keys).toEqual([]);
  });
});
