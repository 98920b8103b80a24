// Whether Redis answers: `await redisReady()` before an app starts serving, and `healthCheck()` for the probes of a
// load balancer or an orchestrator.
import type { Request, RequestHandler, Response } from 'express';
import { z } from 'zod';
import { defaultRedis, lazyRedis } from './connection.js';
import { durationName } from './duration.js';
import { RedisUnavailableError } from './errors.js';
import { parseOptions, redisSchema, timerDurationMs, withoutCredentials } from './options.js';
import { boundedCall } from './redis/bounded.js';
import { type AnyRedisClient, isCluster, type RedisClient } from './redis/client.js';

/** How often a PING refused while Redis starts (LOADING) is tried again. */
const retryPingMs = 100;

const readySchema = z.strictObject({
  /** How long to wait for Redis to answer. @default '5s' */
  timeout: timerDurationMs.default(5_000),
});

/** Options of {@link redisReady}. */
export type RedisReadyOptions = z.input<typeof readySchema>;

/** Where `client` connects, as a person reads it, without credentials. */
export function describeClient(client: RedisClient): string {
  if (isCluster(client)) {
    const nodes = (client as { startupNodes?: { host?: string; port?: number }[] }).startupNodes ?? [];
    return `cluster ${nodes.map((node) => `${node.host ?? '127.0.0.1'}:${node.port ?? 6379}`).join(',')}`;
  }
  const options = (client as unknown as { options?: Record<string, unknown> }).options ?? {};
  if (Array.isArray(options.sentinels) && options.name) return `sentinel master ${String(options.name)}`;
  if (options.path) return String(options.path);
  const db = options.db ? `/${String(options.db)}` : '';
  return withoutCredentials(`${String(options.host ?? '127.0.0.1')}:${String(options.port ?? 6379)}${db}`);
}

/** Whether `value` is a client rather than options (for `redisReady({ timeout })`). */
const isClient = (value: unknown) => redisSchema.safeParse(value).success;

/**
 * Resolves once Redis answers a PING through `client` (default: the shared `defaultRedis()`), waiting for it to
 * connect (a `lazyConnect` client is connected) within `timeout`. Rejects with a {@link RedisUnavailableError}
 * saying where it tried to connect (never with credentials), for how long, and the last connection error, or at
 * once for a client that has been closed. Nothing of it (listener, timer) is left on the client either way.
 *
 * `await redisReady()` before `app.listen()` makes a process that cannot reach Redis fail at start-up, and clearly.
 */
export async function redisReady(
  client?: AnyRedisClient | RedisReadyOptions,
  options?: RedisReadyOptions,
): Promise<void> {
  const optionsAlone = client !== undefined && options === undefined && !isClient(client);
  const { timeout } = parseOptions('redisReady', readySchema, optionsAlone ? client : options);
  if (client !== undefined && !optionsAlone && !isClient(client)) {
    throw new TypeError('redisReady: expected an ioredis 5 or 6 Redis or Cluster client, such as createRedis()');
  }
  const redis = optionsAlone || client === undefined ? defaultRedis() : (client as unknown as RedisClient);
  return answered(redis, timeout);
}

/** Resolves on the first PING `client` answers within `timeoutMs`; see {@link redisReady}. */
function answered(client: RedisClient, timeoutMs: number): Promise<void> {
  const where = describeClient(client);
  if (client.status === 'end') {
    return Promise.reject(new RedisUnavailableError(`redisReady: the client of Redis at ${where} has been closed`));
  }
  return new Promise((resolve, reject) => {
    let lastError: Error | undefined;
    let attempts = 0;
    let settled = false;
    let retry: NodeJS.Timeout | undefined;
    const failed = (error: Error) => {
      lastError = error;
    };
    const reconnecting = () => {
      attempts += 1;
    };
    const ping = () => {
      retry = undefined;
      if (settled || client.status !== 'ready') return;
      client.ping().then(
        () => finish(),
        (error: Error) => {
          if (settled) return;
          lastError = error;
          retry = setTimeout(ping, retryPingMs);
        },
      );
    };
    const closed = () => finish(new RedisUnavailableError(`redisReady: the client of Redis at ${where} was closed`));
    const deadline = setTimeout(() => {
      const tried = attempts > 0 ? `, after ${attempts} reconnection attempts` : '';
      const last = lastError ? `; last error: ${lastError.message}` : '';
      const message = `redisReady: Redis at ${where} did not answer within ${durationName(timeoutMs)} (${client.status}${tried}${last})`;
      finish(new RedisUnavailableError(withoutCredentials(message), { cause: lastError }));
    }, timeoutMs);
    function finish(error?: Error): void {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      if (retry) clearTimeout(retry);
      client.off('error', failed);
      client.off('node error', failed);
      client.off('reconnecting', reconnecting);
      client.off('ready', ping);
      client.off('end', closed);
      if (error) reject(error);
      else resolve();
    }
    client.on('error', failed);
    client.on('node error', failed);
    client.on('reconnecting', reconnecting);
    client.on('ready', ping);
    client.on('end', closed);
    if (client.status === 'wait') client.connect().catch(() => {});
    ping();
  });
}

const healthCheckSchema = z.strictObject({
  /** The client to probe. @default the shared `defaultRedis()` */
  redis: redisSchema.optional(),
  /** The longest a probe waits for Redis to answer its PING. @default '1s' */
  timeout: timerDurationMs.default(1_000),
});

/** Options of {@link healthCheck}. */
export type HealthCheckOptions = z.input<typeof healthCheckSchema>;

/**
 * An Express handler for the probes of a load balancer or an orchestrator: `app.get('/healthz', healthCheck())`.
 * It PINGs Redis within `timeout` and answers `200 { status: 'ok', redis: 'ready', latencyMs }`, or
 * `503 { status: 'unavailable', redis: <the connection's state>, error }`, never cached (`Cache-Control: no-store`).
 * While the connection is known to be down (closed, reconnecting, or not answering: see the README, "When Redis
 * fails") it answers 503 at once, without sending anything; it never answers 500 and never hangs.
 */
export function healthCheck(options?: HealthCheckOptions): RequestHandler {
  const { redis, timeout } = parseOptions('healthCheck', healthCheckSchema, options);
  const client = lazyRedis(redis);
  return function healthCheck(_req: Request, res: Response): void {
    const probed = client();
    const started = performance.now();
    res.set('Cache-Control', 'no-store');
    boundedCall(probed, timeout, () => probed.ping()).then(
      () => {
        const latencyMs = Math.round((performance.now() - started) * 10) / 10;
        res.status(200).json({ status: 'ok', redis: 'ready', latencyMs });
      },
      (error: Error) => {
        res.status(503).json({ status: 'unavailable', redis: probed.status, error: error.message });
      },
    );
  };
}
