// A client that is closed ends, whatever it was doing: nothing redisware opened (the client of createRedis(), the
// shared default client, the pub/sub connection beside a client, their timers) keeps the process alive afterwards.
// Each case runs in a process of its own (tests/connection-ends.child.ts), which must exit by itself.
import { spawn } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createRedis } from '../lib/connection.js';
import type { Report, Scenario } from './connection-ends.child.js';
import { privateRedis, privateRedisWithAdmin, unusedPort } from './support/private-redis.js';
import { silentLogger } from './support/redis.js';

const major = inject('stack').ioredis as 5 | 6;

/** Makes `ioredis` resolve to ioredis 6 in the child, as the ioredis6 project aliases it here. */
const ioredis6Hook = `data:text/javascript,${encodeURIComponent(
  `import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent('export async function resolve(s, c, next) { return next(s === "ioredis" ? "ioredis6" : s, c); }'), import.meta.url);`,
)}`;

/**
 * The longest a child may take to exit once its client is closed (it starts with tsx, which takes a while; the
 * children of a describe block run a few at a time, each a process of its own).
 */
const exitWithinMs = 10_000;

/** Runs `scenario` in a child process; resolves with its report and whether it exited by itself. */
function runChild(scenario: Scenario): Promise<{ report?: Report; exited: boolean; output: string }> {
  const args = ['--import', 'tsx', ...(major === 6 ? ['--import', ioredis6Hook] : [])];
  const child = spawn(process.execPath, [...args, 'tests/connection-ends.child.ts', JSON.stringify(scenario)], {
    cwd: process.cwd(),
    env: { ...process.env, REDIS_URL: '' },
  });
  let output = '';
  child.stdout.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr.on('data', (chunk) => {
    output += chunk;
  });
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), exitWithinMs);
    child.on('exit', (_code, signal) => {
      clearTimeout(killer);
      const last = output.trim().split('\n').at(-1) ?? '';
      let report: Report | undefined;
      try {
        report = JSON.parse(last) as Report;
      } catch {}
      resolve({ report, exited: signal === null, output });
    });
  });
}

let redisUrl: string;
let downUrl: string;
/** A server that accepts connections and never answers: a Redis that hangs (stopped with SIGSTOP, swapping). */
let stalled: Server;
let stalledUrl: string;
const stalledSockets = new Set<Socket>();

beforeAll(async () => {
  redisUrl = (await privateRedis()).url;
  downUrl = `redis://127.0.0.1:${await unusedPort()}`;
  stalled = createServer((socket) => {
    stalledSockets.add(socket);
    socket.on('close', () => stalledSockets.delete(socket));
  });
  await new Promise<void>((resolve) => stalled.listen(0, '127.0.0.1', resolve));
  stalledUrl = `redis://127.0.0.1:${(stalled.address() as { port: number }).port}`;
});
afterAll(async () => {
  for (const socket of stalledSockets) socket.destroy();
  await new Promise((resolve) => stalled.close(resolve));
});

const urlFor = (state: Scenario['state']) =>
  state === 'reconnecting' ? downUrl : state === 'stalled' ? stalledUrl : redisUrl;

describe.concurrent('a client of createRedis(), with the pub/sub connection redisware opens beside it', () => {
  const states: Scenario['state'][] = ['wait', 'connecting', 'ready', 'reconnecting', 'stalled'];
  const closes: Scenario['close'][] = ['disconnect', 'quit'];
  for (const state of states) {
    for (const close of closes) {
      it(`ends when the app calls ${close}() on it while ${state}, leaving no timer or socket behind`, async () => {
        const { report, exited, output } = await runChild({
          client: 'createRedis',
          major,
          url: urlFor(state),
          state,
          close,
        });
        expect(exited, output).toBe(true);
        expect(report, output).toBeDefined();
        expect(report?.status).toBe('end');
        expect(report?.after).toEqual(report?.before);
      });
    }
  }
});

describe.concurrent('a Cluster client of createRedis()', () => {
  for (const close of ['disconnect', 'quit'] as const) {
    it(`ends when the app calls ${close}() on it between reconnection attempts, and lets the process exit`, async () => {
      const scenario = { client: 'cluster', major, url: downUrl, state: 'reconnecting', close } as const;
      const { report, exited, output } = await runChild(scenario);
      expect(exited, output).toBe(true);
      // ioredis stayed 'disconnecting' forever (its connections to read a node's slots leave timers of 2 s).
      expect(report?.status).toBe('end');
    });
  }
});

describe.concurrent('closeDefaultRedis()', () => {
  for (const state of ['ready', 'reconnecting', 'stalled'] as const) {
    it(`closes the shared client and everything opened beside it while ${state}, leaving nothing behind`, async () => {
      const { report, exited, output } = await runChild({
        client: 'default',
        major,
        url: urlFor(state),
        state,
        close: 'closeDefaultRedis',
      });
      expect(exited, output).toBe(true);
      expect(report?.status).toBe('end');
      expect(report?.after).toEqual(report?.before);
    });
  }
});

describe.concurrent('the Sentinel watchers beside a client of createRedis()', () => {
  for (const sentinel of ['answering', 'down'] as const) {
    it(`end with the client while the Sentinel is ${sentinel}, leaving nothing behind`, async () => {
      const { port } = new URL(sentinel === 'down' ? downUrl : redisUrl);
      const { report, exited, output } = await runChild({
        client: 'createRedis',
        major,
        url: redisUrl,
        state: 'ready',
        close: 'disconnect',
        sentinel: { host: '127.0.0.1', port: Number(port) },
      });
      expect(exited, output).toBe(true);
      expect(report?.status).toBe('end');
      expect(report?.after).toEqual(report?.before);
    });
  }
});

describe.concurrent("the app's own ioredis client, handed to redisware", () => {
  for (const state of ['ready', 'reconnecting'] as const) {
    for (const close of ['disconnect', 'quit'] as const) {
      it(`lets the process exit when the app calls ${close}() on it while ${state}: what redisware opened beside it closes too`, async () => {
        const { exited, output } = await runChild({ client: 'own', major, url: urlFor(state), state, close });
        expect(exited, output).toBe(true);
      });
    }
  }
});

describe('quit() on a client of createRedis() whose Redis stopped answering', () => {
  it('closes the connection after a grace of 2 s instead of waiting for the reply forever', async () => {
    const { admin, server } = await privateRedisWithAdmin();
    const client = createRedis({ url: server.url, logger: silentLogger });
    await client.ping();
    // (CLIENT UNPAUSE waits for the pause to end too: the pause is as short as the test allows.)
    await admin.call('CLIENT', 'PAUSE', '5000', 'ALL');
    try {
      const started = Date.now();
      await expect(client.quit()).resolves.toBe('OK');
      expect(client.status).toBe('end');
      expect(Date.now() - started).toBeLessThan(4_500);
    } finally {
      await admin.call('CLIENT', 'UNPAUSE');
    }
  });
});
