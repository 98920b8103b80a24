// Runs an example app on PORT (default 3000) of HOST (default 127.0.0.1): on REDIS_URL when set, else on an
// embedded redis-server (stopped on exit). Every example file, and the demo, calls this when it is run directly
// (`npx tsx examples/<file>.ts`).
import type { Server } from 'node:http';
import { isIP } from 'node:net';
import { pathToFileURL } from 'node:url';
import type { Express } from 'express';
import { createRedis, type RedisClient } from '../lib/index.js';
import { withoutCredentials } from '../lib/options.js';
import { startEmbeddedRedis } from '../support/embedded-redis.js';

/** Whether the module at `moduleUrl` is the file node was asked to run. */
export const isMain = (moduleUrl: string) =>
  process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === moduleUrl;

/** A Redis URL: REDIS_URL, or a private redis-server started now (and its stop function). */
export async function exampleRedisUrl(): Promise<{ url: string; stop(): Promise<void> }> {
  if (process.env.REDIS_URL) {
    console.log(`Using Redis at REDIS_URL (${withoutCredentials(process.env.REDIS_URL)})`);
    return { url: process.env.REDIS_URL, stop: async () => {} };
  }
  const embedded = await startEmbeddedRedis();
  console.log(`No REDIS_URL set: started an embedded redis-server at ${embedded.url} (stopped on exit)`);
  return { url: embedded.url, stop: () => embedded.stop() };
}

/**
 * Builds the app on a client of its own and serves it on PORT (default 3000) of HOST (default 127.0.0.1: this
 * machine only; HOST=0.0.0.0 serves every network it is on) until SIGINT/SIGTERM.
 */
export async function runExample(build: (redis: RedisClient) => Express): Promise<Server> {
  const host = process.env.HOST || '127.0.0.1';
  const port = Number(process.env.PORT ?? 3000);
  const redisUrl = await exampleRedisUrl();
  const redis = createRedis(redisUrl.url);
  const server = build(redis).listen(port, host, () => {
    const { address, port: listening } = server.address() as { address: string; port: number };
    const shown = isIP(address) === 6 ? `[${address}]` : address;
    console.log(`listening on http://${shown}:${listening}/ (Ctrl-C to stop)`);
    if (address !== '127.0.0.1' && address !== '::1') {
      console.log(`HOST=${host}: other machines can reach it`);
    } else {
      console.log('only this machine can reach it (set HOST, e.g. HOST=0.0.0.0, to serve other machines)');
    }
  });
  let stopping = false;
  const stop = async (code = 0) => {
    if (stopping) return;
    stopping = true;
    server.closeAllConnections();
    server.close();
    await redis.quit().catch(() => redis.disconnect());
    await redisUrl.stop();
    process.exit(code);
  };
  server.on('error', async (error) => {
    console.error(`cannot listen on ${host}:${port}: ${error.message}`);
    await stop(1);
  });
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  return server;
}
