// What each event counts for: the counters and the Redis-latency histogram the metrics modules keep, decided once,
// here, for Prometheus and OpenTelemetry alike.
import type { RediswareEvent } from '../events.js';

/** The counters every metrics module keeps, and the labels (attributes) of each. */
export const counters = {
  rateLimit: { name: 'rate_limit_requests', help: 'Requests counted by rateLimit(), by outcome', labels: ['outcome'] },
  cache: { name: 'cache_requests', help: 'Cache lookups, by result and route', labels: ['result', 'route'] },
  cacheStored: { name: 'cache_stored_bytes', help: 'Bytes of bodies stored in the cache', labels: ['route'] },
  cacheInvalidated: { name: 'cache_invalidated_entries', help: 'Cache entries deleted by invalidation', labels: [] },
  session: { name: 'session_events', help: 'Session lifecycle events', labels: ['event'] },
  lock: { name: 'lock_events', help: 'withLock() outcomes', labels: ['event'] },
  redisErrors: {
    name: 'redis_errors',
    help: 'Redis failures, by who saw them and what it did instead',
    labels: ['source', 'action'],
  },
  redisRepairs: {
    name: 'redis_repairs',
    help: 'Malformed values under redisware keys replaced or ignored, by who found them',
    labels: ['source'],
  },
  redisHeldWrites: {
    name: 'redis_held_writes',
    help: 'Writes Redis could not take: held until it answers (deferred), or lost to the bound (dropped)',
    labels: ['source', 'operation', 'event'],
  },
  redisRecoveries: { name: 'redis_recoveries', help: 'Outages ended: Redis answers again', labels: ['source'] },
} as const;

export type CounterName = keyof typeof counters;

/** The histogram of how long requests waited on Redis, by who waited and for what. */
export const redisDuration = {
  name: 'redis_duration_seconds',
  help: 'How long a middleware waited on Redis, in seconds',
  labels: ['source', 'operation'],
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
} as const;

/** One measurement an event makes: add `value` to a counter, or observe a Redis wait. */
export type Measurement =
  | { counter: CounterName; labels: Record<string, string>; value: number }
  | { histogram: 'redisDuration'; labels: { source: string; operation: string }; seconds: number };

/**
 * Routes a metrics module labels by, at most: past this many distinct values a route is labelled `'other'`, so
 * an app caching everything behind `app.use()` (whose routes are its paths) cannot grow the series without bound.
 */
export const maxRoutes = 100;

/** A longer route (an odd URL behind `app.use()`) is labelled `'other'`. */
export const maxRouteLength = 200;

/** Maps routes to label values, keeping at most {@link maxRoutes} distinct ones. */
export function routeLabeller(): (route: string) => string {
  const seen = new Set<string>();
  return (route) => {
    if (seen.has(route)) return route;
    if (seen.size >= maxRoutes || route.length > maxRouteLength) return 'other';
    seen.add(route);
    return route;
  };
}

/** What `event` counts for (see {@link counters} and {@link redisDuration}). */
export function measurementsOf(event: RediswareEvent, routeLabel: (route: string) => string): Measurement[] {
  // cache.wrap() events have no route: its keys are the app's (`user:42`), of unbounded cardinality.
  const routeOf = (cacheEvent: { route?: string }) =>
    cacheEvent.route === undefined ? 'cache.wrap' : routeLabel(cacheEvent.route);
  const wait = (source: string, operation: string): Measurement => ({
    histogram: 'redisDuration',
    labels: { source, operation },
    seconds: ('durationMs' in event ? event.durationMs : 0) / 1000,
  });
  switch (event.type) {
    case 'rateLimit.allowed':
    case 'rateLimit.blocked': {
      const outcome = event.type === 'rateLimit.allowed' ? 'allowed' : 'blocked';
      const counted: Measurement = { counter: 'rateLimit', labels: { outcome }, value: 1 };
      return event.type === 'rateLimit.blocked' && event.fromMemory ? [counted] : [counted, wait('rateLimit', 'hit')];
    }
    case 'cache.hit':
    case 'cache.stale':
    case 'cache.miss':
    case 'cache.bypass':
    case 'cache.coalesced': {
      const result = event.type.slice('cache.'.length);
      const counted: Measurement = { counter: 'cache', labels: { result, route: routeOf(event) }, value: 1 };
      return event.type === 'cache.hit' || event.type === 'cache.stale' || event.type === 'cache.miss'
        ? [counted, wait('cache', 'read')]
        : [counted];
    }
    case 'cache.stored':
      return [{ counter: 'cacheStored', labels: { route: routeOf(event) }, value: event.size }, wait('cache', 'store')];
    case 'cache.invalidated':
      return [{ counter: 'cacheInvalidated', labels: {}, value: event.count }];
    case 'session.created':
    case 'session.regenerated':
    case 'session.destroyed':
    case 'session.expired': {
      const name = event.type.slice('session.'.length);
      const counted: Measurement = { counter: 'session', labels: { event: name }, value: 1 };
      // One Redis step each, except regenerate() (none for a session never stored) and destroyByUser() (one wait
      // for all of the user's sessions, reported with each).
      const oneStep = event.type !== 'session.regenerated' && event.reason !== 'destroyByUser';
      return oneStep ? [counted, wait('session', name)] : [counted];
    }
    case 'lock.acquired':
    case 'lock.timeout':
    case 'lock.lost':
      return [{ counter: 'lock', labels: { event: event.type.slice('lock.'.length) }, value: 1 }];
    case 'redis.error':
      return [{ counter: 'redisErrors', labels: { source: event.source, action: event.action }, value: 1 }];
    case 'redis.repaired':
      return [{ counter: 'redisRepairs', labels: { source: event.source }, value: 1 }];
    case 'redis.recovered':
      return [{ counter: 'redisRecoveries', labels: { source: event.source }, value: 1 }];
    case 'redis.deferred':
    case 'redis.dropped': {
      const labels = { source: event.source, operation: event.operation, event: event.type.slice('redis.'.length) };
      return [{ counter: 'redisHeldWrites', labels, value: 1 }];
    }
  }
}
