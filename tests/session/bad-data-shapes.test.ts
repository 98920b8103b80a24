// Bad data under the session keys is a missing session (fresh id, new cookie),
// never a 500 that sticks to the cookie, never obeyed. SessionStore under express-session, in a real stack.
import { createHmac } from 'node:crypto';
import compression from 'compression';
import cors from 'cors';
import express, { type NextFunction, type Request, type Response } from 'express';
import session from 'express-session';
import helmet from 'helmet';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { redisSession, SessionStore } from '../../lib/index.js';
import { signSessionId } from '../../lib/session/signature.js';
import { secret, sessionApp } from '../session/support.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('session-bad-data-shapes');
const storeSecret = 'a test secret for express-session';

/** express-session's signed cookie for `sid` (cookie-signature: HMAC-SHA256, base64 without padding). */
function expressSessionCookie(sid: string): string {
  const signature = createHmac('sha256', storeSecret).update(sid).digest('base64').replace(/=+$/, '');
  return `connect.sid=${encodeURIComponent(`s:${sid}.${signature}`)}`;
}

function storeApp() {
  const prefix = `${uniquePrefix('sess')}:`;
  const store = new SessionStore({ redis: redis.client(), prefix, logger: silentLogger });
  const app = express();
  app.use(helmet(), cors(), compression(), express.json());
  app.use(session({ store, secret: storeSecret, resave: false, saveUninitialized: false, cookie: { maxAge: 60_000 } }));
  app.get('/me', (req, res) => {
    res.json({ user: (req.session as unknown as { user?: string }).user ?? null, id: req.sessionID });
  });
  app.post('/login', (req, res) => {
    (req.session as unknown as { user: string }).user = 'alice';
    res.json({ id: req.sessionID });
  });
  app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).json({ error: error.message });
  });
  return { app, prefix };
}

describe('SessionStore: a stored value that is JSON of the wrong shape', () => {
  const planted: [string, string][] = [
    ['an object without a cookie', '{"user":"mallory"}'],
    ['an empty object', '{}'],
    ['a cookie that is null', '{"cookie":null,"user":"mallory"}'],
    ['a cookie that is a string', '{"cookie":"yes","user":"mallory"}'],
  ];
  it.each(planted)('%s is a missing session: 200, a fresh id, never a 500 on every request', async (_what, value) => {
    const { app, prefix } = storeApp();
    const sid = 'planted-sid-0001';
    await redis.client().set(prefix + sid, value, 'PX', 60_000);
    const cookie = expressSessionCookie(sid);
    const read = await request(app).get('/me').set('Cookie', cookie);
    expect(read.body.error ?? null).toBeNull();
    expect(read.status).toBe(200);
    expect(read.body.id).not.toBe(sid);
    const login = await request(app).post('/login').set('Cookie', cookie);
    expect(login.status).toBe(200);
  });
});

describe('redisSession: a session hash created in the future', () => {
  it('is bound by the absolute timeout all the same (never a session that lives for ever)', async () => {
    const prefix = uniquePrefix('future');
    const middleware = redisSession({
      secret,
      redis: redis.client(),
      prefix,
      logger: silentLogger,
      ttl: '1h',
      absoluteTimeout: '1s',
    });
    const app = sessionApp(middleware);
    const id = 'future-session-id-0000000000000000000000001';
    const now = Number((await redis.client().time())[0]) * 1000;
    // Written by another program (or a server whose clock ran years ahead): created in ten years.
    await redis
      .client()
      .hset(`${prefix}:${id}`, { _c: String(now + 10 * 365 * 86_400_000), _s: String(now), 'd:userId': '"admin"' });
    await redis.client().pexpire(`${prefix}:${id}`, 3_600_000);
    const cookie = `sid=${encodeURIComponent(signSessionId(id, secret))}`;
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const read = await request(app).get('/').set('Cookie', cookie);
    expect(read.status).toBe(200);
    expect(read.body.data).toEqual({});
  });
});
