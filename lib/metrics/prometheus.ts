import type { RequestHandler } from 'express';
import type { Counter, Histogram, Registry } from 'prom-client';
import { z } from 'zod';
import type { EventHook } from '../events.js';
import { parseOptions } from '../options.js';
import { type CounterName, counters, measurementsOf, redisDuration, routeLabeller } from './measure.js';
import { optionalPeer } from './optional.js';

type PromClient = typeof import('prom-client');

/**
 * What this module needs of a prom-client `Registry` (any `Registry` is one), spelled out so that its types do
 * not require prom-client of an app that does not use it.
 */
export interface PrometheusRegistry {
  readonly contentType: string;
  metrics(): Promise<string>;
  registerMetric(metric: never): void;
}

const prometheusSchema = z.strictObject({
  /** The registry the metrics are registered in. @default prom-client's global `register` */
  registry: z
    .custom<PrometheusRegistry>((value) => typeof (value as Registry | null)?.registerMetric === 'function', {
      message: 'expected a prom-client Registry',
    })
    .optional(),
  /** First part of every metric name. @default 'redisware_' */
  prefix: z
    .string()
    .regex(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/, 'must be a valid Prometheus metric name prefix')
    .default('redisware_'),
});

/** Options of {@link prometheusMetrics}. */
export type PrometheusMetricsOptions = z.input<typeof prometheusSchema>;

/** What {@link prometheusMetrics} returns. */
export interface PrometheusMetrics {
  /** Pass it as the `onEvent` option of each middleware (or combine it with others: `combineEventHooks`). */
  onEvent: EventHook;
  /** The registry holding the metrics (prom-client's `Registry`). */
  registry: PrometheusRegistry;
  /** `app.get('/metrics', metrics.handler)`: the registry in Prometheus' text format. */
  handler: RequestHandler;
}

/**
 * Prometheus metrics of redisware's events, with prom-client (an optional peer: `npm install prom-client`):
 * `redisware_rate_limit_requests_total{outcome}`, `redisware_cache_requests_total{result,route}`,
 * `redisware_cache_stored_bytes_total{route}`, `redisware_cache_invalidated_entries_total`,
 * `redisware_session_events_total{event}`, `redisware_lock_events_total{event}`,
 * `redisware_redis_errors_total{source,action}`, `redisware_redis_repairs_total{source}`,
 * `redisware_redis_held_writes_total{source,operation,event}`, `redisware_redis_recoveries_total{source}` and the
 * histogram `redisware_redis_duration_seconds{source,operation}`.
 * Call it once per registry (prom-client refuses a metric name registered twice).
 */
export function prometheusMetrics(options?: PrometheusMetricsOptions): PrometheusMetrics {
  const config = parseOptions('prometheusMetrics', prometheusSchema, options);
  const client = optionalPeer<PromClient>('prom-client', 'prometheusMetrics()');
  const registry = (config.registry ?? client.register) as Registry;
  const made = {} as Record<CounterName, Counter<string>>;
  for (const [id, counter] of Object.entries(counters) as [CounterName, (typeof counters)[CounterName]][]) {
    made[id] = new client.Counter({
      name: `${config.prefix}${counter.name}_total`,
      help: counter.help,
      labelNames: [...counter.labels],
      registers: [registry],
    });
  }
  const duration: Histogram<string> = new client.Histogram({
    name: `${config.prefix}${redisDuration.name}`,
    help: redisDuration.help,
    labelNames: [...redisDuration.labels],
    buckets: [...redisDuration.buckets],
    registers: [registry],
  });
  const routeLabel = routeLabeller();

  return {
    registry,
    onEvent(event) {
      for (const measurement of measurementsOf(event, routeLabel)) {
        if ('counter' in measurement) made[measurement.counter].inc(measurement.labels, measurement.value);
        else duration.observe(measurement.labels, measurement.seconds);
      }
    },
    handler(_req, res, next) {
      registry.metrics().then((text) => {
        res.setHeader('Content-Type', registry.contentType);
        res.end(text);
      }, next);
    },
  };
}
