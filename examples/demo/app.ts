// The demo app: one Express app showing each part of redisware, with a live page at GET /. server.ts runs it; the
// tests drive it directly and through a real browser.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import compression from 'compression';
import express, { type Express, type Request, type Response } from 'express';
import helmet from 'helmet';
import { Registry } from 'prom-client';
import {
  combineEventHooks,
  createCache,
  key,
  keyspace,
  type RedisClient,
  rateLimit,
  redisSession,
} from '../../lib/index.js';
import { prometheusMetrics } from '../../lib/metrics/index.js';
import { createEventStream } from './event-stream.js';

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

const publicDir = join(import.meta.dirname, 'public');

const routes = {
  'GET /': 'the live demo page (JSON: this list, with Accept: application/json)',
  'GET /events': 'every redisware event, as server-sent events (the page counts them)',
  'GET /metrics': 'Prometheus metrics of those events (prom-client)',
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
};

/** Whether a request is the page's `fetch` (it asks for JSON) rather than a form or curl following redirects. */
const wantsJson = (req: Request) => req.accepts(['html', 'json']) === 'json';

/** Builds the demo app on `redis`. */
export function createDemoApp(redis: RedisClient, options: DemoOptions = {}): Express {
  const app = express();
  const prefix = options.prefix ?? 'demo';
  const demoKey = keyspace(prefix);
  const stream = createEventStream();
  const metrics = prometheusMetrics({ registry: new Registry() });
  const onEvent = combineEventHooks(stream.onEvent, metrics.onEvent);
  const sessions = redisSession({
    redis,
    secret: options.sessionSecret ?? randomBytes(32).toString('base64url'),
    prefix: `${prefix}:session`,
    // The page's second "device" is an API client: it keeps its session id in this header, not in a cookie.
    header: 'x-session-id',
    onEvent,
  });
  const limited = rateLimit({ redis, limit: 5, window: '1m', prefix: `${prefix}:rate`, onEvent });
  const cache = createCache({ redis, prefix: `${prefix}:cache`, ttl: '30s', onEvent });

  // The stack an app has in front: compression, security headers (the page's scripts are same-origin files, as
  // helmet's Content-Security-Policy wants them), JSON bodies.
  app.use(compression());
  app.use(helmet({ contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } } }));
  app.use(express.json());

  app.get('/', (req, res) => {
    if (wantsJson(req)) res.json({ name: 'redisware demo', routes });
    else res.sendFile(join(publicDir, 'index.html'));
  });
  app.use(express.static(publicDir, { index: false }));
  app.get('/events', stream.handler);
  app.get('/metrics', metrics.handler);

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

  async function me(req: Request, res: Response) {
    req.session.visits = (req.session.visits ?? 0) + 1;
    const userId = req.session.userId;
    res.json({
      loggedIn: userId !== undefined,
      userId: userId ?? null,
      visits: req.session.visits,
      sessionsOfThisUser: userId ? await sessions.listByUser(userId) : [],
    });
  }

  app.post('/login', async (req, res) => {
    const given = req.query.user ?? req.body?.user;
    const user = typeof given === 'string' && given !== '' ? given.slice(0, 64) : 'demo-user';
    await req.session.regenerate(); // a new id on login: no session fixation
    req.session.userId = user;
    if (!wantsJson(req)) return res.redirect(303, '/me');
    await req.session.save(); // saved now (not as the response ends), so the user's session list includes it
    await me(req, res);
  });

  app.get('/me', me);

  app.post('/logout', async (req, res) => {
    await req.session.destroy();
    if (wantsJson(req)) res.json({ loggedIn: false });
    else res.redirect(303, '/me');
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
