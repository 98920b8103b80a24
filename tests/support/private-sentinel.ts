// A master, a replica and three Sentinels owned by one test file, from the redis-server binary on PATH.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { type EmbeddedRedis, startEmbeddedRedis, systemRedisServer } from '../../support/embedded-redis.js';

export const masterName = 'redisware';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` every 50 ms until it holds, or throws after `ms`. */
export async function eventually(what: string, check: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await pause(50);
  }
}

/** A connection that never retries for long and never throws `error` events at the test. */
function adminConnection(port: number): Redis {
  const connection = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  connection.on('error', () => {});
  return connection;
}

/**
 * Starts a master and a replica (through redis-memory-server, as every test server) and three Sentinels watching
 * them with quorum 2, detecting a down master after 1 s. Sentinels need a config file of their own as their first
 * argument, which redis-memory-server cannot give, so they are spawned directly (and stopped by PID).
 * Resolves once every Sentinel knows the replica and the other two Sentinels; `stop()` ends them all.
 */
export async function privateSentinel() {
  const dir = mkdtempSync(join(tmpdir(), 'redisware-sentinel-'));
  const servers: EmbeddedRedis[] = [];
  const sentinelProcesses: ChildProcess[] = [];
  const admins: Redis[] = [];
  /** Listeners holding the ports of killed servers (see `killMaster`). */
  const holders: Server[] = [];
  const running = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;
  // Should the test process end without the teardown (a crash, a timeout), the Sentinels must not outlive it.
  const killSentinels = () => {
    for (const child of sentinelProcesses) if (running(child)) child.kill('SIGKILL');
  };
  process.once('exit', killSentinels);
  async function stop() {
    for (const admin of admins) admin.disconnect();
    for (const holder of holders) holder.close();
    await Promise.all(
      sentinelProcesses.filter(running).map((child) => {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        return exited;
      }),
    );
    process.off('exit', killSentinels);
    await Promise.all(servers.map((server) => server.stop()));
    rmSync(dir, { recursive: true, force: true });
  }

  const master = await startEmbeddedRedis();
  servers.push(master);
  const replica = await startEmbeddedRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
  servers.push(replica);

  const binary = systemRedisServer() ?? 'redis-server';
  const sentinelPorts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    sentinelPorts.push(port);
    const config = join(dir, `sentinel-${i}.conf`);
    writeFileSync(
      config,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${masterName} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${masterName} 1000`,
        `sentinel failover-timeout ${masterName} 2000`,
        `sentinel parallel-syncs ${masterName} 1`,
        '',
      ].join('\n'),
    );
    sentinelProcesses.push(spawn(binary, [config, '--sentinel'], { stdio: 'ignore' }));
  }
  const sentinelAdmins = sentinelPorts.map(adminConnection);
  admins.push(...sentinelAdmins);
  await eventually('the Sentinels to know each other and the replica', async () => {
    for (const sentinel of sentinelAdmins) {
      const replicas = (await sentinel.call('SENTINEL', 'REPLICAS', masterName)) as unknown[];
      const others = (await sentinel.call('SENTINEL', 'SENTINELS', masterName)) as unknown[];
      if (replicas.length !== 1 || others.length !== 2) return false;
    }
    return true;
  });

  const byPort = new Map(servers.map((server) => [server.port, server]));
  /** The address the Sentinels give for the master now. */
  const currentMaster = async () => {
    const [host, port] = (await sentinelAdmins[0].call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName)) as string[];
    return { host, port: Number(port) };
  };
  /** Resolves once the replica has every write the master has. */
  const inSync = async () => {
    const { port } = await currentMaster();
    const admin = adminConnection(port);
    try {
      await eventually('the replica to catch up', async () => {
        const info = (await admin.info('replication')) as string;
        const offset = /master_repl_offset:(\d+)/.exec(info)?.[1];
        const replicaOffset = /slave0:.*offset=(\d+)/.exec(info)?.[1];
        return offset !== undefined && offset === replicaOffset;
      });
    } finally {
      admin.disconnect();
    }
  };
  return {
    stop,
    sentinels: sentinelPorts.map((port) => ({ host: '127.0.0.1', port })),
    sentinelAdmin: sentinelAdmins[0],
    currentMaster,
    inSync,
    /** An admin connection to `port` (closed after the file's tests). */
    admin(port: number) {
      const admin = adminConnection(port);
      admins.push(admin);
      return admin;
    },
    /** Kills the current master's process with SIGKILL, as a crash would. */
    async killMaster() {
      const { port } = await currentMaster();
      const pid = byPort.get(port)?.pid();
      if (pid === undefined) throw new Error(`no running server on port ${port}`);
      process.kill(pid, 'SIGKILL');
      // Its port stays taken, closing every connection at once, as a crashed host's would refuse them: a server
      // another test file starts meanwhile cannot get the port and be taken for the master by a reconnecting client.
      const holder = createServer((socket) => socket.destroy());
      holders.push(holder);
      await eventually(
        'the port of the killed master to be free',
        () =>
          new Promise<boolean>((resolve) => {
            holder.once('error', () => resolve(false));
            holder.listen(port, '127.0.0.1', () => resolve(true));
          }),
        5_000,
      );
    },
  };
}

/**
 * A TCP proxy to `target` that holds every chunk, each way, for `ms` before passing it on (in order): a Sentinel
 * behind it answers slowly, as one across a slow network does. `close()` ends it and its connections.
 */
export async function delayingProxy(target: { host: string; port: number }, ms: number) {
  const sockets = new Set<Socket>();
  const server = createServer((inbound) => {
    const outbound = connect(target.port, target.host);
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => {
        sockets.delete(socket);
        setTimeout(() => {
          inbound.destroy();
          outbound.destroy();
        }, ms);
      });
    }
    const relay = (from: Socket, to: Socket) =>
      from.on('data', (chunk) => setTimeout(() => to.destroyed || to.write(chunk), ms));
    relay(inbound, outbound);
    relay(outbound, inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    address: { host: '127.0.0.1', port },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
