// Pub/sub between two processes. Publishing is a command like any other, on the app's client; a subscriber gets a
// connection of its own (`redis.duplicate()`), since a subscribed connection can run nothing else. ioredis
// reconnects it, and subscribes it again, by itself when Redis restarts. Pub/sub delivers to whoever listens at that
// moment: what is published while a subscriber is disconnected is not kept for it (use a Redis stream for that).
//   npx tsx examples/pubsub.ts             (starts a subscriber process, then publishes to it)
//   REDIS_URL=redis://… npx tsx examples/pubsub.ts subscriber   (a subscriber on its own)
import { fork } from 'node:child_process';
import { createRedis, type RedisClient } from '../lib/index.js';
import { exampleRedisUrl, isMain } from './run.js';

export const channel = 'events:orders';

/** Subscribes `onMessage` to `channel` on a dedicated connection; resolves once subscribed. */
export async function subscribe(redis: RedisClient, onMessage: (message: string) => void) {
  const subscriber = redis.duplicate();
  subscriber.on('error', (error: Error) => console.warn(`subscriber: ${error.message}`)); // reconnecting, never fatal
  subscriber.on('message', (from: string, message: string) => {
    if (from === channel) onMessage(message);
  });
  await subscriber.subscribe(channel);
  return { close: () => subscriber.quit().then(() => undefined) };
}

/** Publishes `message`; resolves to how many subscribers received it. */
export function publish(redis: RedisClient, message: string): Promise<number> {
  return redis.publish(channel, message);
}

async function main() {
  if (process.argv[2] === 'subscriber') {
    const redis = createRedis(process.env.REDIS_URL);
    await subscribe(redis, (message) => console.log(`received: ${message}`));
    console.log('subscribed');
    return;
  }
  const { url, stop } = await exampleRedisUrl();
  const child = fork(process.argv[1], ['subscriber'], { env: { ...process.env, REDIS_URL: url }, stdio: 'inherit' });
  const redis = createRedis(url);
  for (let i = 1; i <= 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    console.log(`published order ${i} to ${await publish(redis, JSON.stringify({ order: i }))} subscriber(s)`);
  }
  child.kill();
  await redis.quit();
  await stop();
}

if (isMain(import.meta.url)) await main();
