// Run as a child process with --expose-gc (see memory.test.ts): sends `count` requests through
// each middleware while Redis is down (killed after the first request) and prints the heap retained by them.
import { once } from 'node:events';
import { Agent, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Redis } from 'ioredis';
import { createCache, createRedis, rateLimit, redisSession } from '../../lib/index.js';
import { startEmbeddedRedis } from '../../support/embedded-redis.js';

const count = Number(process.argv[2] ?? 5000);
const quiet = { warn() {}, error() {} };
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

const server = await startEmbeddedRedis();
const redis = createRedis({ url: server.url, logger: quiet }) as Redis;
await redis.ping();

const app = express();
const cache = createCache({ redis, logger: quiet });
app.get('/rate', rateLimit({ redis, logger: quiet, key: (req) => String(req.query.c) }), (_req, res) => {
  res.send('ok');
});
app.get(
  '/session',
  redisSession({ redis, logger: quiet, secret: 'x'.repeat(32), onRedisError: 'continue' }),
  (req, res) => {
    res.send(typeof req.session.userId);
  },
);
app.get('/cache', cache.response({ ttl: '1m' }), (req, res) => {
  res.send(`page ${String(req.query.c)}`);
});
app.get('/get', async (req, res) => {
  res.send(String(await cache.get(String(req.query.c)).catch(() => 'failed')));
});
const listener: Server = app.listen(0, '127.0.0.1');
await once(listener, 'listening');
const { port } = listener.address() as AddressInfo;
const agent = new Agent({ keepAlive: true, maxSockets: 16 });
// A signed cookie for a session id that exists nowhere: each /session request loads it.
const cookie = (await fetch(`http://127.0.0.1:${port}/session`)).headers.get('set-cookie') ?? '';

function get(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ port, host: '127.0.0.1', path, agent, headers: { cookie } }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end();
  });
}

async function load(path: string, n: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) await get(`${path}?c=${next++}`);
  };
  await Promise.all(Array.from({ length: 16 }, worker));
}

const heap = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

process.kill(server.pid() as number, 'SIGKILL');
await once(redis, 'close');
const paths = ['/rate', '/session', '/cache', '/get'];
for (const path of paths) await load(path, 500); // warm up: JIT, the outage logged once
const before = heap();
for (const path of paths) await load(path, count);
const after = heap();
console.log(JSON.stringify({ count, before, after, retainedBytes: after - before, status: redis.status }));
agent.destroy();
listener.close();
redis.disconnect();
await server.stop();
process.exit(0);
