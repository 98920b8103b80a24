// The demo app: one Express app showing each part of redisware. server.ts runs it; the tests drive it directly.
import { randomBytes } from 'node:crypto';
import express, { type Express } from 'express';
import { createCache, key, keyspace, type RedisClient, rateLimit, redisSession } from '../../lib/index.js';

declare module '../../lib/index.js' {
  interface SessionData {
    userId: string;
    visits: number;
  }
}

export interface DemoOptions {
  /** First part of every key the demo writes. @default 'demo' */
  prefix?: string;
  /** Signs session cookies; a random one (sessions end when the demo restarts) when not given. */
  sessionSecret?: string;
}

/** Builds the demo app on `redis`. */
export function createDemoApp(redis: RedisClient, options: DemoOptions = {}): Express {
  const app = express();
  const prefix = options.prefix ?? 'demo';
  const demoKey = keyspace(prefix);
  const sessions = redisSession({
    redis,
    secret: options.sessionSecret ?? randomBytes(32).toString('base64url'),
    prefix: `${prefix}:session`,
  });
  const limited = rateLimit({ redis, limit: 5, window: '1m', prefix: `${prefix}:rate` });
  const cache = createCache({ redis, prefix: `${prefix}:cache`, ttl: '30s' });

  app.get('/', (_req, res) => {
    res.json({
      name: 'redisware demo',
      routes: {
        'GET /': 'this list',
        'GET /limited': 'rate limited: 5 requests per minute per client IP, then 429 with Retry-After',
        'POST /login?user=ada': 'log in: regenerates the session id, stores userId (try: curl -c jar -b jar -X POST …)',
        'GET /me': 'who am I: the session, and all sessions of the logged-in user',
        'POST /logout': 'destroy this session (expired cookie sent)',
        'POST /logout-everywhere': 'destroy every session of the logged-in user',
        'GET /cached': 'a slow (500 ms) handler behind cacheResponse: MISS once, then HIT from Redis (X-Cache, Age)',
        'POST /cached/invalidate': 'invalidate the cached entry (by tag); the next GET /cached is a MISS again',
        'GET /key/:parts': "key() on the comma-separated parts, e.g. /key/user,abc123 → 'user:abc123'",
        'GET /visits': 'a counter in Redis (INCR and EXPIRE in one MULTI: the key always has a TTL)',
        'GET /health': 'PING Redis',
      },
    });
  });

  app.get('/limited', limited, (req, res) => {
    res.json({ message: 'within the limit', rateLimit: req.rateLimit });
  });

  app.get('/cached', cache.response({ tags: ['demo-report'] }), async (_req, res) => {
    await new Promise((resolve) => setTimeout(resolve, 500)); // a slow "database"
    res.json({ report: 'expensive', generatedAt: new Date().toISOString() });
  });

  app.post('/cached/invalidate', async (_req, res) => {
    res.json({ invalidated: await cache.invalidateTags('demo-report') });
  });

  app.use(['/login', '/me', '/logout', '/logout-everywhere'], sessions);

  app.post('/login', async (req, res) => {
    const user = typeof req.query.user === 'string' && req.query.user !== '' ? req.query.user : 'demo-user';
    await req.session.regenerate(); // a new id on login: no session fixation
    req.session.userId = user;
    res.redirect(303, '/me');
  });

  app.get('/me', async (req, res) => {
    req.session.visits = (req.session.visits ?? 0) + 1;
    const userId = req.session.userId;
    res.json({
      loggedIn: userId !== undefined,
      userId: userId ?? null,
      visits: req.session.visits,
      sessionsOfThisUser: userId ? await sessions.listByUser(userId) : [],
    });
  });

  app.post('/logout', async (req, res) => {
    await req.session.destroy();
    res.redirect(303, '/me');
  });

  app.post('/logout-everywhere', async (req, res) => {
    const userId = req.session.userId;
    const destroyed = userId ? await sessions.destroyByUser(userId) : 0;
    res.json({ destroyed });
  });

  app.get('/key/:parts', (req, res) => {
    const parts = req.params.parts.split(',');
    try {
      res.json({ parts, key: key(...parts), inDemoKeyspace: demoKey(...parts) });
    } catch (error) {
      res.status(400).json({ error: (error as Error).message });
    }
  });

  app.get('/visits', async (_req, res, next) => {
    try {
      const counter = demoKey('visits');
      const [[, visits]] = (await redis.multi().incr(counter).expire(counter, 3600).exec()) as [[null, number]];
      res.json({ key: counter, visits, ttlSeconds: 3600 });
    } catch (error) {
      next(error);
    }
  });

  app.get('/health', async (_req, res) => {
    try {
      res.json({ redis: await redis.ping() });
    } catch (error) {
      res.status(503).json({ redis: (error as Error).message });
    }
  });

  return app;
}
