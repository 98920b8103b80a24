// redisware — Express middleware backed by Redis. This barrel is the whole public API.

export type { ClientRateLimitInfo, RateLimitStoreOptions } from './adapters/rate-limit-store.js';
// Migration adapters: an express-rate-limit Store and an express-session Store (connect-redis' format) on ioredis.
export { RateLimitStore } from './adapters/rate-limit-store.js';
export type { SessionStoreOptions, StoredSession } from './adapters/session-store.js';
export { SessionStore } from './adapters/session-store.js';
export type { Cache, CacheResponseOptions, CacheValueOptions, CreateCacheOptions } from './cache/index.js';
// Response caching and cache-aside: `cacheResponse()`, `createCache()`.
export { cacheResponse, createCache } from './cache/index.js';
export type { CreateRedisOptions, RetryOptions } from './connection.js';
// Connection factory and the shared client every middleware falls back to.
export { closeDefaultRedis, createRedis, defaultRedis } from './connection.js';
export type { Duration } from './duration.js';
// Durations accepted by every option that takes a time span.
export { parseDuration } from './duration.js';
// Errors a caller may want to tell apart (instanceof or `code`).
export { LockTimeoutError, RedisTimeoutError, RedisUnavailableError } from './errors.js';
export type {
  CacheBypassEvent,
  CacheCoalescedEvent,
  CacheInvalidatedEvent,
  CacheLookupEvent,
  CacheStoredEvent,
  EventHook,
  LockEvent,
  RateLimitAllowedEvent,
  RateLimitBlockedEvent,
  RedisDeferredEvent,
  RedisErrorEvent,
  RedisRecoveredEvent,
  RedisRepairedEvent,
  RediswareEvent,
  SessionEvent,
} from './events.js';
// The `onEvent` stream: every event type, and one hook feeding several.
export { combineEventHooks, eventTypes } from './events.js';
export type { KeyPart, Keyspace } from './keys.js';
// Key naming: collision-free keys, per-app keyspaces, Cluster hash tags.
export { hashTag, key, keyspace } from './keys.js';
export type { LockLease, LockOptions } from './lock/index.js';
// Distributed locks: `withLock(resource, ({ signal, fencingToken }) => …)`.
export { LockLostError, LockReentryError, withLock } from './lock/index.js';
// Types shared by every factory's options.
export type { Logger } from './logger.js';
export type { RateLimitInfo, RateLimitMiddleware, RateLimitOptions } from './rate-limit/index.js';
// Rate limiting: `app.use(rateLimit())`.
export { rateLimit } from './rate-limit/index.js';
export type { HealthCheckOptions, RedisReadyOptions } from './readiness.js';
// Readiness: `await redisReady()` at start-up, `app.get('/healthz', healthCheck())` for load-balancer probes.
export { healthCheck, redisReady } from './readiness.js';
export type { AnyRedisClient, RedisClient } from './redis/client.js';
export type { SessionData } from './session/data.js';
export type {
  RedisSessionMiddleware,
  RedisSessionOptions,
  Session,
  SessionCallback,
  SessionCookie,
  SessionMethods,
  UserSessionInfo,
} from './session/index.js';
// Sessions: `app.use(redisSession({ secret }))`, then `req.session`.
export { redisSession, SessionUnavailableError } from './session/index.js';
