// Graceful shutdown: on SIGTERM stop accepting connections, let requests in flight finish (closing idle keep-alive
// connections at once, and the rest after a deadline), then close the shared Redis client with
// `closeDefaultRedis()`, so the process exits by itself with nothing left open. (A request still running after the
// deadline that uses Redis would open a new shared client: the deadline is there to be longer than any request.)
//   npx tsx examples/graceful-shutdown.ts   then   kill -TERM <pid>
import type { Server } from 'node:http';
import express from 'express';
import { closeDefaultRedis, rateLimit } from '../lib/index.js';
import { exampleRedisUrl, isMain } from './run.js';

/** An app on the shared default client (`createRedis()` from REDIS_URL), with a slow route. */
export function createApp(options: { prefix?: string } = {}) {
  const app = express();
  app.use(rateLimit({ prefix: options.prefix ?? 'rate' }));
  app.get('/slow', async (_req, res) => {
    await new Promise((resolve) => setTimeout(resolve, 300));
    res.json({ done: true });
  });
  return app;
}

/** Stops `server` gracefully, then the shared Redis client; resolves once both are closed. */
export async function shutdown(server: Server, deadlineMs = 10_000): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve())); // no new connections
  // A request that still arrives on a kept-alive connection is answered, and its connection closed after it.
  server.on('request', (_req, res) => res.setHeader('Connection', 'close'));
  // Keep-alive connections are closed as soon as they have no request in flight; the rest at the deadline.
  server.closeIdleConnections();
  const idle = setInterval(() => server.closeIdleConnections(), 100);
  const deadline = setTimeout(() => server.closeAllConnections(), deadlineMs);
  await closed;
  clearInterval(idle);
  clearTimeout(deadline);
  await closeDefaultRedis();
}

if (isMain(import.meta.url)) {
  const redisUrl = await exampleRedisUrl();
  process.env.REDIS_URL = redisUrl.url; // what the shared default client connects to
  const server = createApp().listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const { port } = server.address() as { port: number };
    console.log(`listening on http://127.0.0.1:${port}/ (pid ${process.pid})`);
  });
  const onSignal = (signal: string) => {
    console.log(`${signal}: draining`);
    shutdown(server)
      .then(() => redisUrl.stop())
      .then(
        () => console.log('closed'),
        (error) => console.error(error),
      );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}
