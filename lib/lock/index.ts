import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { defaultRedis } from '../connection.js';
import { LockTimeoutError } from '../errors.js';
import { now as clock, eventEmitter, reportRedisError, since } from '../events.js';
import { keyspace, nameArgument } from '../keys.js';
import { resolveLogger } from '../logger.js';
import {
  loggerSchema,
  maxTimerMs,
  onEventOption,
  parseOptions,
  positiveDurationMs,
  redisSchema,
  timerDurationMs,
} from '../options.js';
import { pause } from '../pause.js';
import { boundedCall } from '../redis/bounded.js';
import type { RedisClient } from '../redis/client.js';
import { RedisScript } from '../redis/script.js';

const lockSchema = z.strictObject({
  /** An ioredis client; defaults to the shared `defaultRedis()`. */
  redis: redisSchema.optional(),
  /** Lease of the lock; extended while `fn` runs, so it only matters if this process dies. @default '10s' */
  ttl: positiveDurationMs.default(10_000),
  /** How long to wait for the lock before rejecting with `LockTimeoutError` (without running `fn`). @default '5s' */
  waitTimeout: timerDurationMs.default(5_000),
  /** The longest one Redis command may take. @default '1s' */
  timeout: timerDurationMs.default(1_000),
  /** Receives `lock.acquired`, `lock.timeout` and `redis.error` events. */
  onEvent: onEventOption,
  /** Where a throwing `onEvent` is reported. @default console */
  logger: loggerSchema.optional(),
});

/** Options of {@link withLock}. */
export type LockOptions = z.input<typeof lockSchema>;

/**
 * Deletes the lock only if it still holds our token: never releases a lock someone else now holds. With ARGV[2]
 * (a channel) and ARGV[3] (a message), also publishes that message, in the same step: whoever waits for the lock's
 * holder to finish hears of it at once.
 */
const releaseScript = new RedisScript(
  'lock-release',
  `local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then released = redis.call('DEL', KEYS[1]) end
if ARGV[2] then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return released`,
);

/** Extends the lease only if the lock still holds our token. */
const extendScript = new RedisScript(
  'lock-extend',
  `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`,
);

/**
 * Takes over a key at a lock's place that has no lease: KEYS[1] = the lock, ARGV = a token, the lease ms. A lock is
 * always written with a lease, so such a key is no lock (another program's, or left by a bug), and waiting for it
 * would be waiting forever. Returns 1 when taken, 0 when the key has a lease (someone holds the lock).
 */
const takeOverScript = new RedisScript(
  'lock-take-over',
  `if redis.call('PTTL', KEYS[1]) ~= -1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`,
);

/** A held lock: released token-checked, optionally announcing it (`message` on `channel`) in the same step. */
export interface HeldLock {
  readonly key: string;
  release(announce?: { channel: string; message: string }): Promise<void>;
  /** Stops extending the lease without releasing it: the lock ends by itself when its lease does. */
  abandon(): void;
}

/** The Redis key of the lock on `resource`: `lock:<resource>`. */
export const lockKey = keyspace('lock');

/**
 * Tries once to take the lock at `key` for `ttlMs`; resolves to the held lock, or `undefined` if someone holds it.
 * While held, the lease is extended every third of `ttlMs`, until `release()`.
 */
export async function tryLock(
  redis: RedisClient,
  key: string,
  ttlMs: number,
  timeoutMs: number,
): Promise<HeldLock | undefined> {
  const token = randomBytes(16).toString('base64url');
  // A plain SET first (it joins the client's auto-pipeline); a key already there is looked at only then.
  const taken = await boundedCall(redis, timeoutMs, () => redis.set(key, token, 'PX', ttlMs, 'NX'));
  if (taken !== 'OK') {
    const takenOver = await boundedCall(redis, timeoutMs, () => takeOverScript.run(redis, [key], [token, ttlMs]));
    if (takenOver !== 1) return undefined;
  }
  const renew = setInterval(
    () => {
      boundedCall(redis, timeoutMs, () => extendScript.run(redis, [key], [token, ttlMs])).catch(() => {});
    },
    Math.min(maxTimerMs, Math.max(1, Math.floor(ttlMs / 3))),
  );
  renew.unref();
  let released = false;
  return {
    key,
    abandon() {
      released = true;
      clearInterval(renew);
    },
    async release(announce) {
      if (released) return;
      released = true;
      clearInterval(renew);
      const args = announce ? [token, announce.channel, announce.message] : [token];
      await boundedCall(redis, timeoutMs, () => releaseScript.run(redis, [key], args));
    },
  };
}

/**
 * Runs `fn` while holding `lock:<resource>` and resolves to its result. The lease (`ttl`) is extended while
 * `fn` runs; the release is token-checked and happens when `fn` throws too. Past `waitTimeout` without getting
 * the lock, rejects with {@link LockTimeoutError} and does not run `fn`.
 */
export async function withLock<T>(resource: string, fn: () => T | Promise<T>, options?: LockOptions): Promise<T> {
  nameArgument(resource, 'withLock: resource');
  if (typeof fn !== 'function') throw new TypeError('withLock: fn is invalid (expected a function)');
  const config = parseOptions('withLock', lockSchema, options);
  const redis = config.redis ?? defaultRedis();
  const emit = eventEmitter(config.onEvent, resolveLogger(config.logger));
  const key = lockKey(resource);
  const started = emit ? clock() : 0;
  const deadline = Date.now() + config.waitTimeout;
  let delay = 10;
  for (;;) {
    let lock: HeldLock | undefined;
    try {
      lock = await tryLock(redis, key, config.ttl, config.timeout);
    } catch (error) {
      reportRedisError(emit, 'lock', 'failed', 'lock', error, started);
      throw error;
    }
    if (lock) {
      emit?.({ type: 'lock.acquired', resource, key, durationMs: since(started) });
      try {
        return await fn();
      } finally {
        await lock.release().catch((error: Error) => {
          // The lock ends by itself when its lease does.
          reportRedisError(emit, 'lock', 'failed', 'unlock', error);
        });
      }
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      emit?.({ type: 'lock.timeout', resource, key, durationMs: since(started) });
      throw new LockTimeoutError(resource, config.waitTimeout);
    }
    await pause(Math.min(left, delay / 2 + Math.random() * delay));
    delay = Math.min(delay * 2, 200);
  }
}
