// A TCP proxy in front of a Redis server that can fail a client's connection at the worst moment: after a command
// reached Redis, before its reply reached the client (cut, or its replies withheld from then on).
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { afterAll } from 'vitest';

const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

/**
 * Listens on a free port and forwards each connection to `targetPort`. When a client's bytes contain `cutAfter`
 * (while armed), they are forwarded, and the client's connection is closed before Redis's reply comes back.
 */
export async function cuttingProxy(targetPort: number) {
  const sockets = new Set<Socket>();
  let cutAfter: string | undefined;
  let cuts = 0;
  let holdAfter: string | undefined;
  let holds = 0;
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    let cut = false;
    let held = false;
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk);
      if (cutAfter !== undefined && chunk.toString('latin1').includes(cutAfter)) {
        cutAfter = undefined;
        cut = true;
        cuts++;
        client.destroy();
      }
      if (holdAfter !== undefined && chunk.toString('latin1').includes(holdAfter)) {
        holdAfter = undefined;
        held = true;
        holds++;
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!cut && !held) client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', () => setTimeout(close, 50)); // let a cut command still reach Redis
    client.on('error', close);
    upstream.on('close', close);
    upstream.on('error', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  closers.push(close);
  return {
    port: (server.address() as AddressInfo).port,
    /** Cuts the next connection that sends `marker` (a RESP fragment such as `$4\r\neval\r\n`). */
    cutAfter(marker: string) {
      cutAfter = marker;
    },
    get cuts() {
      return cuts;
    },
    /** The next connection that sends `marker` gets no reply from then on (its connection stays open). */
    holdRepliesAfter(marker: string) {
      holdAfter = marker;
    },
    get holds() {
      return holds;
    },
  };
}
