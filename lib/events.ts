// `onEvent`: what every factory reports, as plain objects with a `type`. Built only when a hook is set, so an app
// without one pays nothing (each emitting site checks `emit` first); a hook that throws never breaks a request.
import { z } from 'zod';
import type { Logger } from './logger.js';

/** Which part of redisware an event comes from. */
export type EventSource = 'rateLimit' | 'session' | 'cache' | 'lock' | 'redis';

/** Everything `onEvent` receives: one object per event, told apart by `type`. */
export type RedisWareEvent =
  | {
      type: 'rateLimit.allowed' | 'rateLimit.blocked';
      /** The client (IP or the `key` function's result). */
      key: string;
      limit: number;
      used: number;
      remaining: number;
      resetAt: Date;
      /** How long the request waited on Redis (ms); 0 for a client answered from the block cache. */
      redisMs: number;
    }
  | {
      type: 'session.created' | 'session.regenerated' | 'session.destroyed' | 'session.expired';
      /** The session id (for `regenerated`, the new one). */
      id: string;
      /** For `regenerated`: the id it replaced. */
      previousId?: string;
    }
  | {
      type: 'cache.hit' | 'cache.stale' | 'cache.miss' | 'cache.bypass' | 'cache.coalesced';
      /** The cache key of the request (method class, origin, path, query, vary headers). */
      key: string;
      /** How long the lookup waited on Redis (ms). */
      redisMs: number;
    }
  | { type: 'cache.stored'; key: string; bytes: number; status: number; redisMs: number }
  | { type: 'cache.invalidated'; tags: string[]; deleted: number }
  | { type: 'lock.acquired'; resource: string; waitedMs: number }
  | { type: 'lock.timeout'; resource: string; waitedMs: number }
  | {
      type: 'redis.error';
      source: EventSource;
      /** What the middleware did instead: let the request through, refused it, ran without the cache, failed. */
      action: 'allowed' | 'denied' | 'bypassed' | 'failed' | 'continued' | 'reconnecting';
      error: Error;
    };

/** The `onEvent` option every factory takes. */
export type EventHook = (event: RedisWareEvent) => void;

export const eventHookSchema = z.custom<EventHook>((value) => typeof value === 'function', {
  message: 'expected a function (event) => void',
});

/**
 * The emitter of one factory: `undefined` without a hook, so that emitting sites skip building the event. A hook
 * that throws (or returns a rejected promise) is reported to the logger, once, and the request goes on.
 */
export function eventEmitter(hook: EventHook | undefined, logger: Logger): EventHook | undefined {
  if (!hook) return undefined;
  let warned = false;
  const report = (error: unknown) => {
    if (warned) return;
    warned = true;
    logger.warn(`redisware: the onEvent hook threw (reported once): ${String(error)}`);
  };
  return (event) => {
    try {
      const result = hook(event) as unknown;
      if (result && typeof (result as Promise<unknown>).then === 'function') {
        (result as Promise<unknown>).then(undefined, report);
      }
    } catch (error) {
      report(error);
    }
  };
}

/** An error as an `Error` (what `redis.error` events carry). */
export function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
