// Sessions and the response cache together: public pages are cached once for everyone; a page made from the
// session is never shared (the cache sees that it read the session), or is cached per session with `perSession`.
//   npx tsx examples/sessions-and-cache.ts
import express from 'express';
import { createCache, type RedisClient, redisSession } from '../lib/index.js';
import { isMain, runExample } from './run.js';

// What this app keeps in a session (in an app: `declare module 'redisware'`).
declare module '../lib/index.js' {
  interface SessionData {
    name: string;
  }
}

export function createApp(redis: RedisClient, options: { prefix?: string } = {}) {
  const prefix = options.prefix ?? 'app';
  const cache = createCache({ redis, prefix: `${prefix}:cache`, ttl: '1m' });
  const app = express();
  // The session middleware in front of the cache: the cache knows which responses read a session.
  app.use(
    redisSession({ redis, prefix: `${prefix}:session`, secret: 'replace me with 32+ random characters, from the env' }),
  );

  app.post('/login/:name', async (req, res, next) => {
    try {
      await req.session.regenerate();
      req.session.name = req.params.name;
      res.json({ ok: true });
    } catch (error) {
      next(error); // Express 4 does not catch a rejected handler by itself
    }
  });

  // Public: the same for everyone, cached once.
  app.get('/news', cache.response(), (_req, res) => {
    res.json({ headline: 'Redis 8 is out', renderedAt: Date.now() });
  });

  // Personal, read from the session: served to its owner only, never stored for anyone else.
  app.get('/hello', cache.response(), (req, res) => {
    res.json({ hello: req.session.name ?? 'stranger', renderedAt: Date.now() });
  });

  // Personal and worth caching: one entry per session.
  app.get('/dashboard', cache.response({ perSession: true }), (req, res) => {
    res.json({ dashboardOf: req.session.name ?? 'stranger', renderedAt: Date.now() });
  });
  return app;
}

if (isMain(import.meta.url)) await runExample((redis) => createApp(redis));
