// redisware/metrics: Prometheus and OpenTelemetry metrics of the `onEvent` stream.
export type { OpenTelemetryMeter, OpenTelemetryMetricsOptions } from './opentelemetry.js';
export { openTelemetryMetrics } from './opentelemetry.js';
export type { PrometheusMetrics, PrometheusMetricsOptions, PrometheusRegistry } from './prometheus.js';
export { prometheusMetrics } from './prometheus.js';
