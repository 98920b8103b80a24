// The apps the benchmarks compare. Every Redis-backed variant gets an ioredis client configured the same way
// (auto-pipelining on, as redisware's createRedis() does), unless the library cannot use ioredis at all.
import express, { type Express } from 'express';
import { rateLimit as expressRateLimit } from 'express-rate-limit';
import { Redis } from 'ioredis';
import { RedisStore as RateLimitRedisStore } from 'rate-limit-redis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { createRedis, rateLimit } from '../lib/index.js';

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

function finish(app: Express, clients: Array<{ quit(): Promise<unknown> }> = []) {
  app.get('/', (_req, res) => {
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
