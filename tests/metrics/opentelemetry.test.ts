// openTelemetryMetrics() through @opentelemetry/api, read back with the real SDK's in-memory reader; and a no-op,
// costing the app nothing, when no SDK is installed.
import { metrics } from '@opentelemetry/api';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import cors from 'cors';
import express from 'express';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { createCache, type EventHook, rateLimit } from '../../lib/index.js';
import { openTelemetryMetrics } from '../../lib/metrics/index.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('metrics-otel');

function sdk() {
  const reader = new PeriodicExportingMetricReader({
    exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
    exportIntervalMillis: 3_600_000,
  });
  const provider = new MeterProvider({ readers: [reader] });
  /** The data points of `name`, as `{ attributes, value }`. */
  async function points(name: string) {
    const { resourceMetrics } = await reader.collect();
    const found = resourceMetrics.scopeMetrics
      .flatMap((scope) => scope.metrics)
      .find((m) => m.descriptor.name === name);
    return (found?.dataPoints ?? []).map((point) => ({ attributes: point.attributes, value: point.value }));
  }
  return { provider, points };
}

function app(onEvent: EventHook) {
  const server = express();
  server.use(cors());
  server.use(rateLimit({ redis: redis.client(), prefix: uniquePrefix('rl'), limit: 1, onEvent }));
  const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('c'), logger: silentLogger, onEvent });
  server.get('/a/:id', cache.response(), (_req, res) => res.send('a'));
  return server;
}

afterEach(() => metrics.disable());

describe('openTelemetryMetrics()', () => {
  it('records counters and the Redis-wait histogram on a given meter', async () => {
    const { provider, points } = sdk();
    const otel = openTelemetryMetrics({ meter: provider.getMeter('test') });
    const server = app(otel.onEvent);
    await request(server).get('/a/1').expect(200);
    await request(server).get('/a/1').expect(429);
    expect(await points('redisware.rate_limit_requests')).toEqual([
      { attributes: { outcome: 'allowed' }, value: 1 },
      { attributes: { outcome: 'blocked' }, value: 1 },
    ]);
    expect(await points('redisware.cache_requests')).toEqual([
      { attributes: { result: 'miss', route: '/a/:id' }, value: 1 },
    ]);
    const waits = await points('redisware.redis.duration');
    const rateLimitWaits = waits.find((point) => point.attributes.source === 'rateLimit');
    expect(rateLimitWaits?.value).toMatchObject({ count: 2 });
  });

  it('uses the global meter provider the app installs', async () => {
    const { provider, points } = sdk();
    metrics.setGlobalMeterProvider(provider);
    const otel = openTelemetryMetrics();
    otel.onEvent({ type: 'session.expired', durationMs: 2 });
    expect(await points('redisware.session_events')).toEqual([{ attributes: { event: 'expired' }, value: 1 }]);
  });

  it('records through an SDK the app installs after creating it (imports run before the SDK starts)', async () => {
    const otel = openTelemetryMetrics();
    otel.onEvent({ type: 'lock.acquired', resource: 'job', key: 'lock:job', durationMs: 1 });
    const { provider, points } = sdk();
    metrics.setGlobalMeterProvider(provider);
    otel.onEvent({ type: 'lock.acquired', resource: 'job', key: 'lock:job', durationMs: 1 });
    expect(await points('redisware.lock_events')).toEqual([{ attributes: { event: 'acquired' }, value: 1 }]);
  });

  it('is a no-op without an SDK, and the app answers as usual', async () => {
    const otel = openTelemetryMetrics();
    const server = app(otel.onEvent);
    await request(server).get('/a/2').expect(200);
    await request(server).get('/a/2').expect(429);
  });
});
