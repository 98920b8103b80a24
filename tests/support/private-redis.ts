// A redis-server owned by one test file, for tests that stop, pause or restart Redis.
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll } from 'vitest';
import { createRedis } from '../../lib/connection.js';
import { type EmbeddedRedis, startEmbeddedRedis } from '../../support/embedded-redis.js';
import { silentLogger } from './redis.js';

/**
 * What the helpers below started, stopped after the file's tests. The hook is registered here, when a test file
 * imports this module: vitest ignores `afterAll` called from inside a hook or a test, where the helpers run.
 */
const teardown: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  await Promise.all(teardown.splice(0).map((step) => step()));
});

/** Starts a private redis-server, stopped after the file's tests; `restart()` brings it back on the same port. */
export async function privateRedis(): Promise<{
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
  restart(): Promise<void>;
}> {
  const server: EmbeddedRedis = await startEmbeddedRedis();
  teardown.push(() => server.stop());
  return {
    url: server.url,
    port: server.port,
    stop: () => server.stop(),
    async restart() {
      await server.stop();
      await server.start();
    },
  };
}

/** A loopback port nothing listens on (a listener is opened on port 0 and closed again). */
export async function unusedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** Resolves once `emitter` has emitted `event` `count` times. */
export function eventCount(emitter: NodeJS.EventEmitter, event: string, count: number): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    const onEvent = () => {
      if (++seen >= count) {
        emitter.off(event, onEvent);
        resolve();
      }
    };
    emitter.on(event, onEvent);
  });
}

/**
 * A private redis-server plus an admin connection (for CLIENT PAUSE / KILL / SCRIPT FLUSH), both closed after the
 * file's tests, and a factory for fast-reconnecting clients made by createRedis().
 */
export async function privateRedisWithAdmin() {
  const server = await privateRedis();
  const admin = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50, lazyConnect: true });
  admin.on('error', () => {});
  await admin.connect();
  teardown.unshift(() => admin.disconnect());
  const client = () =>
    createRedis({ url: server.url, logger: silentLogger, retry: { baseDelay: 10, maxDelay: 50 } }) as Redis;
  return { server, admin, client };
}
