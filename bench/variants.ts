// The apps the benchmarks compare. Every Redis-backed variant gets an ioredis client configured the same way
// (auto-pipelining on, as redisware's createRedis() does), unless the library cannot use ioredis at all.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import express, { type Express, type RequestHandler } from 'express';
import { rateLimit as expressRateLimit } from 'express-rate-limit';
import { Redis } from 'ioredis';
import { RedisStore as RateLimitRedisStore } from 'rate-limit-redis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { createClient } from 'redis';

// The benchmark measures what users run: the build in dist/ (`npm run bench` builds it first).
const entry = existsSync(new URL('../dist/index.js', import.meta.url))
  ? new URL('../dist/index.js', import.meta.url).href
  : '../lib/index.js';
const { createRedis, rateLimit, redisSession }: typeof import('../lib/index.js') = await import(entry);

// Loaded untyped: @types/express-session would declare req.session a second time, clashing with ours.
const require = createRequire(import.meta.url);
const expressSession = require('express-session') as (options: Record<string, unknown>) => RequestHandler;
const { RedisStore: ConnectRedisStore } = require('connect-redis') as {
  RedisStore: new (options: Record<string, unknown>) => unknown;
};
const sessionSecret = 'benchmark-secret-benchmark-secret-0123456789';

export interface Scenario {
  /** Requests allowed per window (rate-limit scenarios). */
  limit?: number;
}

export interface Variant {
  build(redisUrl: string, scenario: Scenario): Promise<{ app: Express; close(): Promise<void> }>;
}

const body = 'ok';
const windowMs = 15 * 60_000;

function baseApp(): Express {
  const app = express();
  app.set('trust proxy', 1);
  app.set('etag', false);
  return app;
}

type Counted = { counter?: number; user?: string } | undefined;

function finish(app: Express, clients: Array<{ quit(): Promise<unknown> }> = []) {
  app.get('/', (_req, res) => {
    res.send(body);
  });
  // Session scenarios: /login creates a session; /read only reads it; /write changes it.
  app.get('/login', (req, res) => {
    const session = req.session as unknown as Counted;
    if (session) session.user = 'bench-user';
    res.send(body);
  });
  app.get('/read', (req, res) => {
    const session = req.session as unknown as Counted;
    res.send(session?.user ?? body);
  });
  app.get('/write', (req, res) => {
    const session = req.session as unknown as Counted;
    if (session) session.counter = (session.counter ?? 0) + 1;
    res.send(body);
  });
  return { app, close: async () => void (await Promise.all(clients.map((c) => c.quit()))) };
}

const ioredis = (url: string) => new Redis(url, { enableAutoPipelining: true });

export const variants: Record<string, Variant> = {
  'bare Express': {
    async build() {
      return finish(baseApp());
    },
  },

  'redisware rateLimit()': {
    async build(url, { limit = 1e9 }) {
      const redis = createRedis(url);
      const app = baseApp();
      app.use(rateLimit({ redis, limit, window: windowMs, prefix: 'bench-rw' }));
      return finish(app, [redis]);
    },
  },

  'express-rate-limit + rate-limit-redis': {
    async build(url, { limit = 1e9 }) {
      const redis = ioredis(url);
      const app = baseApp();
      app.use(
        expressRateLimit({
          windowMs,
          limit,
          validate: false,
          store: new RateLimitRedisStore({
            prefix: 'bench-erl:',
            sendCommand: (command: string, ...args: string[]) => redis.call(command, ...args) as never,
          }),
        }),
      );
      return finish(app, [redis]);
    },
  },

  'rate-limiter-flexible': {
    async build(url, { limit = 1e9 }) {
      const redis = ioredis(url);
      const limiter = new RateLimiterRedis({
        storeClient: redis,
        points: limit,
        duration: windowMs / 1000,
        keyPrefix: 'bench-rlf',
      });
      const app = baseApp();
      app.use((req, res, next) => {
        limiter.consume(req.ip ?? 'unknown').then(
          () => next(),
          () => void res.status(429).send('Too Many Requests'),
        );
      });
      return finish(app, [redis]);
    },
  },
};

variants['redisware redisSession()'] = {
  async build(url) {
    const redis = createRedis(url);
    const app = baseApp();
    app.use(redisSession({ redis, secret: sessionSecret, prefix: 'bench-rw-session' }));
    return finish(app, [redis]);
  },
};

variants['express-session + connect-redis 9 (node-redis 5)'] = {
  async build(url) {
    // connect-redis 9 refuses ioredis, so it gets the node-redis client it requires.
    const client = createClient({ url });
    await client.connect();
    const app = baseApp();
    app.use(
      expressSession({
        store: new ConnectRedisStore({ client, prefix: 'bench-es-session:' }),
        secret: sessionSecret,
        resave: false,
        saveUninitialized: false,
      }),
    );
    return finish(app, [{ quit: () => client.quit() }]);
  },
};
