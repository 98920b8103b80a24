import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { RedisTimeoutError, RedisUnavailableError } from './errors.js';

/**
 * The client every middleware accepts: an ioredis `Redis` or `Cluster`.
 * Only commands both share are used, and every script passes its keys as KEYS[] so Cluster can route it.
 */
export type RedisClient = Redis | Cluster;

/** Whether `client` is an ioredis `Cluster` (whose pipelines must stay within one slot). */
export function isCluster(client: RedisClient): boolean {
  return (client as { isCluster?: boolean }).isCluster === true;
}

/** A NOSCRIPT reply: the server has not cached the script, so it did not run. */
function isNoScript(error: unknown): boolean {
  return (error as Error)?.message?.startsWith('NOSCRIPT') === true;
}

/** The Buffer-reply variants of EVALSHA / EVAL that ioredis defines at run time. */
interface BufferScripting {
  evalshaBuffer(...args: (string | number)[]): Promise<unknown>;
  evalBuffer(...args: (string | number)[]): Promise<unknown>;
}

/** A Lua script sent with EVALSHA, falling back to EVAL when the server has not cached it (restart, SCRIPT FLUSH). */
export class RedisScript {
  readonly sha: string;

  constructor(
    readonly name: string,
    readonly source: string,
  ) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  /** Like {@link run}, but bulk replies arrive as Buffers (binary-safe). */
  runBuffer(client: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    // ioredis has evalshaBuffer/evalBuffer at run time but does not declare them; `callBuffer` would do, but
    // combined with auto-pipelining it drops the command name (the SHA is sent as the command).
    const buffered = client as unknown as BufferScripting;
    return buffered.evalshaBuffer(this.sha, keys.length, ...keys, ...args).catch((error: Error) => {
      if (!isNoScript(error)) throw error;
      return buffered.evalBuffer(this.source, keys.length, ...keys, ...args);
    });
  }

  /**
   * Runs the script: one round trip normally, two after a NOSCRIPT reply.
   * A NOSCRIPT reply means the script did not run, so the EVAL fallback never applies it twice.
   */
  run(client: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return client.evalsha(this.sha, keys.length, ...keys, ...args).catch((error: Error) => {
      if (!isNoScript(error)) throw error;
      return this.evalSource(client, keys, args);
    });
  }

  /** Sends the whole script (EVAL), which also caches it on the server. */
  evalSource(client: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return client.eval(this.source, keys.length, ...keys, ...args);
  }
}

interface QueuedScript {
  script: RedisScript;
  keys: readonly string[];
  args: readonly (string | number)[];
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/**
 * Sends the script calls made during one turn of the event loop as one pipeline: one socket write (and usually
 * one read) for all the requests Node parsed in that turn, instead of one per request. Standalone Redis only:
 * a Cluster pipeline must stay within one slot.
 */
class ScriptBatcher {
  private queue: QueuedScript[] = [];
  private scheduled = false;

  constructor(private readonly client: Redis) {}

  run(script: RedisScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queue.push({ script, keys, args, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flush);
      }
    });
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 1) {
      const [only] = batch;
      only.script.run(this.client, only.keys, only.args).then(only.resolve, only.reject);
      return;
    }
    const pipeline = this.client.pipeline();
    for (const { script, keys, args } of batch) pipeline.evalsha(script.sha, keys.length, ...keys, ...args);
    pipeline.exec().then(
      (results) => {
        batch.forEach((item, i) => {
          const [error, value] = results?.[i] ?? [new Error('no reply in pipeline'), undefined];
          if (!error) item.resolve(value);
          // The script did not run: send it in full (EVAL), once.
          else if (isNoScript(error))
            item.script.evalSource(this.client, item.keys, item.args).then(item.resolve, item.reject);
          else item.reject(error);
        });
      },
      (error) => {
        for (const item of batch) item.reject(error);
      },
    );
  };
}

const batchers = new WeakMap<RedisClient, ScriptBatcher>();

/**
 * Runs a hot-path script: on a standalone Redis batched with the other calls of this event-loop turn
 * (see {@link ScriptBatcher}); on a Cluster through ioredis' per-node auto-pipelining.
 */
export function runScript(
  client: RedisClient,
  script: RedisScript,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  if (isCluster(client)) return script.run(client, keys, args);
  let batcher = batchers.get(client);
  if (!batcher) {
    batcher = new ScriptBatcher(client as Redis);
    batchers.set(client, batcher);
  }
  return batcher.run(script, keys, args);
}

const nextReadyByClient = new WeakMap<RedisClient, Promise<void>>();

/** Resolves on the client's next `ready` event; one shared promise (and listener) per client. */
function nextReady(client: RedisClient): Promise<void> {
  let ready = nextReadyByClient.get(client);
  if (!ready) {
    ready = new Promise<void>((resolve) => {
      client.once('ready', () => {
        nextReadyByClient.delete(client);
        resolve();
      });
    });
    nextReadyByClient.set(client, ready);
    // A lazyConnect client only connects on its first command, which we withhold until it is ready.
    if (client.status === 'wait') client.connect().catch(() => {});
  }
  return ready;
}

function raceTimer<T>(work: Promise<T>, timeoutMs: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), timeoutMs);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/**
 * Runs `command` against `client` within `timeoutMs`, or rejects with
 * {@link RedisUnavailableError} / {@link RedisTimeoutError}.
 *
 * The command is only sent once the client is `ready`: while ioredis is (re)connecting we wait for it
 * within the same budget instead of queueing, so nothing piles up in its offline queue during an
 * outage and no command whose caller already gave up is sent later.
 */
export function boundedCall<T>(client: RedisClient, timeoutMs: number, command: () => Promise<T>): Promise<T> {
  if (client.status === 'ready') return raceTimer(command(), timeoutMs, () => new RedisTimeoutError(timeoutMs));
  if (client.status === 'end') return Promise.reject(new RedisUnavailableError('Redis connection is closed'));
  const started = Date.now();
  return raceTimer(nextReady(client), timeoutMs, () => new RedisUnavailableError(`Redis is ${client.status}`)).then(
    () => {
      const left = timeoutMs - (Date.now() - started);
      if (left <= 0) throw new RedisTimeoutError(timeoutMs);
      return raceTimer(command(), left, () => new RedisTimeoutError(timeoutMs));
    },
  );
}

/** Something that is told when Redis fails and when it works again (see `OutageReporter`). */
interface OutageListener {
  failed(error: unknown): void;
  recovered(): void;
}

/**
 * A `call(command)` helper for one middleware: runs `command` on the (lazily resolved) client through
 * {@link boundedCall} and reports failures and recoveries to `outage`, so each outage is logged once.
 */
export function boundedCaller(client: () => RedisClient, timeoutMs: number, outage: OutageListener) {
  return function call<T>(command: (redis: RedisClient) => Promise<T>): Promise<T> {
    const redis = client();
    return boundedCall(redis, timeoutMs, () => command(redis)).then(
      (value) => {
        outage.recovered();
        return value;
      },
      (error) => {
        outage.failed(error);
        throw error;
      },
    );
  };
}
