import { Cluster, type ClusterNode, type ClusterOptions, type Redis, type RedisOptions } from 'ioredis';
import { z } from 'zod';
import { RedisUnavailableError } from './errors.js';
import { type Emit, eventEmitter, reportRedisError } from './events.js';
import { type Logger, resolveLogger } from './logger.js';
import { durationMs, loggerSchema, onEventOption, parseOptions, withoutCredentials } from './options.js';
import type { RedisClient } from './redis/client.js';
import { EndingCluster, EndingRedis, ended, quitGraceMs } from './redis/closing.js';
import { followFailovers } from './redis/failover.js';
import { closeSubscriber } from './redis/subscriber.js';

/** Reconnection schedule: exponential backoff with jitter. */
export interface RetryOptions {
  /** Delay before the first reconnection attempt. @default '50ms' */
  baseDelay?: number | string;
  /** Upper bound of any delay, so service resumes within about this long after Redis returns. @default '1s' */
  maxDelay?: number | string;
  /** Give up after this many consecutive failed attempts. @default Infinity (reconnect forever) */
  maxAttempts?: number;
}

const retrySchema = z.strictObject({
  baseDelay: durationMs.default(50),
  maxDelay: durationMs.default(1000),
  maxAttempts: z.number().int().positive().or(z.literal(Number.POSITIVE_INFINITY)).default(Number.POSITIVE_INFINITY),
});

/** A resolved retry schedule (all durations in milliseconds). */
export type ResolvedRetry = z.output<typeof retrySchema>;

/** `redis://[user:pass@]host[:port][/db]`, or `rediss://` for TLS: a URL that parses, with a port in range. */
const redisUrlSchema = z.string().refine(
  (value) => {
    if (!/^rediss?:\/\//i.test(value) || !URL.canParse(value)) return false;
    const { hostname, port } = new URL(value);
    return hostname !== '' && (port === '' || Number(port) <= 65535);
  },
  { message: 'expected a redis:// or rediss:// URL' },
);

const nodeSchema = z.union([
  redisUrlSchema,
  z.strictObject({ host: z.string().min(1), port: z.number().int().min(1).max(65535) }),
]);

const hostPortSchema = z.strictObject({ host: z.string().min(1), port: z.number().int().min(1).max(65535) });

const connectionSchema = z.strictObject({
  /** `redis://[user:pass@]host:port[/db]`; `rediss://` means TLS. @default process.env.REDIS_URL, then redis://127.0.0.1:6379 */
  url: redisUrlSchema.optional(),
  host: z.string().min(1).optional(),
  port: z.number().int().min(1).max(65535).optional(),
  username: z.string().optional(),
  password: z.string().optional(),
  db: z.number().int().min(0).optional(),
  tls: z.record(z.string(), z.unknown()).optional(),
  /** Sent as CLIENT SETNAME, which refuses spaces and anything outside printable ASCII (ioredis ignores the refusal). */
  connectionName: z
    .string()
    .regex(/^[!-~]+$/, 'must be printable ASCII without spaces (CLIENT SETNAME refuses anything else)')
    .optional(),
  lazyConnect: z.boolean().optional(),
  connectTimeout: durationMs.optional(),
  enableOfflineQueue: z.boolean().optional(),
  /** @default true */
  enableAutoPipelining: z.boolean().default(true),
  /** @default 3 */
  maxRetriesPerRequest: z.number().int().min(0).nullable().default(3),
  /** Rejects a command that gets no reply within this long. @default none */
  commandTimeout: durationMs.optional(),
  retry: retrySchema.default({
    baseDelay: 50,
    maxDelay: 1000,
    maxAttempts: Number.POSITIVE_INFINITY,
  }),
  /** Receives one warning per outage. @default console */
  logger: loggerSchema.optional(),
  /** Receives a `redis.error` event (`source: 'connection'`) for every connection error. */
  onEvent: onEventOption,
  /** Connect to a Redis Cluster instead: `{ nodes: ['redis://10.0.0.1:7000', { host, port }] }`. */
  cluster: z
    .strictObject({
      nodes: z.array(nodeSchema).min(1),
      /** Extra ioredis `ClusterOptions`, passed through. */
      options: z.record(z.string(), z.unknown()).optional(),
    })
    .optional(),
  /** Connect through Redis Sentinel: `{ sentinels: [{ host, port }], name: 'mymaster' }`. */
  sentinel: z
    .strictObject({
      sentinels: z.array(hostPortSchema).min(1),
      name: z.string().min(1),
      sentinelPassword: z.string().optional(),
    })
    .optional(),
});

/** Options of {@link createRedis}. */
export type CreateRedisOptions = z.input<typeof connectionSchema>;

/**
 * Delay before reconnection attempt `attempt` (1-based): exponential from `baseDelay`, capped at `maxDelay`,
 * with "equal jitter" (half fixed, half random) so many clients do not reconnect in lockstep.
 * Returns `null` (stop retrying) past `maxAttempts`.
 */
export function backoffDelay(attempt: number, retry: ResolvedRetry, random: () => number = Math.random): number | null {
  if (attempt > retry.maxAttempts) return null;
  const ceiling = Math.min(retry.maxDelay, retry.baseDelay * 2 ** Math.min(attempt - 1, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** The URL used when none is given. */
export function defaultRedisUrl(): string {
  return process.env.REDIS_URL || 'redis://127.0.0.1:6379';
}

function toClusterNode(node: z.output<typeof nodeSchema>): ClusterNode {
  if (typeof node !== 'string') return node;
  const url = new URL(node);
  return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 6379) };
}

/**
 * Logs a refused or dropped connection once per outage, and once more when the connection is ready again after it:
 * `redisware: Redis connection to <label> is back after <n> ms`, also reported as a `redis.recovered` event
 * (`source: 'connection'`), the outage counted from the connection's loss (or its first failure to connect). A client
 * without an `error` listener would crash the process.
 */
function reportOutages(client: RedisClient, logger: Logger, label: string, emit: Emit | undefined): void {
  let down = false;
  /** When the connection was lost (its `close`), or first failed to connect; 0 while it is up. */
  let lostAt = 0;
  const report = (error: Error) => reportRedisError(emit, 'connection', 'reconnecting', 'connection', error);
  client.on('error', (error: Error) => {
    report(error);
    if (down) return;
    down = true;
    lostAt ||= Date.now();
    logger.warn(`redisware: Redis connection to ${label} failed: ${error.message}`);
  });
  client.on('close', () => {
    lostAt ||= Date.now();
  });
  client.on('ready', () => {
    const since = lostAt;
    lostAt = 0;
    if (!down) return;
    down = false;
    const downMs = Date.now() - since;
    logger.warn(`redisware: Redis connection to ${label} is back after ${downMs} ms`);
    emit?.({ type: 'redis.recovered', source: 'connection', downMs });
  });
  // A Cluster reports a node's connection failing as 'node error' (its 'error' is for the cluster as a whole).
  if (emit && client instanceof Cluster) client.on('node error', report);
}

/**
 * Creates an ioredis client: `Redis`, or `Cluster` when `cluster` is given, or a Sentinel-backed `Redis`.
 *
 * Defaults: `REDIS_URL` (then redis://127.0.0.1:6379), reconnection forever with jittered backoff capped at 1 s,
 * `maxRetriesPerRequest: 3`, auto-pipelining on, and an `error` listener that logs once per outage instead of
 * crashing the process. Commands left unanswered by a dropped connection are not re-sent after reconnecting,
 * so a non-idempotent command (a rate-limit increment) is never applied twice.
 */
export function createRedis(urlOrOptions?: string | CreateRedisOptions): RedisClient {
  const input = typeof urlOrOptions === 'string' ? { url: urlOrOptions } : urlOrOptions;
  const { retry, logger, cluster, sentinel, url, onEvent, ...rest } = parseOptions(
    'createRedis',
    connectionSchema,
    input,
  );
  const retryStrategy = (attempt: number) => backoffDelay(attempt, retry);
  const common: RedisOptions = {
    ...rest,
    maxRetriesPerRequest: rest.maxRetriesPerRequest,
    autoResendUnfulfilledCommands: false,
    retryStrategy,
  };
  const log = resolveLogger(logger);
  const emit = eventEmitter(onEvent, log);

  if (cluster) {
    const nodes = cluster.nodes.map(toClusterNode);
    const { enableAutoPipelining, maxRetriesPerRequest, ...redisOptions } = common;
    const client = new EndingCluster(nodes, {
      enableAutoPipelining,
      lazyConnect: rest.lazyConnect,
      clusterRetryStrategy: retryStrategy,
      redisOptions: { ...redisOptions, maxRetriesPerRequest },
      ...(cluster.options as ClusterOptions | undefined),
    });
    reportOutages(
      client,
      log,
      `cluster ${nodes.map((n) => (typeof n === 'object' ? `${n.host}:${n.port}` : n)).join(',')}`,
      emit,
    );
    return client;
  }

  if (sentinel) {
    const client = new EndingRedis({
      ...common,
      ...sentinel,
      sentinelRetryStrategy: retryStrategy,
      // ioredis' failover detector can end the client for good; followFailovers does its job (see there).
      failoverDetector: false,
    });
    // The Sentinels are watched for as long as the client lives, whatever its own `maxAttempts`.
    const unbounded = { ...retry, maxAttempts: Number.POSITIVE_INFINITY };
    followFailovers(client, {
      ...sentinel,
      retryStrategy: (attempt) => backoffDelay(attempt, unbounded) ?? retry.maxDelay,
    });
    rejectUnansweredOnClose(client);
    reportOutages(client, log, `sentinel master ${sentinel.name}`, emit);
    return client;
  }

  const target = url ?? (rest.host || rest.port ? undefined : defaultRedisUrl());
  const client = target === undefined ? new EndingRedis(common) : new EndingRedis(target, common);
  rejectUnansweredOnClose(client);
  reportOutages(
    client,
    log,
    target ? withoutCredentials(target) : `${rest.host ?? '127.0.0.1'}:${rest.port ?? 6379}`,
    emit,
  );
  return client;
}

/** The part of ioredis' internals used to settle commands a dropped connection left unanswered. */
interface QueueFlusher {
  flushQueue(error: Error, options: { offlineQueue: boolean; commandQueue: boolean }): void;
}

/**
 * Rejects the commands a dropped connection left unanswered, instead of letting ioredis re-send them after
 * reconnecting (a re-sent INCR would count twice) or, with re-sending off, leave them pending forever — which
 * with auto-pipelining would also stall every later command on that connection.
 */
function rejectUnansweredOnClose(connection: Redis): void {
  connection.on('close', () => {
    (connection as unknown as QueueFlusher).flushQueue(
      new RedisUnavailableError('the connection closed before Redis replied; the command is not re-sent'),
      { offlineQueue: false, commandQueue: true },
    );
  });
}

let sharedClient: RedisClient | undefined;

/**
 * A getter for `given`, or — when none was given — for the shared {@link defaultRedis} client, created on first use
 * (and again after `closeDefaultRedis()`: a middleware then uses the new one, never the closed one).
 */
export function lazyRedis(given: RedisClient | undefined): () => RedisClient {
  return given ? () => given : defaultRedis;
}

/** The client middlewares use when given none: created by `createRedis()` on first use, then shared. */
export function defaultRedis(): RedisClient {
  sharedClient ??= createRedis();
  return sharedClient;
}

/**
 * Closes the shared client (if one was created) and everything redisware opened beside it (its pub/sub connection),
 * in whatever state it is: connected, it quits (waiting at most {@link quitGraceMs} for Redis); otherwise it ends
 * at once. Resolves once they have all closed; the next `defaultRedis()` creates a new client.
 */
export async function closeDefaultRedis(): Promise<void> {
  const client = sharedClient;
  sharedClient = undefined;
  if (!client) return;
  await client.quit().catch(() => client.disconnect());
  await ended(client);
  await closeSubscriber(client);
}
