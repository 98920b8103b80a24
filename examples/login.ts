// Log in and out with sessions: a new session id at login (`regenerate`, against session fixation), the user id
// in the session, `destroy` at logout, and "log out everywhere" through the per-user index.
//   npx tsx examples/login.ts   then   curl -c jar -H 'content-type: application/json' -d '{"username":"ada","password":"lovelace"}' localhost:3000/login
import express from 'express';
import { type RedisClient, redisSession } from '../lib/index.js';
import { isMain, runExample } from './run.js';

// What this app keeps in a session (in an app: `declare module 'redisware'`).
declare module '../lib/index.js' {
  interface SessionData {
    userId: string;
  }
}

/** Stand-in for a user database with hashed passwords. */
const accounts = new Map([
  ['ada', { userId: 'u1', password: 'lovelace' }],
  ['grace', { userId: 'u2', password: 'hopper' }],
]);

export function createApp(redis: RedisClient, options: { prefix?: string; secret?: string } = {}) {
  const sessions = redisSession({
    redis,
    prefix: options.prefix ?? 'session',
    secret: options.secret ?? process.env.SESSION_SECRET ?? 'replace me with 32+ random characters, from the env',
  });
  const app = express();
  app.use(express.json());
  app.use(sessions);

  app.post('/login', async (req, res, next) => {
    try {
      const account = accounts.get(String(req.body?.username ?? ''));
      if (!account || account.password !== req.body?.password) {
        return void res.status(401).json({ error: 'wrong username or password' });
      }
      await req.session.regenerate(); // a new id: whatever id the client had before is worthless now
      req.session.userId = account.userId;
      res.json({ userId: account.userId });
    } catch (error) {
      next(error);
    }
  });

  app.get('/me', (req, res) => {
    if (!req.session.userId) return void res.status(401).json({ error: 'not logged in' });
    res.json({ userId: req.session.userId });
  });

  app.post('/logout', async (req, res, next) => {
    try {
      await req.session.destroy(); // deleted in Redis, and the cookie cleared
      res.json({ ok: true });
    } catch (error) {
      next(error);
    }
  });

  app.post('/logout-everywhere', async (req, res, next) => {
    try {
      if (!req.session.userId) return void res.status(401).json({ error: 'not logged in' });
      const ended = await sessions.destroyByUser(req.session.userId);
      res.json({ ended });
    } catch (error) {
      next(error);
    }
  });
  return app;
}

if (isMain(import.meta.url)) await runExample((redis) => createApp(redis));
