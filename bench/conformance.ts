// `npm run conformance`: the http-tests/cache-tests suite (https://github.com/http-tests/cache-tests, the suite
// behind cache-tests.fyi) against an Express app whose only middleware is `cache.response()` in front of a
// reverse proxy to the suite's origin server, scored as the suite scores it (required tests; one whose
// dependency failed does not count) beside the suite's published results for nginx, Varnish, Squid and Traffic
// Server. Not part of `npm test`: the suite is not on the npm registry.
//
//   CACHE_TESTS_DIR=<checkout, after `npm install --omit=dev` in it> npm run conformance [-- http|ttl ...]
//     [-- --id <test> [--id <test> ...] [--repeat <n>]]
//
// Uses REDIS_URL when set (only keys under its own prefix), else a private redis-server. Method notes: bench/README.md.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import express from 'express';
import { Redis } from 'ioredis';
import { createCache } from '../lib/index.js';
import { startEmbeddedRedis } from '../support/embedded-redis.js';

type Mode = 'http' | 'ttl';
type Results = Record<string, unknown>;
interface Test {
  id: string;
  kind?: 'required' | 'optimal' | 'check';
  browser_only?: boolean;
  depends_on?: string[];
}
interface Suite {
  id: string;
  name: string;
  tests: Test[];
}

const suiteDir = process.env.CACHE_TESTS_DIR && resolve(process.env.CACHE_TESTS_DIR);
if (!suiteDir || !existsSync(join(suiteDir, 'tests', 'index.mjs'))) {
  console.error(
    'Set CACHE_TESTS_DIR to a checkout of https://github.com/http-tests/cache-tests (npm install --omit=dev in it).',
  );
  process.exit(2);
}
const args = process.argv.slice(2);
/**
 * `--id <test>` (repeatable) runs only those tests; `--repeat <n>` runs them (or the whole suite) n times in each
 * mode, and counts how often each failed.
 */
const only = args.flatMap((arg, i) => (arg === '--id' && args[i + 1] ? [args[i + 1]] : []));
const repeat = args.includes('--repeat') ? Math.max(1, Number(args[args.indexOf('--repeat') + 1]) || 1) : 1;
const modes = args.filter((arg): arg is Mode => arg === 'http' || arg === 'ttl');
const published = ['nginx', 'varnish', 'squid', 'trafficserver'];

const suites: Suite[] = (await import(join(suiteDir, 'tests', 'index.mjs'))).default;
const { determineTestResult, resultTypes } = await import(join(suiteDir, 'test-engine', 'lib', 'results.mjs'));

/** Required and optimal passes as the suite counts them (browser-only tests aside). */
function score(results: Results) {
  const counts = { required: 0, requiredPassed: 0, optimal: 0, optimalPassed: 0 };
  const failed: string[] = [];
  for (const suite of suites) {
    for (const test of suite.tests) {
      if (test.browser_only) continue;
      const result = determineTestResult(suites, test.id, results);
      const kind = test.kind ?? 'required';
      if (kind === 'required') {
        counts.required++;
        if (result === resultTypes.pass) counts.requiredPassed++;
        else
          failed.push(
            `${result === resultTypes.dependency_fail ? 'dependency' : 'failed'}: ${suite.id} ${test.id} ${results[test.id] === undefined ? '' : JSON.stringify(results[test.id])}`,
          );
      } else if (kind === 'optimal') {
        counts.optimal++;
        if (result === resultTypes.pass) counts.optimalPassed++;
        else if (process.env.CONFORMANCE_VERBOSE) failed.push(`optimal: ${suite.id} ${test.id}`);
      }
    }
  }
  return { ...counts, failed };
}

function startOrigin(port: number): ChildProcess {
  return spawn('node', ['test-engine/server/server.mjs'], {
    cwd: suiteDir,
    env: {
      ...process.env,
      npm_config_port: String(port),
      npm_config_protocol: 'http',
      npm_config_pidfile: join(tmpdir(), `cache-tests-origin-${process.pid}.pid`),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

const hopByHop = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'te',
  'trailer',
]);

/** A reverse proxy to the origin: what the cache sits in front of. */
function reverseProxy(originPort: number): express.RequestHandler {
  return (req, res) => {
    res.on('error', () => {}); // an origin that fails mid-response must not end the run
    const headers: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) if (!hopByHop.has(name)) headers[name] = value;
    const upstream = http.request(
      {
        insecureHTTPParser: true,
        agent: false,
        host: '127.0.0.1',
        port: originPort,
        method: req.method,
        path: req.originalUrl,
        headers,
      },
      (reply) => {
        res.statusCode = reply.statusCode ?? 502;
        const grouped = new Map<string, string[]>();
        for (let i = 0; i < reply.rawHeaders.length; i += 2) {
          const name = reply.rawHeaders[i];
          const lower = name.toLowerCase();
          // Node frames the body again itself (chunked or its own Content-Length).
          if ((hopByHop.has(lower) && lower !== 'connection') || lower === 'content-length') continue;
          const list = grouped.get(name) ?? [];
          list.push(reply.rawHeaders[i + 1]);
          grouped.set(name, list);
        }
        for (const [name, values] of grouped) res.setHeader(name, values.length === 1 ? values[0] : values);
        reply.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.status(502).end();
      else res.destroy();
    });
    // Interim responses pass through (RFC 9110 §15.2); only the final one is the cache's business.
    upstream.on('information', (info) => {
      if (info.statusCode === 103) {
        const hints: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(info.headers)) if (value !== undefined) hints[name] = value;
        res.writeEarlyHints(hints);
      } else if (info.statusCode === 102) {
        res.writeProcessing();
      }
    });
    req.pipe(upstream);
  };
}

/**
 * The configuration measured: a shared cache that obeys the response, keeps entries up to a day, serves a stale
 * entry for up to a day while the handler fails (RFC 9111 §4.2.4 allows it when the origin cannot be reached, unless
 * the response forbids it), and gives responses with only a Last-Modified the customary 10 % heuristic lifetime.
 */
const httpModeOptions = { freshness: 'http', ttl: '1d', staleIfError: '1d', heuristic: 0.1 } as const;

async function runMode(mode: Mode, redisUrl: string, originPort: number): Promise<Results> {
  const redis = new Redis(redisUrl);
  const cache = createCache({ redis, prefix: `redisware-conformance:${mode}:${Date.now()}` });
  const app = express();
  app.set('etag', false);
  app.set('x-powered-by', false);
  app.use(cache.response(mode === 'http' ? httpModeOptions : { ttl: '1h' }));
  app.use(reverseProxy(originPort));
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const base = `http://localhost:${(server.address() as AddressInfo).port}`;
  // The runner keeps its results in module state: emptied before each mode.
  const runner = await import(join(suiteDir as string, 'test-engine', 'client', 'runner.mjs'));
  const { testResults } = await import(join(suiteDir as string, 'test-engine', 'client', 'test.mjs'));
  for (const id of Object.keys(testResults)) delete testResults[id];
  const chosen = only.length
    ? suites.map((s) => ({ ...s, tests: s.tests.filter((t) => only.includes(t.id)) })).filter((s) => s.tests.length)
    : suites;
  await runner.runTests(chosen, false, base);
  const results: Results = runner.getResults();
  await new Promise((r) => setTimeout(r, 500)); // background refreshes and stores finish
  server.closeAllConnections();
  server.close();
  await redis.quit();
  return results;
}

/** A run of both modes replaces the table between the README's conformance markers. */
function writeIntoReadme(table: string) {
  const readmePath = join(import.meta.dirname, '..', 'README.md');
  const readme = readFileSync(readmePath, 'utf8');
  const [start, end] = ['<!-- conformance -->', '<!-- /conformance -->'];
  if (!readme.includes(start) || !readme.includes(end)) return;
  let revision = 'unknown revision';
  try {
    revision = execFileSync('git', ['-C', suiteDir as string, 'log', '-1', '--format=%h, %cs'], {
      encoding: 'utf8',
    }).trim();
  } catch {}
  const measured = `Measured ${new Date().toISOString().slice(0, 10)} with \`npm run conformance\` (cache-tests ${revision}), Node ${process.version}.`;
  const body = `${start}\n${measured}\n\n${table}\n${end}`;
  writeFileSync(
    readmePath,
    readme.slice(0, readme.indexOf(start)) + body + readme.slice(readme.indexOf(end) + end.length),
  );
  console.log('Written into README.md.');
}

const embedded = process.env.REDIS_URL ? undefined : await startEmbeddedRedis();
const redisUrl = process.env.REDIS_URL ?? (embedded as { url: string }).url;
const originPort = 18000 + (process.pid % 1000);
const origin = startOrigin(originPort);
await new Promise((r) => setTimeout(r, 800));
try {
  const rows: string[] = [];
  for (const mode of modes.length ? modes : (['http', 'ttl'] as Mode[])) {
    if (only.length || repeat > 1) {
      // The chosen tests (or the whole suite), `repeat` times: each run's failures, then how often each failed.
      const failures = new Map<string, number>();
      for (let run = 0; run < repeat; run++) {
        const results = await runMode(mode, redisUrl, originPort);
        // Each test's own result, not scored against its dependencies (in the default mode most tests depend on one
        // that fails by design).
        const failed = (only.length ? only : Object.keys(results)).filter((id) => results[id] !== true);
        for (const id of failed) failures.set(id, (failures.get(id) ?? 0) + 1);
        console.log(`${mode} run ${run + 1}: ${failed.length ? `failed ${failed.join(', ')}` : 'all passed'}`);
      }
      for (const id of only) if (!failures.has(id)) failures.set(id, 0);
      for (const [id, count] of failures) console.log(`${mode} ${id}: failed ${count} of ${repeat} runs`);
      continue;
    }
    const results = await runMode(mode, redisUrl, originPort);
    const scored = score(results);
    rows.push(
      `| redisware, \`freshness: '${mode}'\` | ${scored.requiredPassed} of ${scored.required} | ${scored.optimalPassed} of ${scored.optimal} |`,
    );
    console.log(
      `\n${mode}: required ${scored.requiredPassed}/${scored.required}, optimal ${scored.optimalPassed}/${scored.optimal}`,
    );
    for (const line of scored.failed) console.log(`  ${line}`);
  }
  if (!only.length && repeat === 1) {
    for (const name of published) {
      const scored = score(JSON.parse(readFileSync(join(suiteDir, 'results', `${name}.json`), 'utf8')));
      rows.push(
        `| ${name} (published) | ${scored.requiredPassed} of ${scored.required} | ${scored.optimalPassed} of ${scored.optimal} |`,
      );
    }
    const table = ['| Cache | Required tests passed | Optimal tests passed |', '| --- | ---: | ---: |', ...rows].join(
      '\n',
    );
    console.log(`\n${table}`);
    if (modes.length === 0) writeIntoReadme(table);
  }
} finally {
  origin.kill();
  await embedded?.stop();
}
