// The apps the benchmarks compare. Every Redis-backed variant gets an ioredis client configured the same way
// (auto-pipelining on, as redisware's createRedis() does), unless the library cannot use ioredis at all.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import compression from 'compression';
import express, { type Express, type RequestHandler } from 'express';
import { rateLimit as expressRateLimit } from 'express-rate-limit';
import { Redis } from 'ioredis';
import { Redis as Redis6 } from 'ioredis6';
import { Registry } from 'prom-client';
import { RedisStore as RateLimitRedisStore } from 'rate-limit-redis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { createClient } from 'redis';

// The benchmark measures what users run: the build in dist/ (`npm run bench` builds it first).
const entry = existsSync(new URL('../dist/index.js', import.meta.url))
  ? new URL('../dist/index.js', import.meta.url).href
  : '../lib/index.js';
const { cacheResponse, createRedis, rateLimit, redisSession }: typeof import('../lib/index.js') = await import(entry);
const metricsEntry = existsSync(new URL('../dist/metrics/index.js', import.meta.url))
  ? new URL('../dist/metrics/index.js', import.meta.url).href
  : '../lib/metrics/index.js';
const { prometheusMetrics }: typeof import('../lib/metrics/index.js') = await import(metricsEntry);

// Loaded untyped: @types/express-session would declare req.session a second time, clashing with ours.
const require = createRequire(import.meta.url);
const expressSession = require('express-session') as (options: Record<string, unknown>) => RequestHandler;
const { RedisStore: ConnectRedisStore } = require('connect-redis') as {
  RedisStore: new (options: Record<string, unknown>) => unknown;
};
export const sessionSecret = 'benchmark-secret-benchmark-secret-0123456789';

export interface Scenario {
  /** Requests allowed per window (rate-limit scenarios). */
  limit?: number;
  /** Put `compression()` in front of everything (cache scenarios). */
  compression?: boolean;
}

export interface Variant {
  build(redisUrl: string, scenario: Scenario): Promise<{ app: Express; close(): Promise<void> }>;
}

/** Builds `variant` for `scenario` (every app it makes gets the scenario's middleware in front). */
export function build(variant: Variant, redisUrl: string, scenario: Scenario) {
  current = scenario;
  return variant.build(redisUrl, scenario);
}

const body = 'ok';
const windowMs = 15 * 60_000;

/** The scenario of the server being built (a server process builds one app). */
let current: Scenario = {};

export function baseApp(): Express {
  const app = express();
  if (current.compression) app.use(compression());
  app.set('trust proxy', 1);
  app.set('etag', false);
  return app;
}

type Counted = { counter?: number; user?: string } | undefined;

/** JSON documents of about 1 KB and 100 KB, and the same bytes pre-serialised for the bare baseline. */
const document1k = {
  items: Array.from({ length: 21 }, (_, i) => ({ id: i, name: `item number ${i}`, tags: ['a', 'b'] })),
};
const document100k = {
  items: Array.from({ length: 1_900 }, (_, i) => ({ id: i, name: `item number ${i}`, tags: ['a', 'b'] })),
};
const bytes1k = Buffer.from(JSON.stringify(document1k));
const bytes100k = Buffer.from(JSON.stringify(document100k));
const passThrough: RequestHandler = (_req, _res, next) => next();

export function finish(app: Express, clients: Array<{ quit(): Promise<unknown> }> = [], cached?: RequestHandler) {
  app.get('/', (_req, res) => {
    res.send(body);
  });
  // Cache scenarios. Without a cache, the JSON routes send pre-serialised bytes from memory (the best case
  // a cache HIT can be compared with); /db is a handler that waits 5 ms for its "database".
  app.get('/json-1k', cached ?? passThrough, (_req, res) => {
    if (cached) res.json(document1k);
    else res.type('application/json').send(bytes1k);
  });
  app.get('/json-100k', cached ?? passThrough, (_req, res) => {
    if (cached) res.json(document100k);
    else res.type('application/json').send(bytes100k);
  });
  // The outage suite: the same handler with or without the middlewares (res.json of the same document).
  app.get('/page', cached ?? passThrough, (_req, res) => {
    res.json(document1k);
  });
  app.get('/db', cached ?? passThrough, async (_req, res) => {
    await new Promise((resolve) => setTimeout(resolve, 5));
    res.json(document1k);
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
/** The client an app on the current ioredis major already has: its own copy, its own (default) options. */
const appsOwnIoredis6 = (url: string) => new Redis6(url) as unknown as Redis;

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

  "redisware rateLimit(), the app's own ioredis 6 client": {
    async build(url, { limit = 1e9 }) {
      const redis = appsOwnIoredis6(url);
      const app = baseApp();
      app.use(rateLimit({ redis, limit, window: windowMs, prefix: 'bench-rw6' }));
      return finish(app, [redis]);
    },
  },

  'redisware rateLimit(), two rules (the limit per 15 minutes and per day)': {
    async build(url, { limit = 1e9 }) {
      const redis = createRedis(url);
      const app = baseApp();
      const rules = [
        { limit, window: windowMs },
        { limit: Math.max(limit, 1_000), window: '1d' },
      ];
      app.use(rateLimit({ redis, limit: rules, prefix: 'bench-rw-rules' }));
      return finish(app, [redis]);
    },
  },

  'redisware rateLimit(), batch: false': {
    async build(url, { limit = 1e9 }) {
      const redis = createRedis(url);
      const app = baseApp();
      app.use(rateLimit({ redis, limit, window: windowMs, prefix: 'bench-rw-unbatched', batch: false }));
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

/**
 * Not a library: the least any middleware that waits for Redis can cost. It passes each request on once one PING
 * per event-loop turn (shared by the turn's requests) has answered — no script, no headers, no client key.
 */
variants['floor: empty middleware awaiting one PING per turn'] = {
  async build(url) {
    const redis = createRedis(url);
    const app = baseApp();
    let waiting: Array<() => void> = [];
    const release = () => {
      const turn = waiting;
      waiting = [];
      const passAll = () => {
        for (const next of turn) next();
      };
      redis.ping().then(passAll, passAll);
    };
    app.use((_req, _res, next) => {
      if (waiting.push(next) === 1) setImmediate(release);
    });
    return finish(app, [redis]);
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

variants["redisware redisSession(), the app's own ioredis 6 client"] = {
  async build(url) {
    const redis = appsOwnIoredis6(url);
    const app = baseApp();
    app.use(redisSession({ redis, secret: sessionSecret, prefix: 'bench-rw6-session' }));
    return finish(app, [redis]);
  },
};

variants['redisware redisSession(), batch: false'] = {
  async build(url) {
    const redis = createRedis(url);
    const app = baseApp();
    app.use(redisSession({ redis, secret: sessionSecret, prefix: 'bench-rw-unbatched-session', batch: false }));
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

variants['redisware cacheResponse()'] = {
  async build(url) {
    const redis = createRedis(url);
    return finish(baseApp(), [redis], cacheResponse({ redis, ttl: '1h', prefix: 'bench-rw-cache' }));
  },
};

variants["redisware cacheResponse({ freshness: 'http' }), the response's Cache-Control: max-age=3600"] = {
  async build(url) {
    const redis = createRedis(url);
    const cached = cacheResponse({ redis, ttl: '1h', freshness: 'http', prefix: 'bench-rw-http-cache' });
    return finish(baseApp(), [redis], (req, res, next) => {
      res.setHeader('Cache-Control', 'max-age=3600');
      cached(req, res, next);
    });
  },
};

variants["redisware cacheResponse(), the app's own ioredis 6 client"] = {
  async build(url) {
    const redis = appsOwnIoredis6(url);
    return finish(baseApp(), [redis], cacheResponse({ redis, ttl: '1h', prefix: 'bench-rw6-cache' }));
  },
};

variants['redisware cacheResponse(), batch: false'] = {
  async build(url) {
    const redis = createRedis(url);
    return finish(
      baseApp(),
      [redis],
      cacheResponse({ redis, ttl: '1h', prefix: 'bench-rw-unbatched-cache', batch: false }),
    );
  },
};

variants['apicache 1.6 (node-redis 3)'] = {
  async build(url) {
    // apicache only talks to node-redis v3 (with anything else it silently caches in memory).
    const redis3 = require('redis3') as { createClient(options: { url: string }): { quit(cb?: () => void): void } };
    const apicache = require('apicache') as {
      newInstance(options: Record<string, unknown>): { middleware(duration: string): RequestHandler };
    };
    const client = redis3.createClient({ url });
    const cache = apicache.newInstance({ redisClient: client });
    return finish(baseApp(), [{ quit: async () => client.quit() }], cache.middleware('1 hour'));
  },
};

/** A build of redisware: this one, or an earlier one to compare with (BENCH_BASELINE_DIST). */
type Library = typeof import('../lib/index.js');
const thisBuild: Library = { cacheResponse, createRedis, rateLimit, redisSession } as Library;

/**
 * The three everyday cases of the events suite (rateLimit, a session read, a cache HIT) on `lib`, named
 * `redisware <middleware>, <label>`, each middleware given `extra` options (its `onEvent`).
 */
function onEventVariants(lib: Library, label: string, prefix: string, extra: () => object): void {
  variants[`redisware rateLimit(), ${label}`] = {
    async build(url, { limit = 1e9 }) {
      const redis = lib.createRedis(url);
      const app = baseApp();
      app.use(lib.rateLimit({ redis, limit, window: windowMs, prefix, ...extra() }));
      return finish(app, [redis]);
    },
  };
  variants[`redisware redisSession(), ${label}`] = {
    async build(url) {
      const redis = lib.createRedis(url);
      const app = baseApp();
      app.use(lib.redisSession({ redis, secret: sessionSecret, prefix: `${prefix}-session`, ...extra() }));
      return finish(app, [redis]);
    },
  };
  variants[`redisware cacheResponse(), ${label}`] = {
    async build(url) {
      const redis = lib.createRedis(url);
      return finish(baseApp(), [redis], lib.cacheResponse({ redis, ttl: '1h', prefix: `${prefix}-cache`, ...extra() }));
    },
  };
}

/**
 * BENCH_BASELINE_DIST: the build of an earlier commit (its dist/index.js), to compare "no hook" with the code
 * before `onEvent` existed, in the same run (see bench/README.md).
 */
const baselineDist = process.env.BENCH_BASELINE_DIST;
if (baselineDist) {
  const baseline: Library = await import(new URL(`file://${baselineDist}`).href);
  onEventVariants(baseline, process.env.BENCH_BASELINE_LABEL ?? 'before onEvent', 'bench-rw-baseline', () => ({}));
}

/**
 * The cost of `onEvent`: each middleware with no hook (the variants above), with a hook that does nothing, and
 * with prometheusMetrics() counting every event.
 */
onEventVariants(thisBuild, 'a no-op onEvent', 'bench-rw-noop', () => ({ onEvent: () => {} }));
onEventVariants(thisBuild, 'onEvent: prometheusMetrics()', 'bench-rw-prometheus', () => ({
  onEvent: prometheusMetrics({ registry: new Registry() }).onEvent,
}));
