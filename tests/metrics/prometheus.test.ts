// prometheusMetrics() with prom-client itself: the counters and the Redis-latency histogram move as requests go
// through rateLimit, sessions and the cache in one app, and /metrics serves them in Prometheus' text format.
import compression from 'compression';
import express from 'express';
import helmet from 'helmet';
import { Registry } from 'prom-client';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { combineEventHooks, createCache, type RediswareEvent, rateLimit, redisSession } from '../../lib/index.js';
import { prometheusMetrics } from '../../lib/metrics/index.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('metrics-prometheus');
const secret = 'a-session-secret-of-at-least-32-characters';

/** One sample's value from the text format: `name{labels} value`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((each) => each.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

function metricsApp(onEvent: (event: RediswareEvent) => void, handler: express.RequestHandler) {
  const app = express();
  app.use(compression());
  app.use(helmet());
  app.use(express.json());
  app.get('/metrics', handler);
  app.use(rateLimit({ redis: redis.client(), prefix: uniquePrefix('rl'), limit: 3, onEvent }));
  app.use(redisSession({ secret, redis: redis.client(), prefix: uniquePrefix('s'), logger: silentLogger, onEvent }));
  const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('c'), logger: silentLogger, onEvent });
  app.get('/report', cache.response({ ttl: '1m' }), (_req, res) => res.json({ report: 'r'.repeat(50) }));
  app.post('/login', (req, res) => {
    req.session.userId = 'ada';
    res.json({ ok: true });
  });
  return app;
}

describe('prometheusMetrics()', () => {
  it('counts rate-limit outcomes, cache results per route, sessions and Redis waits, served on /metrics', async () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry });
    const app = metricsApp(metrics.onEvent, metrics.handler);
    const agent = request.agent(app);
    await agent.get('/report').expect(200);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await agent.get('/report').expect(200);
    await agent.post('/login').expect(200);
    await agent.get('/report').expect(429);

    const scrape = await request(app).get('/metrics').expect(200);
    expect(scrape.headers['content-type']).toBe(registry.contentType);
    const text = scrape.text;
    expect(sample(text, 'redisware_rate_limit_requests_total{outcome="allowed"}')).toBe(3);
    expect(sample(text, 'redisware_rate_limit_requests_total{outcome="blocked"}')).toBe(1);
    expect(sample(text, 'redisware_cache_requests_total{result="miss",route="/report"}')).toBe(1);
    expect(sample(text, 'redisware_cache_requests_total{result="hit",route="/report"}')).toBe(1);
    expect(sample(text, 'redisware_cache_stored_bytes_total{route="/report"}')).toBe(
      Buffer.byteLength(JSON.stringify({ report: 'r'.repeat(50) })),
    );
    expect(sample(text, 'redisware_session_events_total{event="created"}')).toBe(1);
    // Three Redis-counted requests (the fourth was blocked from memory), and every wait within the last bucket.
    expect(sample(text, 'redisware_redis_duration_seconds_count{source="rateLimit",operation="hit"}')).toBe(4);
    expect(sample(text, 'redisware_redis_duration_seconds_bucket{le="+Inf",source="cache",operation="read"}')).toBe(2);
    expect(text).toContain('# TYPE redisware_redis_duration_seconds histogram');
  });

  it('counts Redis errors by source and action', async () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry, prefix: 'app_' });
    metrics.onEvent({
      type: 'redis.error',
      source: 'rateLimit',
      action: 'allowed',
      operation: 'hit',
      error: new Error('down'),
      durationMs: 250,
    });
    const text = await registry.metrics();
    expect(sample(text, 'app_redis_errors_total{source="rateLimit",action="allowed"}')).toBe(1);
  });

  it('counts writes held during an outage, writes lost to the bound, and outages that ended', async () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry, prefix: 'app_' });
    metrics.onEvent({ type: 'redis.deferred', source: 'session', operation: 'destroy', pending: 1 });
    metrics.onEvent({ type: 'redis.deferred', source: 'session', operation: 'destroy', pending: 2 });
    metrics.onEvent({ type: 'redis.dropped', source: 'cache', operation: 'invalidate', pending: 10_000 });
    metrics.onEvent({ type: 'redis.recovered', source: 'cache', downMs: 1200 });
    const text = await registry.metrics();
    const held = (labels: string) => sample(text, `app_redis_held_writes_total{${labels}}`);
    expect(held('source="session",operation="destroy",event="deferred"')).toBe(2);
    expect(held('source="cache",operation="invalidate",event="dropped"')).toBe(1);
    expect(sample(text, 'app_redis_recoveries_total{source="cache"}')).toBe(1);
  });

  it('labels a cache behind app.use() by where it is mounted, so requests for any path cannot exhaust the routes', async () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry });
    const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('c'), onEvent: metrics.onEvent });
    const app = express();
    app.use('/shop', cache.response());
    app.get('/shop/products/:id', (req, res) => res.json({ id: req.params.id }));
    for (let i = 0; i < 120; i++) await request(app).get(`/shop/wp-admin/probe${i}.php`).expect(404);
    await request(app).get('/shop/products/1').expect(200);
    const text = await registry.metrics();
    expect(sample(text, 'redisware_cache_requests_total{result="miss",route="/shop/*"}')).toBe(121);
    expect(text).not.toContain('route="other"');
  });

  it('labels at most 100 routes, then "other"', async () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry });
    for (let i = 0; i < 150; i++) {
      metrics.onEvent({ type: 'cache.bypass', route: `/users/${i}`, reason: 'method' });
    }
    const text = await registry.metrics();
    const series = text.split('\n').filter((line) => line.startsWith('redisware_cache_requests_total{'));
    expect(series).toHaveLength(101);
    expect(sample(text, 'redisware_cache_requests_total{result="bypass",route="other"}')).toBe(50);
  });

  it('feeds several hooks through combineEventHooks, and rejects a bad option by name', () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry });
    const seen: string[] = [];
    const hook = combineEventHooks(metrics.onEvent, (event) => void seen.push(event.type));
    hook({ type: 'lock.acquired', resource: 'job', key: 'lock:job', durationMs: 1 });
    expect(seen).toEqual(['lock.acquired']);
    expect(() => prometheusMetrics({ prefix: 'bad prefix' })).toThrow(/prometheusMetrics: option "prefix" is invalid/);
    expect(() => prometheusMetrics({ registry: {} as Registry })).toThrow(/option "registry" is invalid/);
  });
});
