// A three-node Redis Cluster owned by one test file, built from redis-server processes we start ourselves.
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll } from 'vitest';
import { type EmbeddedRedis, startEmbeddedRedis } from '../../support/embedded-redis.js';

/** What `privateCluster` started, stopped after the file's tests (registered on import: see private-redis.ts). */
const teardown: (() => Promise<void>)[] = [];
afterAll(async () => {
  await Promise.all(teardown.splice(0).map((step) => step()));
});

/**
 * `count` distinct ports the OS reports free now (all held open at once while they are picked). A node's cluster bus
 * defaults to its port + 10000, which can land on a port already in use (the ephemeral port of some client socket,
 * say); redis-server then exits at start.
 */
async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))));
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

/**
 * Starts `size` (default three) cluster-enabled redis-servers, spreads the 16384 slots over them, joins them, and
 * waits for `cluster_state:ok`. A one-node cluster holds every slot: addressed as a plain Redis, it answers each
 * single-slot command and refuses multi-slot ones with CROSSSLOT, exactly as a proxy in front of a Cluster does.
 */
export async function privateCluster(size = 3): Promise<{ nodes: string[] }> {
  const servers: EmbeddedRedis[] = [];
  const busPorts: number[] = [];
  const dirs: string[] = [];
  teardown.push(async () => {
    await Promise.all(servers.map((server) => server.stop()));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  for (let i = 0; i < size; i++) {
    // Each node keeps its cluster state file (nodes.conf) in a directory of its own.
    const dir = mkdtempSync(join(tmpdir(), 'redisware-cluster-'));
    dirs.push(dir);
    // The node's port and its bus port, picked together so they differ (and given to it, so that nothing else
    // picks one of them in between).
    const [port, busPort] = await freePorts(2);
    busPorts.push(busPort);
    servers.push(
      await startEmbeddedRedis({
        port,
        args: [
          '--cluster-enabled',
          'yes',
          '--cluster-port',
          String(busPort),
          '--cluster-node-timeout',
          '2000',
          '--dir',
          dir,
        ],
      }),
    );
  }
  const admins = servers.map((server) => new Redis(server.url));
  try {
    const ranges = servers.map((_, i) => [Math.floor((16384 * i) / size), Math.floor((16384 * (i + 1)) / size) - 1]);
    await Promise.all(admins.map((admin, i) => admin.call('CLUSTER', 'ADDSLOTSRANGE', ranges[i][0], ranges[i][1])));
    for (let i = 1; i < servers.length; i++) {
      await admins[0].call('CLUSTER', 'MEET', '127.0.0.1', servers[i].port, busPorts[i]);
    }
    for (;;) {
      const states = await Promise.all(admins.map((admin) => admin.call('CLUSTER', 'INFO') as Promise<string>));
      const known = await Promise.all(admins.map((admin) => admin.call('CLUSTER', 'NODES') as Promise<string>));
      if (
        states.every((s) => s.includes('cluster_state:ok')) &&
        known.every((n) => n.trim().split('\n').length === size)
      ) {
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    for (const admin of admins) admin.disconnect();
  }
  return { nodes: servers.map((server) => server.url) };
}
