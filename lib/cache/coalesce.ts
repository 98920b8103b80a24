// Concurrent misses for one key run their producer once: in one process they share its flight; across processes
// the first takes a lock, and the others wait for it to finish, told at once through pub/sub.
import { RedisUnavailableError } from '../errors.js';
import { type HeldLock, tryLock } from '../lock/lease.js';
import type { RedisClient } from '../redis/client.js';
import { subscribe } from '../redis/subscriber.js';
import type { CacheStore } from './store.js';

/** One production of a key in this process, whose outcome its followers await. */
export interface Flight<T> {
  /** Settles once the outcome is known: the produced value, or `undefined` when nothing usable was produced. */
  readonly outcome: Promise<T | undefined>;
  /** Gives the outcome to the followers (the first call counts) and ends the flight. */
  settle(value: T | undefined): void;
}

/** How long a follower may poll the lock between notifications, should one be missed. */
const lockPollMs = 100;

/** The coalescing of one cache's productions (see {@link createCoalescer}). */
export interface Coalescer<T> {
  /** The flight producing `key` in this process, if any. */
  flight(key: string): Flight<T> | undefined;
  /** Starts the flight of `key` in this process. */
  begin(key: string): Flight<T>;
  /** Takes the lock on `lockKey`: the held lock, `undefined` when another process holds it, `null` if Redis failed. */
  lock(lockKey: string, ttlMs: number): Promise<HeldLock | undefined | null>;
  /**
   * Waits, at most `waitMs`, for the process holding `lockKey` to finish `key`: `true` when it finished, `false` when
   * the wait ended without it (timed out, or Redis is known to be down).
   */
  waitForHolder(key: string, lockKey: string, waitMs: number): Promise<boolean>;
  /** Releases `lock` and announces that `key` is finished, to every process waiting for it. */
  finish(lock: HeldLock, key: string): Promise<void>;
}

/**
 * The coalescing of one cache: `flight(key)` / `begin(key)` within this process; `lock()`, `waitForHolder()` and
 * `finish()` across processes, where `finish()` releases the lock and announces it on `<prefix>:filled` (a
 * dedicated subscriber connection listens), so a follower waits as long as the holder's producer takes, plus a
 * round trip — never a polling interval, unless the announcement is missed.
 */
export function createCoalescer<T>(store: CacheStore, channel: string): Coalescer<T> {
  const flights = new Map<string, Flight<T>>();
  const waiting = new Map<string, Set<() => void>>();
  // The client listened on: after `closeDefaultRedis()` the store's default client is a new one, listened on anew.
  let listening: RedisClient | undefined;

  function listen(): void {
    const client = store.redis();
    if (listening === client) return;
    listening = client;
    subscribe(client, channel, (key) => {
      const wakes = waiting.get(key);
      if (wakes) for (const wake of [...wakes]) wake();
    });
  }

  return {
    /** The flight producing `key` in this process, if any. */
    flight(key: string): Flight<T> | undefined {
      return flights.get(key);
    },

    /** Starts the flight of `key` in this process. */
    begin(key: string): Flight<T> {
      let resolve: (value: T | undefined) => void = () => {};
      const outcome = new Promise<T | undefined>((done) => {
        resolve = done;
      });
      let settled = false;
      const flight: Flight<T> = {
        outcome,
        settle(value) {
          if (settled) return;
          settled = true;
          if (flights.get(key) === flight) flights.delete(key);
          resolve(value);
        },
      };
      flights.set(key, flight);
      return flight;
    },

    /** Takes the lock on `lockKey`: the held lock, `undefined` when another process holds it, `null` if Redis failed. */
    lock(lockKey: string, ttlMs: number): Promise<HeldLock | undefined | null> {
      listen(); // from the first miss on, so this process hears other processes finish
      // An acquisition that failed after it was sent is released by tryLock once Redis has applied it: it leaves no
      // lock behind for the next requests of this key to wait on.
      return tryLock(store.redis(), lockKey, ttlMs, store.timeout).catch(() => null);
    },

    /**
     * Waits, at most `waitMs`, for the process holding `lockKey` to finish `key`: its announcement, or the lock
     * found gone (an announcement sent before this process listened, or missed; a lock whose acquisition failed on
     * its holder's side, released once Redis applied it). Resolves `true` when it finished; `false` when the wait is
     * over without it: timed out, or Redis known to be down (its entry could not be read, nor the lock checked, so
     * waiting on would only be waiting out `waitMs`).
     */
    waitForHolder(key: string, lockKey: string, waitMs: number): Promise<boolean> {
      listen();
      return new Promise<boolean>((resolve) => {
        let wakes = waiting.get(key);
        if (!wakes) {
          wakes = new Set();
          waiting.set(key, wakes);
        }
        const done = (finished: boolean) => {
          clearTimeout(timer);
          clearInterval(poll);
          wakes.delete(wake);
          if (wakes.size === 0 && waiting.get(key) === wakes) waiting.delete(key);
          resolve(finished);
        };
        const wake = () => done(true);
        wakes.add(wake);
        const timer = setTimeout(() => done(false), waitMs);
        const check = () => {
          store
            .call((redis) => redis.exists(lockKey))
            .then(
              (held) => {
                if (held === 0 && wakes.has(wake)) done(true);
              },
              (error: unknown) => {
                // A slow reply may come yet; a Redis known to be down answers nothing until it is back.
                if (error instanceof RedisUnavailableError && wakes.has(wake)) done(false);
              },
            );
        };
        const poll = setInterval(check, lockPollMs);
        check();
      });
    },

    /** Releases `lock` and announces that `key` is finished, to every process waiting for it. */
    finish(lock: HeldLock, key: string): Promise<void> {
      return lock.release({ channel, message: key }).catch(() => {});
    },
  };
}
