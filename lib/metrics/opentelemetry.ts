import type { Attributes, Counter, Histogram, Meter } from '@opentelemetry/api';
import { z } from 'zod';
import type { EventHook } from '../events.js';
import { parseOptions } from '../options.js';
import { type CounterName, counters, measurementsOf, redisDuration, routeLabeller } from './measure.js';
import { optionalPeer } from './optional.js';

type OpenTelemetryApi = typeof import('@opentelemetry/api');

const openTelemetrySchema = z.strictObject({
  /** The meter to record with. @default `metrics.getMeter('redisware')` of `@opentelemetry/api` (the global provider) */
  meter: z
    .custom<Meter>((value) => typeof (value as Meter | null)?.createCounter === 'function', {
      message: 'expected an OpenTelemetry Meter',
    })
    .optional(),
});

/** Options of {@link openTelemetryMetrics}. */
export type OpenTelemetryMetricsOptions = z.input<typeof openTelemetrySchema>;

/**
 * OpenTelemetry metrics of redisware's events, through `@opentelemetry/api` (an optional peer): the counters of
 * `prometheusMetrics()` named `redisware.rate_limit.requests`, `redisware.cache.requests`, … and the histogram
 * `redisware.redis.duration` (seconds). Without an SDK installed by the app, the API's meter is a no-op.
 */
export function openTelemetryMetrics(options?: OpenTelemetryMetricsOptions): { onEvent: EventHook } {
  const config = parseOptions('openTelemetryMetrics', openTelemetrySchema, options);
  const meter =
    config.meter ??
    optionalPeer<OpenTelemetryApi>('@opentelemetry/api', 'openTelemetryMetrics()').metrics.getMeter('redisware');
  const made = {} as Record<CounterName, Counter<Attributes>>;
  for (const [id, counter] of Object.entries(counters) as [CounterName, (typeof counters)[CounterName]][]) {
    made[id] = meter.createCounter(`redisware.${counter.name}`, {
      description: counter.help,
      unit: id === 'cacheStored' ? 'By' : '{count}',
    });
  }
  const duration: Histogram<Attributes> = meter.createHistogram('redisware.redis.duration', {
    description: redisDuration.help,
    unit: 's',
    advice: { explicitBucketBoundaries: [...redisDuration.buckets] },
  });
  const routeLabel = routeLabeller();
  return {
    onEvent(event) {
      for (const measurement of measurementsOf(event, routeLabel)) {
        if ('counter' in measurement) made[measurement.counter].add(measurement.value, measurement.labels);
        else duration.record(measurement.seconds, measurement.labels);
      }
    },
  };
}
