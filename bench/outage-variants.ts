// The outage suite's apps: one route behind rateLimit(), redisSession() and cacheResponse(), with Redis up, and with
// Redis down (a port nothing listens on: every connection attempt refused, as after kill -9 of redis-server).
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Redis } from 'ioredis';
import { baseApp, finish, sessionSecret, variants } from './variants.js';

const entry = existsSync(new URL('../dist/index.js', import.meta.url))
  ? new URL('../dist/index.js', import.meta.url).href
  : '../lib/index.js';
const { cacheResponse, createRedis, rateLimit, redisSession }: typeof import('../lib/index.js') = await import(entry);

/** Each middleware logs the outage once; the benchmark has no use for the lines. */
const quiet = { warn() {}, error() {} };

/** A loopback port nothing listens on. */
async function refusedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** The three middlewares on `redis`, in front of /page (see `finish`). */
function stacked(redis: Redis, prefix: string) {
  const app = baseApp();
  app.use(rateLimit({ redis, limit: 1e9, window: '15m', prefix: `${prefix}-rate`, logger: quiet }));
  app.use(
    redisSession({
      redis,
      secret: sessionSecret,
      prefix: `${prefix}-session`,
      onRedisError: 'continue',
      logger: quiet,
    }),
  );
  const disconnect = { quit: async () => redis.disconnect() };
  return finish(app, [disconnect], cacheResponse({ redis, ttl: '1h', prefix: `${prefix}-cache`, logger: quiet }));
}

variants['redisware rateLimit() + redisSession() + cacheResponse(), Redis up'] = {
  async build(url) {
    return stacked(createRedis({ url, logger: quiet }) as Redis, 'bench-rw-up');
  },
};

variants['redisware rateLimit() + redisSession() + cacheResponse(), Redis down (connection refused)'] = {
  async build() {
    const redis = createRedis({ url: `redis://127.0.0.1:${await refusedPort()}`, logger: quiet }) as Redis;
    return stacked(redis, 'bench-rw-down');
  },
};
