// Runs the http-tests/cache-tests suite (https://github.com/http-tests/cache-tests, a checkout given as the first
// argument) against an Express app whose only middleware is cache.response({ ttl: '1h' }) in front of a forwarding
// proxy to the suite's origin server, and scores the required tests of the groups issue #14 names (or those given
// as a comma-separated second argument). Needs a Redis at REDIS_URL (default redis://127.0.0.1:6379) and `npm run
// build` first. Not part of `npm test`: the suite is not on the npm registry.
//   node bench/cache-tests.mjs ../cache-tests [groups]
import { spawn } from 'node:child_process';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { Redis } from 'ioredis';
import { createCache } from '../dist/index.js';

const suiteDir = process.argv[2];
const groups = (process.argv[3] ?? 'cc-response,auth,vary,conditional-inm,age-parse,headers,invalidation').split(',');
const originPort = 18765;
const origin = spawn('node', ['test-engine/server/server.mjs'], {
  cwd: suiteDir,
  env: {
    ...process.env,
    npm_config_port: String(originPort),
    npm_config_protocol: 'http',
    npm_config_pidfile: join(tmpdir(), `cache-tests-origin-${process.pid}.pid`),
  },
  stdio: ['ignore', 'ignore', 'inherit'],
});
await new Promise((r) => setTimeout(r, 800));

const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { enableAutoPipelining: true });
const cache = createCache({ redis, prefix: `ct${Date.now()}` });
const app = express();
app.set('etag', false);
app.set('x-powered-by', false);
app.use(cache.response({ ttl: '1h' }));
const hop = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer']);
app.use((req, res) => {
  res.on('error', () => {}); // a relayed origin that errs mid-response must not end the run
  const headers = {};
  for (const [name, value] of Object.entries(req.headers)) if (!hop.has(name)) headers[name] = value;
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
      res.statusCode = reply.statusCode;
      const grouped = new Map();
      for (let i = 0; i < reply.rawHeaders.length; i += 2) {
        const name = reply.rawHeaders[i];
        if (
          (hop.has(name.toLowerCase()) && name.toLowerCase() !== 'connection') ||
          name.toLowerCase() === 'content-length'
        )
          continue;
        const list = grouped.get(name) ?? [];
        list.push(reply.rawHeaders[i + 1]);
        grouped.set(name, list);
      }
      for (const [name, values] of grouped) res.setHeader(name, values.length === 1 ? values[0] : values);
      reply.pipe(res);
    },
  );
  upstream.on('error', (e) => {
    console.error('UPSTREAM ERROR', req.originalUrl, e.message);
    if (!res.headersSent) res.status(502).end();
  });
  req.pipe(upstream);
});
const server = app.listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const base = `http://localhost:${server.address().port}`;

const { runTests, getResults } = await import(`${suiteDir}/test-engine/client/runner.mjs`);
const suites = (await import(`${suiteDir}/tests/index.mjs`)).default.filter((suite) => groups.includes(suite.id));
await runTests(suites, false, base);
const results = getResults();
let passed = 0;
let total = 0;
for (const suite of suites) {
  let suitePassed = 0;
  let suiteTotal = 0;
  for (const test of suite.tests) {
    if (!(test.kind === undefined || test.kind === 'required') || test.browser_only) continue;
    suiteTotal++;
    if (results[test.id] === true) suitePassed++;
    else console.log(`FAIL ${suite.id} ${test.id}: ${JSON.stringify(results[test.id])}`);
  }
  console.log(`${suite.id}: ${suitePassed}/${suiteTotal}`);
  passed += suitePassed;
  total += suiteTotal;
}
console.log(`required: ${passed}/${total}`);
origin.kill();
server.closeAllConnections();
server.close();
redis.disconnect();
