// Starts a private redis-server for the demo, the tests and the benchmarks (development only, not shipped).
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { RedisMemoryServer } from 'redis-memory-server';

/** A redis-server we started and own. */
export interface EmbeddedRedis {
  host: string;
  port: number;
  url: string;
  /** Stops the server (idempotent). */
  stop(): Promise<void>;
  /** Starts a stopped server again on the same port (for outage tests). */
  start(): Promise<void>;
}

/** The `redis-server` on PATH, if any; redis-memory-server would otherwise download and build one. */
export function systemRedisServer(): string | undefined {
  if (process.env.REDISMS_SYSTEM_BINARY) return process.env.REDISMS_SYSTEM_BINARY;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'redis-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  return undefined;
}

/** Starts redis-server (on any free port) and resolves once it accepts connections. */
export async function startEmbeddedRedis(options: { args?: string[] } = {}): Promise<EmbeddedRedis> {
  const systemBinary = systemRedisServer();
  const server = await RedisMemoryServer.create({
    instance: { ip: '127.0.0.1', args: ['--appendonly', 'no', ...(options.args ?? [])] },
    binary: systemBinary ? { systemBinary } : {},
  });
  const host = await server.getHost();
  const port = await server.getPort();
  let running = true;
  return {
    host,
    port,
    url: `redis://${host}:${port}`,
    async stop() {
      if (!running) return;
      running = false;
      await server.stop();
    },
    async start() {
      if (running) return;
      // redis-memory-server reuses the port of the previous run of the same instance.
      await server.start();
      running = true;
    },
  };
}
