import type { Attributes, Counter, Histogram, Meter, MeterProvider } from '@opentelemetry/api';
import { z } from 'zod';
import type { EventHook } from '../events.js';
import { parseOptions } from '../options.js';
import { type CounterName, counters, measurementsOf, redisDuration, routeLabeller } from './measure.js';
import { optionalPeer } from './optional.js';

type OpenTelemetryApi = typeof import('@opentelemetry/api');

/**
 * What this module needs of an OpenTelemetry `Meter` (any `Meter` of `@opentelemetry/api` is one), spelled out so
 * that its types do not require `@opentelemetry/api` of an app that does not use it.
 */
export interface OpenTelemetryMeter {
  createCounter(name: string, options?: { description?: string; unit?: string }): unknown;
  createHistogram(
    name: string,
    options?: { description?: string; unit?: string; advice?: { explicitBucketBoundaries?: number[] } },
  ): unknown;
}

const openTelemetrySchema = z.strictObject({
  /**
   * The meter to record with. @default `metrics.getMeter('redisware')` of `@opentelemetry/api`, from whatever global
   * provider is installed when an event comes (an SDK started after this call counts too)
   */
  meter: z
    .custom<OpenTelemetryMeter>((value) => typeof (value as Meter | null)?.createCounter === 'function', {
      message: 'expected an OpenTelemetry Meter',
    })
    .optional(),
});

/** Options of {@link openTelemetryMetrics}. */
export type OpenTelemetryMetricsOptions = z.input<typeof openTelemetrySchema>;

interface Instruments {
  counters: Record<CounterName, Counter<Attributes>>;
  duration: Histogram<Attributes>;
}

function instrumentsOn(meter: Meter): Instruments {
  const made = {} as Record<CounterName, Counter<Attributes>>;
  for (const [id, counter] of Object.entries(counters) as [CounterName, (typeof counters)[CounterName]][]) {
    made[id] = meter.createCounter(`redisware.${counter.name}`, {
      description: counter.help,
      unit: id === 'cacheStored' ? 'By' : '{count}',
    });
  }
  const duration = meter.createHistogram('redisware.redis.duration', {
    description: redisDuration.help,
    unit: 's',
    advice: { explicitBucketBoundaries: [...redisDuration.buckets] },
  });
  return { counters: made, duration };
}

/**
 * OpenTelemetry metrics of redisware's events, through `@opentelemetry/api` (an optional peer): the counters of
 * `prometheusMetrics()` named `redisware.rate_limit_requests`, `redisware.cache_requests`, … and the histogram
 * `redisware.redis.duration` (seconds). Without an SDK installed by the app, the API's meter is a no-op.
 */
export function openTelemetryMetrics(options?: OpenTelemetryMetricsOptions): { onEvent: EventHook } {
  const config = parseOptions('openTelemetryMetrics', openTelemetrySchema, options);
  const given = config.meter ? instrumentsOn(config.meter as Meter) : undefined;
  const api = given ? undefined : optionalPeer<OpenTelemetryApi>('@opentelemetry/api', 'openTelemetryMetrics()');
  // The global provider is read at each event: a meter taken from it before the app installed its SDK would stay
  // a no-op for good (the API has no proxy meter).
  let provider: MeterProvider | undefined;
  let fromProvider: Instruments | undefined;
  const current = (): Instruments => {
    if (given) return given;
    const installed = (api as OpenTelemetryApi).metrics.getMeterProvider();
    if (installed !== provider || !fromProvider) {
      provider = installed;
      fromProvider = instrumentsOn(installed.getMeter('redisware'));
    }
    return fromProvider;
  };
  const routeLabel = routeLabeller();
  return {
    onEvent(event) {
      const instruments = current();
      for (const measurement of measurementsOf(event, routeLabel)) {
        if ('counter' in measurement)
          instruments.counters[measurement.counter].add(measurement.value, measurement.labels);
        else instruments.duration.record(measurement.seconds, measurement.labels);
      }
    },
  };
}
