// withLock(): runs a function while holding a lock on a resource, and tells it (an AbortSignal) if the lock is lost.
import { z } from 'zod';
import { defaultRedis } from '../connection.js';
import { LockTimeoutError } from '../errors.js';
import { now as clock, type Emit, eventEmitter, reportRedisError, since } from '../events.js';
import { nameArgument } from '../keys.js';
import { resolveLogger } from '../logger.js';
import {
  loggerSchema,
  onEventOption,
  parseOptions,
  positiveDurationMs,
  redisSchema,
  timerDurationMs,
} from '../options.js';
import { pause } from '../pause.js';
import type { RedisClient } from '../redis/client.js';
import { LockReentryError } from './errors.js';
import { fenceKey, lockKey } from './keys.js';
import { type HeldLock, type LockReporter, tryLock } from './lease.js';
import { holdsNow, runHolding } from './reentry.js';

export { LockLostError, LockReentryError } from './errors.js';
export { lockKey } from './keys.js';
export { type HeldLock, type TryLockOptions, tryLock } from './lease.js';

const lockSchema = z.strictObject({
  /** An ioredis client; defaults to the shared `defaultRedis()`. */
  redis: redisSchema.optional(),
  /**
   * Lease of the lock: how long Redis keeps it without hearing from its holder. It is extended every third of it
   * while `fn` runs; if it cannot be extended before it ends (Redis slow or unreachable) or the lock is found taken
   * over, the lease is lost — `fn`'s `signal` aborts and another holder may start. It is also how long a holder that
   * died (a crashed process) keeps others waiting. @default '10s'
   */
  ttl: positiveDurationMs.default(10_000),
  /** How long to wait for the lock before rejecting with `LockTimeoutError` (without running `fn`). @default '5s' */
  waitTimeout: timerDurationMs.default(5_000),
  /**
   * The longest one Redis command (taking, extending or releasing the lock) may take; an acquisition past it rejects
   * with `RedisTimeoutError` (`fn` does not run). Keep it well under a third of `ttl`. @default '1s'
   */
  timeout: timerDurationMs.default(1_000),
  /** Receives `lock.acquired`, `lock.timeout`, `lock.lost`, `redis.error` and `redis.deferred` events. */
  onEvent: onEventOption,
  /** Where a throwing `onEvent` is reported. @default console */
  logger: loggerSchema.optional(),
});

/** Options of {@link withLock}. */
export type LockOptions = z.input<typeof lockSchema>;

/** What `fn` is given while it holds the lock. */
export interface LockLease {
  /**
   * Aborts when the lease is lost while `fn` runs — it could not be extended before it ended, or another holder took
   * the lock over — with a `LockLostError` saying which as its `reason`. Another holder may run from then on.
   */
  readonly signal: AbortSignal;
  /**
   * A number that grows with each acquisition of the resource: hand it to what `fn` writes, so that the store can
   * refuse a write carrying a smaller token than one it has seen (a holder that lost its lease and wrote on).
   */
  readonly fencingToken: number;
}

/** The `keyPrefix` the client puts before every key (ioredis' option), which decides their Cluster slots too. */
function keyPrefixOf(redis: RedisClient): string {
  return (redis as { options?: { keyPrefix?: unknown } }).options?.keyPrefix?.toString() ?? '';
}

/** What a lock reports to `onEvent` of what happens behind its holder's back. */
function lockReporter(emit: Emit | undefined, resource: string, key: string, acquired: () => number): LockReporter {
  return {
    lost: () => emit?.({ type: 'lock.lost', resource, key, durationMs: since(acquired()) }),
    deferred: (pending) => emit?.({ type: 'redis.deferred', source: 'lock', operation: 'unlock', pending }),
    dropped: () => emit?.({ type: 'redis.dropped', source: 'lock', operation: 'unlock', pending: 0 }),
  };
}

/**
 * Runs `fn` while holding `lock:<resource>` and resolves to its result. `fn` is given the lease's `signal` and its
 * `fencingToken` (see {@link LockLease}). The lease (`ttl`) is extended while `fn` runs; when it is lost, the signal
 * aborts and a `lock.lost` event is emitted, and `withLock` still resolves with what `fn` returns (or rejects with
 * what it throws): `fn` decides. The release is token-checked and happens when `fn` throws too; one that cannot
 * reach Redis is held until Redis answers again. Past `waitTimeout` without getting the lock, rejects with
 * {@link LockTimeoutError} and does not run `fn`. Asked, inside `fn`, for the same lock again (on the same client),
 * rejects at once with {@link LockReentryError}: locks are not re-entrant.
 */
export async function withLock<T>(
  resource: string,
  fn: (lease: LockLease) => T | Promise<T>,
  options?: LockOptions,
): Promise<T> {
  nameArgument(resource, 'withLock: resource');
  if (typeof fn !== 'function') throw new TypeError('withLock: fn is invalid (expected a function)');
  const config = parseOptions('withLock', lockSchema, options);
  const redis: RedisClient = config.redis ?? defaultRedis();
  const key = lockKey(resource);
  if (holdsNow(redis, key)) throw new LockReentryError(resource);
  const emit = eventEmitter(config.onEvent, resolveLogger(config.logger));
  let acquiredAt = 0;
  const report = lockReporter(emit, resource, key, () => acquiredAt);
  const fencing = { counter: fenceKey(key, keyPrefixOf(redis)) };
  const started = emit ? clock() : 0;
  const deadline = Date.now() + config.waitTimeout;
  let delay = 10;
  for (;;) {
    let lock: HeldLock | undefined;
    try {
      lock = await tryLock(redis, key, config.ttl, config.timeout, { fencing, resource, report });
    } catch (error) {
      reportRedisError(emit, 'lock', 'failed', 'lock', error, started);
      throw error;
    }
    if (lock) {
      acquiredAt = emit ? clock() : 0;
      emit?.({ type: 'lock.acquired', resource, key, durationMs: since(started) });
      const lease: LockLease = { signal: lock.signal, fencingToken: lock.fencingToken };
      try {
        return await runHolding(redis, key, () => fn(lease));
      } finally {
        await lock.release().catch((error: Error) => {
          // Held until Redis answers again (`redis.deferred`), or left to end with its lease.
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
