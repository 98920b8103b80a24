// On a Redis Cluster a session and its user's index live on different nodes: with the index's node down or stalled,
// a login is reported failed without having landed, and destroyByUser still finds every session afterwards.
import { type ChildProcess, spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis, type RedisClient, redisSession } from '../../lib/index.js';
import { systemRedisServer } from '../../support/embedded-redis.js';
import { privateCluster } from '../support/private-cluster.js';
import { silentLogger } from '../support/redis.js';
import { cookiePair, secret, sessionApp } from './support.js';

let nodes: string[];
let client: RedisClient;
let probe: Redis;
const restarted: ChildProcess[] = [];

beforeAll(async () => {
  ({ nodes } = await privateCluster());
  client = createRedis({ cluster: { nodes }, logger: silentLogger });
  await new Promise((resolve) => client.once('ready', resolve));
  probe = new Redis(nodes[1]);
}, 60_000);
afterAll(async () => {
  probe.disconnect();
  await client.quit().catch(() => client.disconnect());
  for (const server of restarted) server.kill('SIGKILL');
});

/** Node 0 serves slots 0–5460 (see privateCluster). */
const onNode0 = (slot: number) => slot <= 5460;
const idOf = (pair: string) => decodeURIComponent(pair.split('=')[1]).split('.')[0];
const slotOf = async (key: string) => Number(await probe.call('CLUSTER', 'KEYSLOT', key));

/**
 * A session middleware whose user `user` has its index on node 0 and whose session ids (made by `genid`) live
 * elsewhere, so that node 0 going down fails the index and nothing else.
 */
async function splitApp(label: string) {
  const prefix = `cluster-index-${label}`;
  let user = '';
  for (let i = 0; !user; i++) if (onNode0(await slotOf(`${prefix}:user:u${i}`))) user = `u${i}`;
  const ids: string[] = [];
  for (let i = 0; ids.length < 20; i++) {
    const id = `${label}-session-${i}-padding`;
    if (!onNode0(await slotOf(`${prefix}:${id}`))) ids.push(id);
  }
  const given: string[] = [];
  const session = redisSession({
    secret,
    redis: client,
    prefix,
    timeout: '300ms',
    logger: silentLogger,
    genid: () => {
      const id = ids.shift() as string;
      given.push(id);
      return id;
    },
  });
  return { app: sessionApp(session), session, prefix, user, given };
}

/** Resolves once every node reports `cluster_state:ok` and `client` reaches node 0. */
async function clusterOk(key: string): Promise<void> {
  for (let waited = 0; waited < 15_000; waited += 50) {
    const states = await Promise.all(
      nodes.map(async (url) => {
        const node = new Redis(url, { retryStrategy: () => null, lazyConnect: true });
        node.on('error', () => {});
        try {
          await node.connect();
          return String(await node.call('CLUSTER', 'INFO'));
        } catch {
          return '';
        } finally {
          node.disconnect();
        }
      }),
    );
    if (states.every((state) => state.includes('cluster_state:ok'))) {
      const reached = await client.exists(key).then(
        () => true,
        () => false,
      );
      if (reached) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('the cluster did not recover');
}

describe("on Redis Cluster, with the node of a user's index down", () => {
  it('a login is reported failed and leaves no session; destroyByUser finds every session once the node returns', async () => {
    const { app, session, prefix, user, given } = await splitApp('down');
    const kept = idOf(cookiePair(await request(app).get(`/login/${user}`).expect(302))); // found by every later check
    const node0 = new Redis(nodes[0], { retryStrategy: () => null });
    node0.on('error', () => {});
    const [, dir] = (await node0.config('GET', 'dir')) as string[];
    const [, busPort] = (await node0.config('GET', 'cluster-port')) as string[];
    const port = Number(new URL(nodes[0]).port);
    await node0.call('SHUTDOWN', 'SAVE').catch(() => {}); // the node keeps its data (the index) for its return
    node0.disconnect();

    // Within the cluster's node timeout (2 s): the other nodes still serve their slots.
    const login = await request(app).get(`/login/${user}`);
    expect(login.status).toBe(503);
    const attempted = given.at(-1) as string;
    expect(await client.exists(`${prefix}:${attempted}`)).toBe(0);

    // Started by hand: redis-memory-server would not take a port it handed out a moment ago.
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-port', busPort];
    args.push('--cluster-node-timeout', '2000', '--dir', dir, '--appendonly', 'no', '--save', '');
    restarted.push(spawn(systemRedisServer() ?? 'redis-server', args, { stdio: 'ignore' }));
    await clusterOk(`${prefix}:user:${user}`);
    expect(await client.exists(`${prefix}:${attempted}`)).toBe(0);
    expect(await session.destroyByUser(user)).toBe(1);
    expect(await client.exists(`${prefix}:${kept}`)).toBe(0);
    // And logging in works again.
    await request(app).get(`/login/${user}`).expect(302);
    expect(await session.listByUser(user)).toHaveLength(1);
  }, 30_000);
});

describe("on Redis Cluster, with the node of a user's index stalled", () => {
  it('a login whose index write times out is reported failed and leaves no session', async () => {
    const { app, session, prefix, user, given } = await splitApp('stalled');
    const kept = idOf(cookiePair(await request(app).get(`/login/${user}`).expect(302))); // found by every later check
    const node0 = new Redis(nodes[0]);
    await node0.call('CLIENT', 'PAUSE', '800', 'ALL');
    node0.disconnect();
    const login = await request(app).get(`/login/${user}`);
    expect(login.status).toBe(503);
    const attempted = given.at(-1) as string;
    await clusterOk(`${prefix}:user:${user}`);
    // The index write landed late: an entry without its session, which listByUser passes over.
    expect(await client.exists(`${prefix}:${attempted}`)).toBe(0);
    expect((await session.listByUser(user)).map((s) => s.id)).toEqual([kept]);
    expect(await session.destroyByUser(user)).toBe(1);
  }, 30_000);
});
