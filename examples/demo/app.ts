// The demo app: one Express app showing each part of redisware, with a live page at GET /. server.ts runs it; the
// tests drive it directly and through a real browser.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
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

/**
 * Who can log in, and with what: demo users whose passwords are public (the README and the page list them), so that
 * the sessions panel has something to show. Nothing is behind them but the demo's own routes.
 */
export const demoUsers: Readonly<Record<string, string>> = { ada: 'lovelace', grace: 'hopper' };

const digest = (value: string) => createHash('sha256').update(value).digest();
const passwordDigests = new Map(Object.entries(demoUsers).map(([user, password]) => [user, digest(password)]));
/** Compared against for a user that does not exist, so that an unknown name takes as long as a wrong password. */
const noUserDigest = digest(randomBytes(32).toString('base64url'));

/** Whether `password` is `user`'s: digests of equal length compared in constant time. */
function passwordMatches(user: unknown, password: unknown): user is string {
  if (typeof user !== 'string' || typeof password !== 'string') return false;
  const expected = passwordDigests.get(user);
  const matches = timingSafeEqual(digest(password), expected ?? noUserDigest);
  return matches && expected !== undefined;
}

/** The demo users as the page and the error show them: `ada / lovelace, grace / hopper`. */
const demoUserList = Object.entries(demoUsers)
  .map(([user, password]) => `${user} / ${password}`)
  .join(', ');
const wrongPassword = `wrong user name or password (demo users: ${demoUserList})`;

/** What a session list shows of a session: never its id (a bearer token), only a hash to tell them apart. */
const sessionLabel = (id: string) => createHash('sha256').update(id).digest('hex').slice(0, 12);

const routes = {
  'GET /': 'the live demo page (JSON: this list, with Accept: application/json)',
  'GET /events': "the redisware events of this visitor's own requests, as server-sent events (the page counts them)",
  'GET /metrics': 'Prometheus metrics of those events (prom-client)',
  'GET /limited': 'rate limited: 5 requests per minute per client IP, then 429 with Retry-After',
  'POST /login': `log in as a demo user (${demoUserList}), JSON {"user":"ada","password":"lovelace"}: regenerates the session id, stores userId; a wrong password is a 401, the sixth in a minute a 429`,
  'GET /me': 'who am I: the session, and all sessions of the logged-in user (their ids hashed)',
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
  // The event stream tells whose request raised an event by the request's async context, which every middleware
  // keeps (batched Redis calls included).
  const shared = { redis, onEvent };
  const sessions = redisSession({
    ...shared,
    secret: options.sessionSecret ?? randomBytes(32).toString('base64url'),
    prefix: `${prefix}:session`,
    // The page's second "device" is an API client: it keeps its session id in this header, not in a cookie.
    header: 'x-session-id',
  });
  const limited = rateLimit({ ...shared, limit: 5, window: '1m', prefix: `${prefix}:rate` });
  // Failed logins per client IP: 5 a minute (a successful one is not counted).
  const loginAttempts = rateLimit({
    ...shared,
    limit: 5,
    window: '1m',
    prefix: `${prefix}:login-rate`,
    skipSuccessfulRequests: true,
  });
  const cache = createCache({ ...shared, prefix: `${prefix}:cache`, ttl: '30s' });

  // The stack an app has in front: compression, security headers (the page's scripts are same-origin files, as
  // helmet's Content-Security-Policy wants them), JSON bodies.
  app.use(stream.attribute); // each request's events go to its own visitor's page only
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
      sessionsOfThisUser: userId
        ? (await sessions.listByUser(userId)).map(({ id, createdAt, lastSeenAt }) => ({
            session: sessionLabel(id),
            current: id === req.session.id,
            createdAt,
            lastSeenAt,
          }))
        : [],
    });
  }

  app.post('/login', loginAttempts, async (req, res) => {
    const { user, password } = req.body ?? {};
    if (!passwordMatches(user, password)) return res.status(401).json({ error: wrongPassword });
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
