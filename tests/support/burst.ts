// Many requests that reach the server in the same event-loop turn, as they do on a busy server.
import type { Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import type { Express } from 'express';

/** One request of a burst: a path and its headers. */
export interface BurstRequest {
  path: string;
  headers?: Record<string, string>;
}

/** A response as the client received it (header names in lower case). */
export interface BurstResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

function parse(raw: string): BurstResponse {
  const end = raw.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = raw.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: raw.slice(end + 4) };
}

/**
 * Opens one connection per request first, then writes every request in one synchronous loop, so the server reads
 * them all in the same poll phase (and a middleware batching per turn sees them together). Responses come back in
 * the order of `requests`.
 */
export async function burst(app: Express, requests: BurstRequest[]): Promise<BurstResponse[]> {
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  let accepted = 0;
  let allAccepted: () => void = () => {};
  const acceptedAll = new Promise<void>((resolve) => {
    allAccepted = resolve;
  });
  server.on('connection', () => {
    if (++accepted === requests.length) allAccepted();
  });
  try {
    const sockets = await Promise.all(
      requests.map(
        () =>
          new Promise<Socket>((resolve, reject) => {
            const socket = connect(port, '127.0.0.1', () => resolve(socket));
            socket.once('error', reject);
          }),
      ),
    );
    // The server must have accepted every connection first, or it reads some requests turns later than others.
    await acceptedAll;
    const responses = sockets.map(
      (socket) =>
        new Promise<BurstResponse>((resolve, reject) => {
          const chunks: Buffer[] = [];
          socket.on('data', (chunk: Buffer) => chunks.push(chunk));
          socket.once('error', reject);
          socket.once('close', () => resolve(parse(Buffer.concat(chunks).toString('latin1'))));
        }),
    );
    requests.forEach(({ path, headers = {} }, i) => {
      const lines = [`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'];
      for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
      sockets[i].write(`${lines.join('\r\n')}\r\n\r\n`);
    });
    return await Promise.all(responses);
  } finally {
    server.close();
  }
}
