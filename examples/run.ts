// Runs an example app on PORT (default 3000): on REDIS_URL when set, else on an embedded redis-server (stopped on
// exit). Every example file calls this when it is run directly (`npx tsx examples/<file>.ts`).
import type { Server } from 'node:http';
import { pathToFileURL } from 'node:url';
import type { Express } from 'express';
import { createRedis, type RedisClient } from '../lib/index.js';
import { startEmbeddedRedis } from '../support/embedded-redis.js';

/** Whether the module at `moduleUrl` is the file node was asked to run. */
export const isMain = (moduleUrl: string) =>
  process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === moduleUrl;

/** A Redis URL: REDIS_URL, or a private redis-server started now (and its stop function). */
export async function exampleRedisUrl(): Promise<{ url: string; stop(): Promise<void> }> {
  if (process.env.REDIS_URL) {
    console.log(`Using Redis at REDIS_URL (${process.env.REDIS_URL.replace(/\/\/[^@/]*@/, '//***@')})`);
    return { url: process.env.REDIS_URL, stop: async () => {} };
  }
  const embedded = await startEmbeddedRedis();
  console.log(`No REDIS_URL set: started an embedded redis-server at ${embedded.url} (stopped on exit)`);
  return { url: embedded.url, stop: () => embedded.stop() };
}

/** Builds the app on a client of its own and serves it until SIGINT/SIGTERM. */
export async function runExample(build: (redis: RedisClient) => Express): Promise<Server> {
  const redisUrl = await exampleRedisUrl();
  const redis = createRedis(redisUrl.url);
  const port = Number(process.env.PORT ?? 3000);
  const server = build(redis).listen(port, '127.0.0.1', () => {
    const { port: listening } = server.address() as { port: number };
    console.log(`listening on http://127.0.0.1:${listening}/ (Ctrl-C to stop)`);
  });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    server.closeAllConnections();
    server.close();
    await redis.quit().catch(() => redis.disconnect());
    await redisUrl.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  return server;
}
