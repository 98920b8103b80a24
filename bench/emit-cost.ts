// `npm run bench:emit`: what one event costs the request that reports it, without a hook, with a no-op hook and
// with prometheusMetrics(), measured in-process on the code every event site runs (see bench/README.md). The
// autocannon suite (`npm run bench -- events`) measures whole requests; this resolves the nanoseconds it cannot.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { now as clock, type Emit, eventEmitter, since } from '../lib/events.js';
import { prometheusMetrics } from '../lib/metrics/index.js';

const iterations = Number(process.env.BENCH_ITERATIONS ?? 2_000_000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 7);
const silent = { warn() {}, error() {} };

/** One rate-limited request's event site, as `count()` in lib/rate-limit/index.ts runs it. */
function rateLimitSite(emit: Emit | undefined, used: number): void {
  const started = emit ? clock() : 0;
  emit?.({
    type: 'rateLimit.allowed',
    key: '10.0.0.1',
    limit: 100,
    used,
    remaining: 100 - used,
    durationMs: since(started),
  });
}

/** A cache HIT's event site (`serveFound` in lib/cache/response.ts), its route already known. */
function cacheSite(emit: Emit | undefined, size: number): void {
  const started = emit ? clock() : 0;
  if (emit)
    emit({ type: 'cache.hit', route: '/items/:id', key: 'cache:{GET /items/1}', durationMs: since(started), size });
}

const hooks: Record<string, () => Emit | undefined> = {
  'no hook': () => eventEmitter(undefined, silent),
  'a no-op hook': () => eventEmitter(() => {}, silent),
  'prometheusMetrics()': () => eventEmitter(prometheusMetrics({ registry: new Registry() }).onEvent, silent),
};

function nsPerCall(site: (emit: Emit | undefined, n: number) => void, emit: Emit | undefined): number {
  const started = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) site(emit, i & 63);
  return Number(process.hrtime.bigint() - started) / iterations;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const rows: string[] = [];
for (const [siteName, site] of [
  ['rateLimit.allowed', rateLimitSite],
  ['cache.hit', cacheSite],
] as const) {
  const emitters = Object.fromEntries(Object.entries(hooks).map(([name, make]) => [name, make()]));
  for (const emit of Object.values(emitters)) nsPerCall(site, emit); // warm-up: let V8 optimise each path
  const samples = Object.fromEntries(Object.keys(hooks).map((name) => [name, [] as number[]]));
  for (let round = 0; round < rounds; round++) {
    for (const [name, emit] of Object.entries(emitters)) samples[name].push(nsPerCall(site, emit));
  }
  rows.push(
    `| \`${siteName}\` | ${Object.keys(hooks)
      .map((name) => median(samples[name]).toFixed(1))
      .join(' | ')} |`,
  );
}

const table = [
  `Measured ${new Date().toISOString().slice(0, 10)} with \`npm run bench:emit\`: Node ${process.version}, ${iterations.toLocaleString('en-US')} calls × ${rounds} rounds, median ns per event site.`,
  '',
  `| event site | ${Object.keys(hooks).join(' | ')} |`,
  `| --- | ${Object.keys(hooks)
    .map(() => '---:')
    .join(' | ')} |`,
  ...rows,
].join('\n');
console.log(table);

const readmePath = join(import.meta.dirname, '..', 'README.md');
const readme = readFileSync(readmePath, 'utf8');
const start = '<!-- bench:emit -->';
const end = '<!-- /bench:emit -->';
if (readme.includes(start) && readme.includes(end)) {
  writeFileSync(
    readmePath,
    `${readme.slice(0, readme.indexOf(start) + start.length)}\n${table}\n${readme.slice(readme.indexOf(end))}`,
  );
}
