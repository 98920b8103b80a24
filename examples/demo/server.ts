// `npm run demo`: the demo app on PORT (default 3000). Without REDIS_URL it starts an embedded redis-server.
import type { Server } from 'node:http';
import { createRedis } from '../../lib/index.js';
import { type EmbeddedRedis, startEmbeddedRedis } from '../../support/embedded-redis.js';
import { createDemoApp } from './app.js';

async function main(): Promise<void> {
  let embedded: EmbeddedRedis | undefined;
  let url = process.env.REDIS_URL;
  if (url) {
    console.log(`Using Redis at REDIS_URL (${url.replace(/\/\/[^@/]*@/, '//***@')})`);
  } else {
    embedded = await startEmbeddedRedis();
    url = embedded.url;
    console.log(`No REDIS_URL set: started an embedded redis-server at ${url} (stopped on exit)`);
  }

  const redis = createRedis(url);
  const app = createDemoApp(redis, { sessionSecret: process.env.SESSION_SECRET });
  const port = Number(process.env.PORT ?? 3000);
  const server: Server = app.listen(port, '127.0.0.1', () => {
    const address = server.address();
    const actualPort = typeof address === 'object' && address ? address.port : port;
    console.log(`redisware demo listening on http://127.0.0.1:${actualPort}/ (Ctrl-C to stop)`);
  });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: shutting down`);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await redis.quit().catch(() => redis.disconnect());
    await embedded?.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
