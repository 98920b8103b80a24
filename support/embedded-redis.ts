// Starts a private redis-server for the demo, the tests and the benchmarks (development only, not shipped).
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { RedisMemoryServer } from 'redis-memory-server';

/** A redis-server we started and own. */
export interface EmbeddedRedis {
  host: string;
  port: number;
  url: string;
  /** The redis-server process, while it runs (for a test that kills it the hard way). */
  pid(): number | undefined;
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
export async function startEmbeddedRedis(options: { args?: string[]; port?: number } = {}): Promise<EmbeddedRedis> {
  const systemBinary = systemRedisServer();
  const args = options.args ?? [];
  // A directory of its own: a replica writes the RDB it receives there, and every server started in the same
  // directory would load it at start.
  const dir = args.includes('--dir') ? undefined : mkdtempSync(join(tmpdir(), 'redisware-redis-'));
  const server = await RedisMemoryServer.create({
    instance: {
      ip: '127.0.0.1',
      port: options.port,
      args: ['--appendonly', 'no', ...(dir ? ['--dir', dir] : []), ...args],
    },
    binary: systemBinary ? { systemBinary } : {},
  });
  const host = await server.getHost();
  const port = await server.getPort();
  let running = true;
  return {
    host,
    port,
    url: `redis://${host}:${port}`,
    pid() {
      const info = server.getInstanceInfo();
      return running && info ? info.instance.getPid() : undefined;
    },
    async stop() {
      if (!running) return;
      running = false;
      await server.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
    async start() {
      if (running) return;
      // redis-memory-server reuses the port of the previous run of the same instance.
      if (dir) mkdirSync(dir, { recursive: true });
      await server.start();
      running = true;
    },
  };
}
