// Bounded waits: no request waits on Redis longer than its middleware's `timeout`, connected or not.
import type { Redis } from 'ioredis';
import { RedisTimeoutError, RedisUnavailableError } from '../errors.js';
import type { Logger } from '../logger.js';
import { batcherFor } from './batcher.js';
import { isCluster, type RedisClient } from './client.js';
import { type HeldSource, healthOf, isOutage } from './health.js';
import type { RedisScript, ScriptCallback } from './script.js';

/**
 * Settles with `work`, or rejects with `onTimeout()` if `work` has not settled within `timeoutMs`;
 * `onSettled` sees the outcome first (for outage reporting) without another promise in between.
 * For calls that are not batched a timer per call is cheaper than it looks: Node keeps one list per duration, and a
 * cancelled timer dies young, whereas a shared queue that keeps settled calls until their deadline keeps them past
 * young-generation GC. (The batcher's one timer per flush is cleared as soon as the flush's last call settles.)
 */
function withDeadline<T>(
  work: Promise<T>,
  timeoutMs: number,
  onTimeout: () => Error,
  onSettled?: (error: unknown) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      const error = onTimeout();
      onSettled?.(error);
      reject(error);
    }, timeoutMs);
    // A reply after the deadline changes nothing: the caller has moved on, and the outage was already reported.
    work.then(
      (value) => {
        if (timedOut) return;
        clearTimeout(timer);
        onSettled?.(undefined);
        resolve(value);
      },
      (error) => {
        if (timedOut) return;
        clearTimeout(timer);
        onSettled?.(error);
        reject(error);
      },
    );
  });
}

/**
 * Runs `command` against `client` within `timeoutMs`, or rejects with
 * {@link RedisUnavailableError} / {@link RedisTimeoutError}.
 *
 * The command is only sent when the client's health says so (see `RedisHealth.gate`): while the connection is down,
 * or the circuit open, the call fails at once — nothing waits on a Redis known to be down, nothing piles up in
 * ioredis' offline queue, and nothing of the call is kept once it has failed. Only a client that has not connected
 * yet is waited for, within the same budget.
 */
export function boundedCall<T>(
  client: RedisClient,
  timeoutMs: number,
  command: () => Promise<T>,
  onSettled?: (error: unknown) => void,
  waitFor?: HeldSource,
): Promise<T> {
  const health = healthOf(client);
  const settled = (error: unknown) => {
    health.settled(error);
    onSettled?.(error);
  };
  const timedOut = () => new RedisTimeoutError(timeoutMs);
  const gate = health.gate(timeoutMs, waitFor);
  if (gate === 'go') return withDeadline(command(), timeoutMs, timedOut, settled);
  if (gate === 'probe') {
    const work = command();
    work.then(
      () => health.trialReplied(),
      (error) => {
        if (!isOutage(error)) health.trialReplied();
      },
    );
    return withDeadline(work, timeoutMs, timedOut, (error) => {
      health.trialEnded(error);
      onSettled?.(error);
    });
  }
  if (gate === 'fail') {
    const error = health.unavailable();
    onSettled?.(error);
    return Promise.reject(error);
  }
  const started = Date.now();
  return health.whenConnected(timeoutMs).then(
    () => {
      const left = timeoutMs - (Date.now() - started);
      if (left <= 0) {
        const error = timedOut();
        onSettled?.(error);
        throw error;
      }
      return withDeadline(command(), left, timedOut, settled);
    },
    (error) => {
      onSettled?.(error);
      throw error;
    },
  );
}

/** Something that is told when Redis fails and when it works again (see `OutageReporter`). */
export interface OutageListener {
  failed(error: unknown): void;
  recovered(): void;
}

/** How one middleware talks to Redis (see {@link boundedCaller}). */
export interface CallerOptions {
  /** The client, resolved on first use (the shared default client is only created when needed). */
  client: () => RedisClient;
  /** The longest any call waits, connecting included. */
  timeoutMs: number;
  /** Told of failures and recoveries, so each outage is logged once. */
  outage: OutageListener;
  /** Receives the one warning a client gives when its server refuses batches (see `ScriptBatcher`). */
  logger: Logger;
  /** Send a turn's script calls as one batch on a standalone client. @default true */
  batch?: boolean;
  /**
   * Whose writes held during an outage (see `RedisHealth.defer`) calls wait for: a cache's reads wait for its held
   * invalidations, session loads for held logouts; a rate limit, which serves nothing Redis holds, for none.
   */
  waitFor?: HeldSource;
}

/**
 * How a middleware talks to Redis: `call(command)` runs a command within the timeout; `call.script(script, keys,
 * args, done)` runs a script within it, answering through `done`; `call.run(script, keys, args)` is the same as a
 * Promise. Every script of every middleware goes this way, and from here to the socket in one of two ways: on a
 * ready standalone connection it joins this turn's batch and shares its deadline timer (no promise and no timer of
 * its own); otherwise (`batch: false`, connecting, Cluster) it is sent alone, once the connection is ready, within
 * the same budget (`RedisScript.send`).
 */
export function boundedCaller(options: CallerOptions): RedisCaller {
  const { client, timeoutMs, outage, logger } = options;
  const batch = options.batch !== false;
  const waitFor = options.waitFor;
  const report = (error: unknown) => {
    if (error === undefined) outage.recovered();
    else outage.failed(error);
  };

  function call<T>(command: (redis: RedisClient) => Promise<T>): Promise<T> {
    const redis = client();
    return boundedCall(redis, timeoutMs, () => command(redis), report, waitFor);
  }

  call.script = function callScript(
    script: RedisScript,
    keys: readonly string[],
    args: readonly (string | number)[],
    done: ScriptCallback,
  ): void {
    const redis = client();
    // `down` decides without side effects (a gate could start the circuit's one trial call: it goes alone).
    const health = batch && !isCluster(redis) ? healthOf(redis) : undefined;
    if (health && !health.failsNow(waitFor)) {
      batcherFor(redis as Redis, logger).enqueue(
        script,
        keys,
        args,
        (error, reply) => {
          health.settled(error);
          report(error);
          done(error, reply);
        },
        timeoutMs,
      );
      return;
    }
    call((r) => script.run(r, keys, args)).then(
      (reply) => done(undefined, reply),
      (error: Error) => done(error),
    );
  };

  call.unavailable = function unavailable(): Error | undefined {
    const health = healthOf(client());
    if (!health.wouldFail(waitFor)) return undefined;
    const error = health.unavailable();
    report(error);
    return error;
  };

  call.run = function runScript(
    script: RedisScript,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    return new Promise((resolve, reject) =>
      call.script(script, keys, args, (error, reply) => (error ? reject(error) : resolve(reply))),
    );
  };

  const unordered: RedisCaller =
    waitFor === undefined ? (call as RedisCaller) : boundedCaller({ ...options, waitFor: undefined });
  call.unordered = unordered;

  return call;
}

/** How a middleware talks to Redis, within its timeout (see {@link boundedCaller}). */
export interface RedisCaller {
  /** Runs `command` on the client within the timeout. */
  <T>(command: (redis: RedisClient) => Promise<T>): Promise<T>;
  /** Runs `script` within the timeout, answering through `done` (batched with its turn where it can be). */
  script(script: RedisScript, keys: readonly string[], args: readonly (string | number)[], done: ScriptCallback): void;
  /**
   * The error every call would fail with at once now (the connection is down, the circuit open, or writes held),
   * reported as a failure; `undefined` when a call may go. For a middleware to skip all of its work on a Redis known
   * to be down.
   */
  unavailable(): Error | undefined;
  /**
   * The same caller for writes whose order against the writes held during an outage does not matter (deletes, an
   * invalidation's tombstone): it does not wait for them, so a steady stream of such writes can neither be held
   * forever nor keep readers waiting.
   */
  unordered: RedisCaller;
  /** {@link RedisCaller.script} as a Promise. */
  run(script: RedisScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown>;
}
