// On Redis Cluster a URL's entry and its tag set live on different nodes: a write's invalidation deletes the entry
// itself even when the tag set's node is down (read-your-write, on every instance), and the tag set's part is held
// until that node answers again.
import express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCache, createRedis, type RedisClient, type RediswareEvent } from '../../lib/index.js';
import { healthOf } from '../../lib/redis/health.js';
import { privateCluster } from '../support/private-cluster.js';
import { silentLogger, uniquePrefix } from '../support/redis.js';
import { until } from '../support/until.js';

let nodes: string[];
const clients: RedisClient[] = [];
beforeAll(async () => {
  ({ nodes } = await privateCluster());
}, 60_000);
afterAll(() => {
  for (const client of clients) client.disconnect();
});

async function clusterClient(): Promise<RedisClient> {
  const client = createRedis({ cluster: { nodes }, logger: silentLogger });
  clients.push(client);
  await new Promise((resolve) => client.once('ready', resolve));
  return client;
}

/** Two instances of one app on one Cluster (each with its client): `/p/:n` cached, a PUT on it. */
async function twoInstances() {
  const prefix = uniquePrefix('cluster-invalidation');
  let version = 1;
  const stored: RediswareEvent[] = [];
  const instance = async () => {
    const redis = await clusterClient();
    const cache = createCache({
      redis,
      prefix,
      timeout: '200ms',
      logger: silentLogger,
      onEvent: (event) => void (event.type === 'cache.stored' && stored.push(event)),
    });
    const app = express();
    app.get('/p/:n', cache.response({ ttl: '5m' }), (req, res) => void res.send(`${req.params.n} v${version}`));
    app.put('/p/:n', cache.response(), (_req, res) => {
      version++;
      res.send('saved');
    });
    return { redis, app };
  };
  return { prefix, a: await instance(), b: await instance(), stored };
}

/**
 * Stores `/p/0`, `/p/1`, … through `app` until one (`path`) has its entry and its URL's tag set on different nodes,
 * and another (`other`) its entry on a third node, neither that tag set's; returns them and the tag set's node.
 */
async function pathsAcrossNodes(
  app: express.Express,
  prefix: string,
  stored: RediswareEvent[],
): Promise<{ path: string; other: string; tagNode: number }> {
  const admins = nodes.map((url) => new Redis(url));
  const entryNodes: number[] = [];
  let found: { path: string; tagNode: number; entryNode: number } | undefined;
  try {
    for (let n = 0; n < 60; n++) {
      const path = `/p/${n}`;
      const count = stored.length;
      await request(app).get(path).expect(200);
      await until(() => stored.length > count); // stored after the response
      const held = await Promise.all(admins.map((admin) => admin.keys(`${prefix}:*`)));
      const nodeOf = (match: (key: string) => boolean) => held.findIndex((keys) => keys.some(match));
      const entryNode = nodeOf((key) => key.includes(':r:{') && key.includes(`${path}:`));
      const tagNode = nodeOf((key) => key.includes(':t:{url:') && key.endsWith(`${path}}`));
      expect(entryNode).toBeGreaterThanOrEqual(0);
      expect(tagNode).toBeGreaterThanOrEqual(0);
      entryNodes[n] = entryNode;
      if (!found && entryNode !== tagNode) found = { path, tagNode, entryNode };
      if (!found) continue;
      const third = entryNodes.findIndex((node) => node !== found?.tagNode && node !== found?.entryNode);
      if (third >= 0) return { path: found.path, other: `/p/${third}`, tagNode: found.tagNode };
    }
    throw new Error('no paths found whose entries and tag set are on three nodes');
  } finally {
    for (const admin of admins) admin.disconnect();
  }
}

describe("on Redis Cluster, with the node holding a URL's tag set down", () => {
  it('paused: a PUT answers 200, and the next GET on either instance is not the old entry; the tag set part is applied once the node answers', async () => {
    const { prefix, a, b, stored } = await twoInstances();
    const { path, tagNode } = await pathsAcrossNodes(a.app, prefix, stored);
    const old = await request(b.app).get(path);
    expect([old.headers['x-cache'], old.text]).toEqual(['HIT', `${path.slice(3)} v1`]);
    const admin = new Redis(nodes[tagNode]);
    await admin.call('CLIENT', 'PAUSE', '1500', 'ALL');
    admin.disconnect();
    await request(a.app).put(path).expect(200, 'saved');
    expect((await request(b.app).get(path)).text).toBe(`${path.slice(3)} v2`);
    expect((await request(a.app).get(path)).text).toBe(`${path.slice(3)} v2`);
    expect(healthOf(a.redis).held).toBe(1); // the URL's tag set, held until its node answers
    await until(() => healthOf(a.redis).held === 0);
    expect((await request(a.app).get(path)).text).toBe(`${path.slice(3)} v2`);
  }, 20_000);

  it('paused: while that part is held, a later write through the same instance still deletes its own entry', async () => {
    const { prefix, a, b, stored } = await twoInstances();
    const { path, other, tagNode } = await pathsAcrossNodes(a.app, prefix, stored);
    expect((await request(b.app).get(other)).headers['x-cache']).toBe('HIT');
    const admin = new Redis(nodes[tagNode]);
    await admin.call('CLIENT', 'PAUSE', '1500', 'ALL');
    admin.disconnect();
    await request(a.app).put(path).expect(200, 'saved');
    expect(healthOf(a.redis).held).toBeGreaterThan(0); // instance A reads nothing from Redis until it is applied
    await request(a.app).put(other).expect(200, 'saved');
    const after = await request(b.app).get(other);
    expect(after.text).toBe(`${other.slice(3)} v3`);
    await until(() => healthOf(a.redis).held === 0);
  }, 20_000);

  it('killed: a PUT answers 200, and the next GET on the other instance is not the old entry', async () => {
    const { prefix, a, b, stored } = await twoInstances();
    const { path, tagNode } = await pathsAcrossNodes(a.app, prefix, stored);
    expect((await request(b.app).get(path)).headers['x-cache']).toBe('HIT');
    const admin = new Redis(nodes[tagNode], { retryStrategy: () => null });
    admin.on('error', () => {});
    await admin.call('SHUTDOWN', 'NOSAVE').catch(() => {}); // the connection drops as the node exits
    admin.disconnect();
    // Within the cluster's node timeout (2 s), before the other nodes refuse every key (CLUSTERDOWN).
    await request(a.app).put(path).expect(200, 'saved');
    expect((await request(b.app).get(path)).text).toBe(`${path.slice(3)} v2`);
  }, 20_000);
});
