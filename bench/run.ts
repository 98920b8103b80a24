// `npm run bench [-- <suite> ...]`: side-by-side benchmarks on a private redis-server, written into README.md.
// Every variant runs in its own server process; each measured run of a variant sits between two runs of bare
// Express in the same round, and ratios are taken to that bracketing baseline (the machine drifts).
import { type ChildProcess, fork } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { startEmbeddedRedis } from '../support/embedded-redis.js';
import { type Scenario, sessionSecret } from './variants.js';

const duration = Number(process.env.BENCH_DURATION ?? 3);
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
const calibrationRequests = 500;
/** Unmeasured load right before each measured run (see measure()). */
const rewarmSeconds = 1;
/** Only the cases whose name contains this (for quick comparisons; the README is then left alone). */
const caseFilter = process.env.BENCH_CASE;
const bare = 'bare Express';
/** Not a library (see bench/variants.ts): it sets no cookie, so it is not asked to log in. */
const floor = 'floor: empty middleware awaiting one PING per turn';

interface Case {
  name: string;
  scenario: Scenario;
  path?: string;
  /** Request this path first and send the cookie it sets with every request (a logged-in client). */
  loginPath?: string;
  /** A random client IP per request, through X-Forwarded-For. */
  randomClients?: number;
  /** Headers every request of the case sends. */
  headers?: Record<string, string>;
  /** Every request asks for a URL of its own (`?n=<counter>`): a cache misses, and stores, each time. */
  uniquePaths?: boolean;
  /** The variants of this case, when not the suite's. */
  variants?: string[];
}

interface Suite {
  title: string;
  variants: string[];
  cases: Case[];
}

/** A signed session cookie (as redisSession() issues them) naming a session no Redis holds: each request loads it. */
const sessionId = randomBytes(32).toString('base64url');
const sessionCookie = `sid=${sessionId}.${createHmac('sha256', sessionSecret).update(sessionId).digest('base64url')}`;

/** With BENCH_BASELINE_DIST, the earlier build's `redisware <middleware>, <label>` variant leads each suite. */
const baselineOf = (middleware: string) =>
  process.env.BENCH_BASELINE_DIST
    ? [`redisware ${middleware}, ${process.env.BENCH_BASELINE_LABEL ?? 'before onEvent'}`]
    : [];

const suites: Record<string, Suite> = {
  'rate-limit': {
    title: 'Rate limiting',
    variants: [
      ...baselineOf('rateLimit()'),
      'redisware rateLimit()',
      "redisware rateLimit(), the app's own ioredis 6 client",
      'redisware rateLimit(), two rules (the limit per 15 minutes and per day)',
      'redisware rateLimit(), batch: false',
      'express-rate-limit + rate-limit-redis',
      'rate-limiter-flexible',
      floor,
    ],
    cases: [
      { name: 'one client, limit never reached', scenario: { limit: 1e9 } },
      {
        name: '10,000 clients (random X-Forwarded-For), limit never reached',
        scenario: { limit: 1e9 },
        randomClients: 10_000,
      },
      { name: 'one client flooding, blocked after its first request', scenario: { limit: 1 } },
    ],
  },
  session: {
    title: 'Sessions',
    variants: [
      ...baselineOf('redisSession()'),
      'redisware redisSession()',
      "redisware redisSession(), the app's own ioredis 6 client",
      'redisware redisSession(), batch: false',
      'express-session + connect-redis 9 (node-redis 5)',
      floor,
    ],
    cases: [
      { name: 'read-only request with an existing session', scenario: {}, path: '/read', loginPath: '/login' },
      { name: 'write request (counter++) on an existing session', scenario: {}, path: '/write', loginPath: '/login' },
    ],
  },
  cache: {
    title: 'Response caching',
    variants: [
      ...baselineOf('cacheResponse()'),
      'redisware cacheResponse()',
      "redisware cacheResponse({ freshness: 'http' }), the response's Cache-Control: max-age=3600",
      "redisware cacheResponse(), the app's own ioredis 6 client",
      'redisware cacheResponse(), batch: false',
      'apicache 1.6 (node-redis 3)',
    ],
    cases: [
      { name: 'HIT, ~1 KB JSON (bare Express sends the same bytes from memory)', scenario: {}, path: '/json-1k' },
      {
        name: 'HIT, ~1 KB JSON behind compression(), gzip clients (bare Express: compression of the same bytes)',
        scenario: { compression: true },
        path: '/json-1k',
        headers: { 'accept-encoding': 'gzip' },
      },
      { name: 'HIT, ~100 KB JSON (bare Express sends the same bytes from memory)', scenario: {}, path: '/json-100k' },
      { name: '5 ms "database" handler (bare Express: uncached)', scenario: {}, path: '/db' },
      {
        name: 'MISS, ~1 KB JSON: every request a new URL, stored each time (bare Express sends the same bytes)',
        scenario: {},
        path: '/json-1k',
        uniquePaths: true,
      },
    ],
  },
  outage: {
    title: 'When Redis is down',
    variants: [
      'redisware rateLimit() + redisSession() + cacheResponse(), Redis down (connection refused)',
      'redisware rateLimit() + redisSession() + cacheResponse(), Redis up',
    ],
    cases: [
      {
        name: 'one route (res.json of ~1 KB) behind all three middlewares, a session cookie on every request (bare Express: the same route, no middleware, no Redis)',
        scenario: {},
        path: '/page',
        headers: { cookie: sessionCookie },
      },
    ],
  },
  events: {
    title: 'onEvent: no hook, a no-op hook, prometheusMetrics()',
    variants: [],
    cases: (['rateLimit()', 'redisSession()', 'cacheResponse()'] as const).map((middleware) => {
      const baseline = process.env.BENCH_BASELINE_DIST
        ? [`, ${process.env.BENCH_BASELINE_LABEL ?? 'before onEvent'}`]
        : [];
      const variants = [...baseline, '', ', a no-op onEvent', ', onEvent: prometheusMetrics()'].map(
        (hook) => `redisware ${middleware}${hook}`,
      );
      if (middleware === 'rateLimit()') return { name: 'rateLimit(), one client', scenario: { limit: 1e9 }, variants };
      if (middleware === 'redisSession()') {
        return {
          name: 'redisSession(), read-only request',
          scenario: {},
          path: '/read',
          loginPath: '/login',
          variants,
        };
      }
      return { name: 'cacheResponse(), HIT of ~1 KB JSON', scenario: {}, path: '/json-1k', variants };
    }),
  },
};

interface Measurement {
  rps: number;
  p99: number;
  cpuPerRequest: number;
  non2xx: number;
}

interface ServerHandle {
  child: ChildProcess;
  port: number;
  /** Headers every load request sends (the session cookie of a logged-in client). */
  headers: Record<string, string>;
}

function startServer(variant: string, redisUrl: string, scenario: Scenario): Promise<ServerHandle> {
  const child = fork(join(import.meta.dirname, 'server.ts'), [variant, redisUrl, JSON.stringify(scenario)], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (message: { type: string; port: number }) =>
      resolve({ child, port: message.port, headers: {} }),
    );
    child.once('exit', (code) => reject(new Error(`${variant} server exited with ${code}`)));
  });
}

function stats(server: ServerHandle): Promise<{ cpu: NodeJS.CpuUsage; served: number }> {
  return new Promise((resolve) => {
    server.child.once('message', (message: { cpu: NodeJS.CpuUsage; served: number }) => resolve(message));
    server.child.send({ type: 'stats' });
  });
}

/** Requests sent with a URL of their own so far (see `Case.uniquePaths`). */
let uniqueRequests = 0;

function randomIp(space: number): string {
  const n = Math.floor(Math.random() * space);
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

function load(
  server: ServerHandle,
  testCase: Case,
  options: { duration?: number; amount?: number; connections?: number },
) {
  const path = testCase.path ?? '/';
  const url = `http://127.0.0.1:${server.port}${path}`;
  const { randomClients, uniquePaths } = testCase;
  return autocannon({
    url,
    headers: { ...server.headers, ...testCase.headers },
    connections: options.connections ?? connections,
    ...(options.amount ? { amount: options.amount } : { duration: options.duration }),
    requests:
      randomClients || uniquePaths
        ? [
            {
              setupRequest: (request) => ({
                ...request,
                path: uniquePaths ? `${path}?n=${++uniqueRequests}` : request.path,
                headers: randomClients
                  ? { ...request.headers, 'x-forwarded-for': randomIp(randomClients) }
                  : request.headers,
              }),
            },
          ]
        : undefined,
  });
}

/**
 * One measured run, after an unmeasured second of the same load. A server that sat idle while the others ran has
 * had its young generation shrunk by V8 (32 MB down to 1 MB after some 10–20 s), and would spend its run regrowing
 * it. Bare Express runs every other slot and hardly idles, so without this every other variant paid for the wait.
 */
async function measure(server: ServerHandle, testCase: Case): Promise<Measurement> {
  await load(server, testCase, { duration: rewarmSeconds });
  const before = await stats(server);
  const result = await load(server, testCase, { duration });
  const after = await stats(server);
  const cpuMicros = after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system;
  return {
    rps: result.requests.average,
    p99: result.latency.p99,
    cpuPerRequest: cpuMicros / Math.max(1, after.served - before.served),
    non2xx: result.non2xx,
  };
}

/** Commands per request the app sends, and commands Redis executes (including those inside scripts), via MONITOR. */
async function countCommands(redisUrl: string, server: ServerHandle, testCase: Case) {
  // No ready check and no connection of its own: a command echoed by MONITOR before ioredis has switched the
  // connection to monitoring (such as its own INFO ready check) fails it with "Command queue state error".
  const connection = new Redis(redisUrl, { lazyConnect: true, enableReadyCheck: false });
  const monitor = await connection.monitor();
  connection.disconnect();
  let sent = 0;
  let insideScripts = 0;
  monitor.on('monitor', (_time: string, _args: string[], source: string) => {
    if (source === 'lua') insideScripts++;
    else sent++;
  });
  const before = await stats(server);
  await load(server, testCase, { amount: calibrationRequests, connections: 10 });
  const after = await stats(server);
  await new Promise((resolve) => setTimeout(resolve, 300));
  monitor.disconnect();
  const served = after.served - before.served;
  return { sent: sent / served, executed: (sent + insideScripts) / served };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

async function runCase(redisUrl: string, suite: Suite, testCase: Case): Promise<string> {
  const variants = testCase.variants ?? suite.variants;
  const names = [bare, ...variants];
  const servers = new Map<string, ServerHandle>();
  for (const name of names) {
    const server = await startServer(name, redisUrl, testCase.scenario);
    if (testCase.loginPath) {
      const response = await fetch(`http://127.0.0.1:${server.port}${testCase.loginPath}`);
      const cookie = response.headers.get('set-cookie')?.split(';')[0];
      if (cookie) server.headers = { cookie };
      else if (name !== bare && name !== floor) throw new Error(`${name}: ${testCase.loginPath} set no cookie`);
    }
    servers.set(name, server);
  }
  // Servers that set no cookie (bare Express, the floor) get one anyway: every server parses the same request.
  const cookie = [...servers.values()].find((server) => server.headers.cookie)?.headers;
  for (const server of servers.values()) if (cookie && !server.headers.cookie) server.headers = cookie;
  const get = (name: string) => servers.get(name) as ServerHandle;
  for (const name of names) await load(get(name), testCase, { duration: 1 }); // warm-up (JIT, connections)

  const runs = new Map<string, Measurement[]>(names.map((name) => [name, []]));
  const ratios = new Map<string, number[]>(variants.map((name) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    let previousBare = await measure(get(bare), testCase);
    runs.get(bare)?.push(previousBare);
    for (const name of variants) {
      const result = await measure(get(name), testCase);
      const nextBare = await measure(get(bare), testCase);
      runs.get(name)?.push(result);
      runs.get(bare)?.push(nextBare);
      ratios.get(name)?.push(result.rps / ((previousBare.rps + nextBare.rps) / 2));
      previousBare = nextBare;
      process.stdout.write(`[${name}: ${Math.round(result.rps)}]`);
    }
  }
  process.stdout.write(' counting commands');
  const commands = new Map<string, { sent: number; executed: number }>();
  for (const name of variants) commands.set(name, await countCommands(redisUrl, get(name), testCase));
  for (const server of servers.values()) server.child.send({ type: 'stop' });

  const rows = names.map((name) => {
    const measured = runs.get(name) as Measurement[];
    const variantRatios = ratios.get(name) as number[] | undefined;
    // The median of the rounds, and their spread (the machine drifts between rounds).
    const ratio = variantRatios
      ? `${median(variantRatios).toFixed(2)}× (${Math.min(...variantRatios).toFixed(2)}–${Math.max(...variantRatios).toFixed(2)})`
      : '1.00×';
    const cmds = commands.get(name);
    const non2xx = measured.reduce((sum, m) => sum + m.non2xx, 0) > 0 ? ' ¹' : '';
    return `| ${name}${non2xx} | ${Math.round(median(measured.map((m) => m.rps))).toLocaleString('en-US')} | ${ratio} | ${median(measured.map((m) => m.p99)).toFixed(0)} | ${median(measured.map((m) => m.cpuPerRequest)).toFixed(0)} | ${cmds ? cmds.sent.toFixed(2) : '0'} | ${cmds ? cmds.executed.toFixed(2) : '0'} |`;
  });
  return [
    `**${testCase.name}**`,
    '',
    '| variant | req/s (median) | × bare Express (bracketing runs): median (min–max of rounds) | p99 ms | server CPU µs/request | Redis commands sent/request | executed by Redis/request |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
    '',
  ].join('\n');
}

function writeIntoReadme(suiteName: string, markdown: string): void {
  const readmePath = join(import.meta.dirname, '..', 'README.md');
  const readme = readFileSync(readmePath, 'utf8');
  const start = `<!-- bench:${suiteName} -->`;
  const end = `<!-- /bench:${suiteName} -->`;
  const from = readme.indexOf(start);
  const to = readme.indexOf(end);
  if (from === -1 || to === -1) {
    console.log(`README.md has no ${start} … ${end} markers; not written there.`);
    return;
  }
  writeFileSync(readmePath, `${readme.slice(0, from + start.length)}\n${markdown}\n${readme.slice(to)}`);
}

async function main(): Promise<void> {
  const selected = process.argv.slice(2).filter((arg) => !arg.startsWith('-'));
  const names = selected.length ? selected : Object.keys(suites);
  const redis = await startEmbeddedRedis();
  const probe = new Redis(redis.url);
  const version = (await probe.info('server')).match(/redis_version:(\S+)/)?.[1];
  probe.disconnect();
  try {
    for (const name of names) {
      const suite = suites[name];
      if (!suite) throw new Error(`unknown suite ${name}; known: ${Object.keys(suites).join(', ')}`);
      console.log(`\n${suite.title}`);
      const parts: string[] = [];
      for (const testCase of suite.cases) {
        if (!caseFilter || testCase.name.includes(caseFilter)) parts.push(await runCase(redis.url, suite, testCase));
      }
      const header = `Measured ${new Date().toISOString().slice(0, 10)} with \`npm run bench -- ${name}\`: Node ${process.version}, Redis ${version}, ${cpus().length} × ${cpus()[0]?.model.trim()}, autocannon ${connections} connections, ${rounds} rounds × ${duration} s per variant, each between two bare-Express runs. ¹ = answered non-2xx (expected when blocked).`;
      const markdown = `${header}\n\n${parts.join('\n')}`;
      console.log(`\n${markdown}`);
      if (!caseFilter) writeIntoReadme(name, markdown);
    }
  } finally {
    await redis.stop();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
