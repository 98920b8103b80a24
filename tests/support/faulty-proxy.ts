// A TCP proxy in front of a Redis server that can stall it for a while the moment a client sends a given command (from
// that chunk on, nothing moves either way on any connection until the stall is over, and then everything is passed on
// in order: to the clients it is Redis stalling, the command applied late and its reply too), or sever it (every
// connection closed, and new ones refused, for a while: Redis unreachable, keeping its data).
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { afterAll } from 'vitest';

const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

/** Listens on a free port and forwards each connection to `targetPort`; see the module's comment. */
export async function faultyProxy(targetPort: number) {
  const sockets = new Set<Socket>();
  let marker: string | undefined;
  let stallMs = 0;
  let stalledUntil = 0;
  let stalls = 0;
  let severedUntil = 0;
  const queued: { to: Socket; chunk: Buffer }[] = [];
  let flushTimer: NodeJS.Timeout | undefined;

  const flush = () => {
    flushTimer = undefined;
    for (const { to, chunk } of queued.splice(0)) if (!to.destroyed) to.write(chunk);
  };
  const pass = (to: Socket, chunk: Buffer) => {
    if (Date.now() < stalledUntil || queued.length > 0) {
      queued.push({ to, chunk });
      flushTimer ??= setTimeout(flush, Math.max(stalledUntil - Date.now(), 0));
      return;
    }
    to.write(chunk);
  };

  const server = createServer((client) => {
    if (Date.now() < severedUntil) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (chunk: Buffer) => {
      if (marker !== undefined && chunk.toString('latin1').includes(marker)) {
        marker = undefined;
        stalls++;
        stalledUntil = Date.now() + stallMs;
      }
      pass(upstream, chunk);
    });
    upstream.on('data', (chunk: Buffer) => pass(client, chunk));
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', close);
    client.on('error', close);
    upstream.on('close', close);
    upstream.on('error', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = () =>
    new Promise<void>((resolve) => {
      if (flushTimer) clearTimeout(flushTimer);
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  closers.push(close);
  return {
    port: (server.address() as AddressInfo).port,
    /** Stalls everything for `ms` from the next chunk a client sends that contains `command` (a script's SHA). */
    stallAt(command: string, ms: number) {
      marker = command;
      stallMs = ms;
    },
    /** Closes every connection, and refuses new ones, for `ms`. */
    sever(ms: number) {
      severedUntil = Date.now() + ms;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    /** How many stalls began. */
    get stalls() {
      return stalls;
    },
    /** When the last stall ends (ms since the epoch). */
    get stalledUntil() {
      return stalledUntil;
    },
  };
}
