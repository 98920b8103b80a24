// Child (run with --expose-gc): POSTs to one URL behind cache.response() while Redis is down (killed). Prints heap
// retained, then restarts Redis and reports the health state once the held writes drained (no traffic).
import { once } from 'node:events';
import { Agent, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Redis } from 'ioredis';
import { createCache, createRedis, rateLimit } from '../../lib/index.js';
import { healthOf } from '../../lib/redis/health.js';
import { startEmbeddedRedis } from '../../support/embedded-redis.js';

const count = Number(process.argv[2] ?? 20000);
const quiet = { warn() {}, error() {} };
const gc = (globalThis as { gc?: () => void }).gc as () => void;
const server = await startEmbeddedRedis();
const redis = createRedis({ url: server.url, logger: quiet, retry: { baseDelay: 10, maxDelay: 50 } }) as Redis;
await redis.ping();
const cache = createCache({ redis, logger: quiet, timeout: '100ms' });
const app = express();
app.use(rateLimit({ redis, logger: quiet }));
app.use(cache.response({ ttl: '1m' }));
app.post('/cart', (_req, res) => {
  res.send('ok');
});
const listener = app.listen(0, '127.0.0.1');
await once(listener, 'listening');
const { port } = listener.address() as AddressInfo;
const agent = new Agent({ keepAlive: true, maxSockets: 16 });
const post = () =>
  new Promise<void>((resolve, reject) => {
    const req = httpRequest({ port, host: '127.0.0.1', path: '/cart', method: 'POST', agent }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end();
  });
async function load(n: number) {
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next++ < n) await post();
    }),
  );
}
const heap = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};
const closed = once(redis, 'close');
process.kill(server.pid() as number, 'SIGKILL');
await closed;
await server.stop(); // the helper forgets the killed process
await load(500);
const before = heap();
await load(count);
const after = heap();
await server.start();
const started = Date.now();
while ((healthOf(redis).held > 0 || healthOf(redis).down) && Date.now() - started < 3000) {
  await new Promise((r) => setTimeout(r, 20));
}
console.log(
  JSON.stringify({
    count,
    retainedBytes: after - before,
    held: healthOf(redis).held,
    down: healthOf(redis).down,
    status: redis.status,
    waitedMs: Date.now() - started,
  }),
);
agent.destroy();
listener.close();
redis.disconnect();
await server.stop();
process.exit(0);
