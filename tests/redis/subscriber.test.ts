// The dedicated pub/sub connection redisware opens beside an app's client (rateLimit's reset(), the cache's
// coalescing): it follows its client through reconnections and closing, and never fails the process.

import { Redis as Redis5 } from 'ioredis5';
import { Redis as Redis6 } from 'ioredis6';
import { Redis as Redis53 } from 'ioredis53';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RedisClient } from '../../lib/redis/client.js';
import { subscribe } from '../../lib/redis/subscriber.js';
import { privateRedisWithAdmin } from '../support/private-redis.js';
import { cuttingProxy } from '../support/tcp-proxy.js';

type UserClient = InstanceType<typeof Redis5>;
const majors: [string, (url: string) => UserClient][] = [
  ['5.3', (url) => new Redis53(url, { retryStrategy: () => 20 }) as unknown as UserClient],
  ['5', (url) => new Redis5(url, { retryStrategy: () => 20 })],
  ['6', (url) => new Redis6(url, { retryStrategy: () => 20 }) as unknown as UserClient],
];

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let waited = 0; waited < 5_000; waited += 10) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Unhandled rejections seen while a test runs (vitest reports them too, but after the file, not per test). */
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
process.on('unhandledRejection', onUnhandled);
afterEach(() => {
  unhandled.length = 0;
});

describe.each(majors)('the subscriber connection beside a client from ioredis %s', (_major, connect) => {
  let setup: Awaited<ReturnType<typeof privateRedisWithAdmin>>;
  beforeAll(async () => {
    setup = await privateRedisWithAdmin();
  });

  async function subscribed(client: UserClient, channel: string) {
    const received: string[] = [];
    subscribe(client as unknown as RedisClient, channel, (message) => received.push(message));
    const listening = async () => ((await setup.admin.pubsub('NUMSUB', channel)) as [string, number])[1] === 1;
    await until(listening, 'the subscription');
    return { received, listening };
  }

  it('hears messages again after its connection dropped', async () => {
    const client = connect(setup.server.url);
    client.on('error', () => {});
    const { received, listening } = await subscribed(client, 'dropped');
    await setup.admin.client('KILL', 'TYPE', 'pubsub');
    await until(async () => !(await listening()), 'the subscription to drop');
    await until(listening, 'the subscription to come back');
    await setup.admin.publish('dropped', 'after');
    await until(() => received.includes('after'), 'the message');
    client.disconnect();
  });

  it('leaves no unhandled rejection when its client closes while it resubscribes', async () => {
    const proxy = await cuttingProxy(setup.server.port);
    const client = connect(`redis://127.0.0.1:${proxy.port}`);
    client.on('error', () => {});
    await subscribed(client, 'closing');
    // It reconnects and resubscribes; the SUBSCRIBE reaches Redis, its reply never comes back. Then the app closes
    // its client, which closes the subscriber connection with that SUBSCRIBE unanswered.
    proxy.holdRepliesAfter('$9\r\nsubscribe\r\n');
    await setup.admin.client('KILL', 'TYPE', 'pubsub');
    await until(() => proxy.holds === 1, 'the SUBSCRIBE after reconnecting');
    client.disconnect();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(unhandled).toEqual([]);
  });

  it('connects beside a lazyConnect client', async () => {
    const client = connect(`${setup.server.url}?lazyConnect=true`);
    client.on('error', () => {});
    const { received } = await subscribed(client, 'lazy');
    await setup.admin.publish('lazy', 'heard');
    await until(() => received.includes('heard'), 'the message');
    client.disconnect();
  });

  it('comes back with its client when the app connects it again after quit()', async () => {
    const client = connect(setup.server.url);
    client.on('error', () => {});
    const { received, listening } = await subscribed(client, 'again');
    await client.quit();
    await until(async () => !(await listening()), 'the subscriber connection to close');
    await client.connect();
    await until(listening, 'the subscription to come back');
    await setup.admin.publish('again', 'heard');
    await until(() => received.includes('heard'), 'the message');
    client.disconnect();
  });

  it('closes with its client, and opens nothing for a client that has ended', async () => {
    const client = connect(setup.server.url);
    client.on('error', () => {});
    await subscribed(client, 'ended');
    await client.quit();
    await until(async () => ((await setup.admin.pubsub('NUMSUB', 'ended')) as [string, number])[1] === 0, 'close');
    subscribe(client as unknown as RedisClient, 'after-end', () => {});
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(((await setup.admin.pubsub('NUMSUB', 'after-end')) as [string, number])[1]).toBe(0);
  });
});
