// The `onEvent` hook every factory takes: what happened, as one object with a `type`, for dashboards and metrics.
import type { Logger } from './logger.js';

/** A request counted and let through by `rateLimit()`. */
export interface RateLimitAllowedEvent {
  type: 'rateLimit.allowed';
  /** The client key (an IP address, an IPv6 network, or what `key` returned). */
  key: string;
  limit: number;
  used: number;
  remaining: number;
  /** How long the request waited on Redis, in ms. */
  durationMs: number;
}

/** A request refused by `rateLimit()` (429, or the `handler`). */
export interface RateLimitBlockedEvent {
  type: 'rateLimit.blocked';
  key: string;
  limit: number;
  used: number;
  /** Seconds until the client is admitted again (the `Retry-After` sent). */
  retryAfter: number;
  /** Answered from the in-memory block cache, without asking Redis (`durationMs` is then 0). */
  fromMemory: boolean;
  durationMs: number;
}

/**
 * A session event of `redisSession()`. Session ids are never part of an event (they are bearer tokens); `userId` is
 * the session's `userField`, when it has one.
 */
export interface SessionEvent {
  /**
   * `created`: a new session was first saved. `regenerated`: `regenerate()` moved it to a new id. `destroyed`:
   * `destroy()` or `destroyByUser()` deleted it. `expired`: a request's signed cookie named a session Redis no
   * longer holds (idle or absolute timeout, or deleted elsewhere).
   */
  type: 'session.created' | 'session.regenerated' | 'session.destroyed' | 'session.expired';
  userId?: string;
  /** For `session.destroyed`: `'destroy'` (that session's own request) or `'destroyByUser'` (log out everywhere). */
  reason?: 'destroy' | 'destroyByUser';
  /** How long the Redis step took, in ms. */
  durationMs: number;
}

/** The fields every cache event carries. */
interface CacheEventBase {
  /**
   * `cache.response()`: the route's pattern when the cache is on a route (`/users/:id`), else where it is mounted
   * followed by `*` (`/api/*`, `/*`): a label of bounded cardinality, the same on a MISS and a HIT. Not set for
   * `cache.wrap()`.
   */
  route?: string;
  /** `cache.response()`: the request path. */
  path?: string;
  /**
   * Identifies the entry across its events: a hash of its Redis key (16 characters). A key is never reported itself:
   * it may hold what a request sent (the values of request headers the response varies on, an id in an app's key).
   */
  key: string;
}

/** A cache answer of `cache.response()` / `cacheResponse()`, or a `wrap()` lookup. */
export interface CacheLookupEvent extends CacheEventBase {
  /**
   * `hit`: answered from Redis, fresh (or freshened by the handler's 304). `stale`: answered with a stale entry
   * (stale-while-revalidate, stale-if-error, `max-stale`). `miss`: the handler (or loader) produces the answer.
   */
  type: 'cache.hit' | 'cache.stale' | 'cache.miss';
  /** How long the lookup waited on Redis, in ms. */
  durationMs: number;
  /** Bytes of the stored body (`hit`, `stale`): a 304, a HEAD or a range sends fewer. */
  size?: number;
}

/** A request the cache let through without looking (`cache.response()`). */
export interface CacheBypassEvent extends Omit<CacheEventBase, 'key'> {
  type: 'cache.bypass';
  /**
   * `'method'` (not GET or HEAD), `'authorization'` (an Authorization header), `'redis-error'` (Redis failed),
   * `'origin'` (a Host or trusted X-Forwarded-Host that is not `host[:port]`, or a target not in origin form).
   */
  reason: 'method' | 'authorization' | 'redis-error' | 'origin';
}

/** A MISS that waited for another request's handler instead of running its own. */
export interface CacheCoalescedEvent extends CacheEventBase {
  type: 'cache.coalesced';
  /** `'process'`: a request in this process was producing it; `'instances'`: another instance held the lock. */
  across: 'process' | 'instances';
  /** How long it waited, in ms. */
  durationMs: number;
}

/** An entry written to Redis. */
export interface CacheStoredEvent extends CacheEventBase {
  type: 'cache.stored';
  /** Bytes of the stored body (of the JSON, for `wrap`). */
  size: number;
  /** How long Redis keeps it, in ms. */
  ttlMs: number;
  /** How long the write took, in ms. */
  durationMs: number;
  /** Stored by a background refresh (stale-while-revalidate), not for a waiting client. */
  background?: boolean;
}

/** Entries deleted: `invalidateTags`, `delete`, or an unsafe request's own URL. */
export interface CacheInvalidatedEvent {
  type: 'cache.invalidated';
  /**
   * The tags invalidated: an app's tags as given, a URL's as `url:<path>` (without its query, which may hold a
   * token), a key's as `key:<hash>`.
   */
  tags: string[];
  /** The key deleted (`cache.delete`, or a route's `key` on an unsafe request), as the hash its other events use. */
  key?: string;
  /** How many entries were deleted. */
  count: number;
  durationMs: number;
}

/** The lock of `withLock()` taken, or given up on. */
export interface LockEvent {
  /**
   * `acquired`: `fn` runs now. `timeout`: `waitTimeout` passed without the lock (`LockTimeoutError`). `lost`: the
   * lease could not be extended, or lapsed, while `fn` ran (its `signal` aborted: another holder may run now).
   */
  type: 'lock.acquired' | 'lock.timeout' | 'lock.lost';
  resource: string;
  /** The lock's Redis key (`lock:<resource>`). */
  key: string;
  /** `acquired`, `timeout`: how long it waited for the lock, in ms. `lost`: how long the lock had been held. */
  durationMs: number;
}

/** Redis failed (down, slower than `timeout`, or refusing) and a middleware acted without it. */
export interface RedisErrorEvent {
  type: 'redis.error';
  /** Who saw it. */
  source: 'rateLimit' | 'session' | 'cache' | 'lock' | 'connection';
  /**
   * What it did instead: `'allowed'` the request (rateLimit `onRedisError: 'allow'`), `'denied'` it (503),
   * `'bypassed'` Redis (the cache, `cache.wrap` included: the handler or loader runs uncached; a session with
   * `onRedisError: 'continue'`; a change not saved), `'failed'` (the call rejects or is not done: `withLock`,
   * `regenerate()`, `invalidateTags()`, an invalidation after an unsafe request, …), `'reconnecting'` (a connection
   * of `createRedis()`).
   */
  action: 'allowed' | 'denied' | 'bypassed' | 'failed' | 'reconnecting';
  /**
   * What failed: rateLimit `'hit'`, `'reset'`, `'get'`; session `'load'`, `'save'`, `'reload'`, `'touch'`,
   * `'regenerate'`, `'destroy'`, `'listByUser'`, `'destroyByUser'`; cache `'read'`, `'store'`, `'get'`, `'set'`,
   * `'delete'`, `'invalidate'`; lock `'lock'`, `'unlock'`; `'connection'`.
   */
  operation: string;
  /**
   * The error: its name, message and `code` only. ioredis attaches the failed command and its arguments (an AUTH
   * password, a session's key and data) to its errors; they are never passed on.
   */
  error: Error;
  /** How long it waited before giving up, in ms (0 for a connection error). */
  durationMs: number;
}

/**
 * Redis answers again after an outage this middleware saw (and logged): it uses Redis again from now on, after the
 * writes held back during the outage (see {@link RedisDeferredEvent}) were applied.
 */
export interface RedisRecoveredEvent {
  type: 'redis.recovered';
  source: RedisErrorEvent['source'];
  /** How long the middleware went without Redis: from its first failure to now, in ms. */
  downMs: number;
}

/**
 * A write that must not be lost (a logout, an invalidation, the release of a lock Redis may hold) could not reach
 * Redis: `'redis.deferred'` — it is held in this process and applied before anything is served from Redis again;
 * `'redis.dropped'` — the queue of such writes is full (see the README), so this one is lost.
 */
export interface RedisDeferredEvent {
  type: 'redis.deferred' | 'redis.dropped';
  source: RedisErrorEvent['source'];
  /** What was held back: `'destroy'` (a session), `'invalidate'` (cache entries), `'unlock'` (a lock). */
  operation: string;
  /** How many writes are held now, this one included (`redis.deferred`). */
  pending: number;
}

/**
 * A value of the wrong type or shape under one of the middleware's keys (written by another program, an older
 * version, or by hand) was replaced or ignored instead of obeyed: a counter restarted, a session treated as missing.
 */
export interface RedisRepairedEvent {
  type: 'redis.repaired';
  source: 'rateLimit' | 'session';
  /** The client key (rateLimit), or nothing that names a session. */
  key?: string;
}

/** Every event `onEvent` receives; tell them apart by `type`. */
export type RediswareEvent =
  | RateLimitAllowedEvent
  | RateLimitBlockedEvent
  | SessionEvent
  | CacheLookupEvent
  | CacheBypassEvent
  | CacheCoalescedEvent
  | CacheStoredEvent
  | CacheInvalidatedEvent
  | LockEvent
  | RedisErrorEvent
  | RedisRecoveredEvent
  | RedisDeferredEvent
  | RedisRepairedEvent;

/** Every event type, for code that enumerates them (metrics, dashboards). */
export const eventTypes = [
  'rateLimit.allowed',
  'rateLimit.blocked',
  'session.created',
  'session.regenerated',
  'session.destroyed',
  'session.expired',
  'cache.hit',
  'cache.miss',
  'cache.stale',
  'cache.bypass',
  'cache.coalesced',
  'cache.stored',
  'cache.invalidated',
  'lock.acquired',
  'lock.timeout',
  'lock.lost',
  'redis.error',
  'redis.recovered',
  'redis.deferred',
  'redis.dropped',
  'redis.repaired',
] as const satisfies readonly RediswareEvent['type'][];

/** The `onEvent` option: called synchronously, once per event. What it returns (a Promise too) is ignored. */
export type EventHook = (event: RediswareEvent) => unknown;

/** Calls the hook; never throws, never leaves a rejection unhandled. */
export type Emit = (event: RediswareEvent) => void;

/**
 * The emitter of one factory, or `undefined` without a hook: call sites write `emit?.({ … })`, which builds no
 * event object when there is no hook. A hook that throws (or rejects) is reported once (per hook) through the
 * `logger` of the factory whose event it threw on, and the request goes on as if it had not been called.
 */
export function eventEmitter(hook: EventHook | undefined, logger: Logger): Emit | undefined {
  if (hook === undefined) return undefined;
  const report = (error: unknown, type: RediswareEvent['type']) => {
    if (reported.has(hook)) return;
    reported.add(hook);
    const reason = error instanceof Error ? error.message : String(error);
    logger.error(
      `redisware: the onEvent hook threw on ${type} (${reason}); further throws of this hook are not logged`,
    );
  };
  return (event) => {
    try {
      const passed = event.type === 'redis.error' ? { ...event, error: eventError(event.error) } : event;
      const returned = hook(passed) as { then?: unknown } | undefined;
      if (returned && typeof returned.then === 'function') {
        (returned as Promise<unknown>).then(undefined, (error: unknown) => report(error, event.type));
      }
    } catch (error) {
      report(error, event.type);
    }
  };
}

/**
 * The hooks whose throw was logged: once per hook, however many factories (or `withLock` calls, each of which
 * parses its options anew) it was given to.
 */
const reported = new WeakSet<EventHook>();

/** What an event says of a Redis error: a copy with its name, message, `code` and stack, and nothing else. */
export function eventError(error: unknown, depth = 0): Error {
  const original = error instanceof Error ? error : new Error(String(error));
  // Of the same class (`instanceof ReplyError`, `RedisTimeoutError` still hold), with none of its own properties.
  const clean = Object.create(Object.getPrototypeOf(original)) as Error;
  const own = (value: unknown) => ({ value, writable: true, configurable: true });
  Object.defineProperties(clean, { message: own(original.message), stack: own(original.stack) });
  if (original.name !== clean.name) Object.defineProperty(clean, 'name', own(original.name));
  const code = (original as { code?: unknown }).code;
  if (typeof code === 'string') Object.defineProperty(clean, 'code', own(code));
  // What a Cluster's "Failed to refresh slots cache" says happened (its last node's error), cleaned alike.
  const cause = (original as { lastNodeError?: unknown }).lastNodeError ?? original.cause;
  if (cause instanceof Error && depth < 2) Object.defineProperty(clean, 'cause', own(eventError(cause, depth + 1)));
  return clean;
}

/**
 * One `onEvent` hook that calls each of `hooks` in turn (metrics and a dashboard, say); one that throws does not
 * keep the others from being called.
 */
export function combineEventHooks(...hooks: (EventHook | undefined)[]): EventHook {
  const given = hooks.filter((hook): hook is EventHook => typeof hook === 'function');
  return (event) => {
    let failure: unknown;
    let failed = false;
    let pending: Promise<unknown>[] | undefined;
    for (const hook of given) {
      try {
        const returned = hook(event) as { then?: unknown } | undefined;
        if (returned && typeof returned.then === 'function') {
          pending ??= [];
          pending.push(returned as Promise<unknown>);
        }
      } catch (error) {
        if (!failed) {
          failure = error;
          failed = true;
        }
      }
    }
    if (failed) {
      for (const promise of pending ?? []) promise.then(undefined, () => {}); // the thrown error is reported
      throw failure;
    }
    // An async hook's rejection reaches whoever called this one (the factory's emitter logs it).
    return pending && Promise.all(pending);
  };
}

/**
 * Reports a Redis failure (a {@link RedisErrorEvent}) to `emit`, if there is one: `started` is when the failed step
 * began (from {@link now}), or omitted for an error nothing waited on.
 */
export function reportRedisError(
  emit: Emit | undefined,
  source: RedisErrorEvent['source'],
  action: RedisErrorEvent['action'],
  operation: string,
  error: unknown,
  started?: number,
): void {
  if (!emit) return;
  const durationMs = started === undefined ? 0 : since(started);
  emit({ type: 'redis.error', source, action, operation, error: error as Error, durationMs });
}

/**
 * Runs `step` (a Redis step of a public method: `regenerate()`, `invalidateTags()`, `reset()`, …), reporting its
 * failure to `emit` as a `redis.error` with `action: 'failed'` before rejecting with it.
 */
export async function reportingFailure<T>(
  emit: Emit | undefined,
  source: RedisErrorEvent['source'],
  operation: string,
  step: () => Promise<T>,
): Promise<T> {
  if (!emit) return step();
  const started = now();
  try {
    return await step();
  } catch (error) {
    reportRedisError(emit, source, 'failed', operation, error, started);
    throw error;
  }
}

/** A monotonic clock in ms, for the `durationMs` fields. */
export const now = () => performance.now();

/** `ms` since `started` (from {@link now}), rounded to µs. */
export const since = (started: number) => Math.round((performance.now() - started) * 1000) / 1000;
