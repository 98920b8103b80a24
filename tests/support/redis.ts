// Helpers for tests that talk to the suite's real Redis (see global-setup.ts).
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, inject } from 'vitest';
import { createRedis } from '../../lib/connection.js';
import type { Logger } from '../../lib/logger.js';
import { boundedCaller, type OutageListener } from '../../lib/redis/bounded.js';
import type { RedisClient } from '../../lib/redis/client.js';
import type { RedisScript } from '../../lib/redis/script.js';

/** The suite's Redis: REDIS_URL, or the private server the global setup started. */
export const redisUrl = (): string => inject('redisUrl');

/** A logger that keeps what it is given, for assertions. */
export interface RecordingLogger extends Logger {
  warnings: string[];
  errors: string[];
}

export function recordingLogger(): RecordingLogger {
  const warnings: string[] = [];
  const errors: string[] = [];
  return {
    warnings,
    errors,
    warn: (...args: unknown[]) => warnings.push(args.map(String).join(' ')),
    error: (...args: unknown[]) => errors.push(args.map(String).join(' ')),
  };
}

export const silentLogger: Logger = { warn() {}, error() {} };

const ignoreOutages: OutageListener = { failed() {}, recovered() {} };

/** Script calls made the way every middleware makes them (batched per turn), with a budget no test reaches. */
export function scriptCaller(redis: RedisClient, outage = ignoreOutages, timeoutMs = 10_000, logger = silentLogger) {
  return boundedCaller({ client: () => redis, timeoutMs, outage, logger });
}

/** Runs `script` as a middleware would (see {@link scriptCaller}). */
export function runScript(
  redis: RedisClient,
  script: RedisScript,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  return scriptCaller(redis).run(script, keys, args);
}

/** A key prefix no other test (or other user of an external REDIS_URL) shares. */
export function uniquePrefix(label: string): string {
  return `redisware-test:${label}:${randomUUID().slice(0, 8)}`;
}

/** Deletes the keys under `prefix` (only this test's own keys: never FLUSHDB). */
export async function deleteKeysUnder(client: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    if (keys.length) await client.del(...keys);
  } while (cursor !== '0');
}

/**
 * A connection to the suite's Redis for one test file, plus a prefix for its keys.
 * Everything under the prefix is deleted and the connections closed after the file's tests.
 */
export function useTestRedis(label: string): {
  prefix: string;
  client: () => Redis;
  newClient: () => Redis;
} {
  const prefix = uniquePrefix(label);
  const opened: Redis[] = [];
  const newClient = () => {
    const client = createRedis({ url: redisUrl(), logger: silentLogger }) as Redis;
    opened.push(client);
    return client;
  };
  let main: Redis | undefined;
  afterAll(async () => {
    main ??= newClient();
    await deleteKeysUnder(main, prefix);
    await Promise.all(opened.map((c) => c.quit().catch(() => c.disconnect())));
  });
  return {
    prefix,
    client: () => {
      main ??= newClient();
      return main;
    },
    newClient,
  };
}

/**
 * Records the commands one client sends (and the commands its Lua scripts run), seen from the server via MONITOR.
 * `settle()` waits until everything sent so far has been observed, using an ECHO marker as a barrier.
 */
export async function watchCommands(
  client: RedisClient & Redis,
  serverUrl = redisUrl(),
): Promise<{
  sent: string[][];
  insideScripts: string[][];
  settle(): Promise<void>;
  reset(): void;
  stop(): void;
}> {
  const info = (await client.client('INFO')) as string;
  const address = /addr=(\S+)/.exec(info)?.[1];
  const connection = new Redis(serverUrl);
  const monitor = await connection.monitor();
  connection.disconnect();
  const sent: string[][] = [];
  const insideScripts: string[][] = [];
  const waiting = new Map<string, () => void>();
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (source === address) {
      if (args[0]?.toLowerCase() === 'echo' && waiting.has(args[1])) {
        waiting.get(args[1])?.();
        return;
      }
      sent.push(args);
    } else if (source === 'lua') {
      insideScripts.push(args);
    }
  });
  return {
    sent,
    insideScripts,
    async settle() {
      const marker = `settle-${randomUUID()}`;
      const seen = new Promise<void>((resolve) => waiting.set(marker, resolve));
      await client.echo(marker);
      await seen;
      waiting.delete(marker);
    },
    reset() {
      sent.length = 0;
      insideScripts.length = 0;
    },
    stop() {
      monitor.disconnect();
    },
  };
}

/**
 * Resolves once `channel` has at least `count` subscribers, summed over `servers` (every node of a Cluster), so a
 * test publishes only once its subscribers can hear it; rejects after two seconds.
 */
export async function subscribers(servers: Redis[], channel: string, count: number): Promise<void> {
  for (let waited = 0; waited < 2_000; waited += 10) {
    const counts = await Promise.all(
      servers.map(async (server) => Number(((await server.call('PUBSUB', 'NUMSUB', channel)) as unknown[])[1])),
    );
    if (counts.reduce((sum, n) => sum + n, 0) >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`fewer than ${count} subscribers on ${channel}`);
}
