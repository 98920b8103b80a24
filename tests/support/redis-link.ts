// A link to a private redis-server that can go down and come back with the server's data intact: a TCP proxy that
// drops every connection and refuses new ones while down (as a stopped server does), then listens again.
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import type { Redis } from 'ioredis';
import { afterAll } from 'vitest';
import { createRedis } from '../../lib/connection.js';
import { eventCount } from './private-redis.js';
import { silentLogger } from './redis.js';

const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

/** A proxy to `targetPort` on a port of its own; `down()` / `up()` cut and restore every client's link. */
export async function redisLink(targetPort: number) {
  const sockets = new Set<Socket>();
  const clients: Redis[] = [];
  const listen = (port: number) =>
    new Promise<Server>((resolve, reject) => {
      const server = createServer((client) => {
        const upstream = connect(targetPort, '127.0.0.1');
        sockets.add(client).add(upstream);
        client.pipe(upstream).pipe(client);
        const close = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        for (const socket of [client, upstream]) socket.on('close', close).on('error', close);
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve(server));
    });
  let server: Server | undefined = await listen(0);
  const port = (server.address() as AddressInfo).port;
  const stop = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      if (!server) return resolve();
      server.close(() => resolve());
      server = undefined;
    });
  closers.push(async () => {
    for (const client of clients) client.disconnect();
    await stop();
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    /** A client made by createRedis() through the link, reconnecting every 10–50 ms; closed after the file. */
    client(): Redis {
      const client = createRedis({
        url: `redis://127.0.0.1:${port}`,
        logger: silentLogger,
        retry: { baseDelay: 10, maxDelay: 50 },
      }) as Redis;
      clients.push(client);
      return client;
    },
    /** Drops every connection and refuses new ones; resolves once `client` saw its connection close. */
    async down(client: Redis): Promise<void> {
      const closed = client.status === 'ready' ? eventCount(client, 'close', 1) : Promise.resolve();
      await stop();
      await closed;
    },
    /** Accepts connections again, if it does not (after a test that failed while the link was down). */
    async restore(): Promise<void> {
      server ??= await listen(port);
    },
    /** Accepts connections again; resolves once `client` is ready. */
    async up(client: Redis): Promise<void> {
      const ready = eventCount(client, 'ready', 1);
      server = await listen(port);
      await ready;
    },
  };
}
