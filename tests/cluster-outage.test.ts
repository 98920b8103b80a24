// Every middleware on a real Redis Cluster whose nodes stop answering (CLIENT PAUSE): bounded waits, then each
// middleware's Redis-error behaviour, and normal service once the nodes answer again.
import express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createCache,
  createRedis,
  type RateLimitOptions,
  type RedisClient,
  rateLimit,
  redisSession,
} from '../lib/index.js';
import { counterKey } from './rate-limit/support.js';
import { privateCluster } from './support/private-cluster.js';
import { silentLogger } from './support/redis.js';

let nodes: string[];
let client: RedisClient;

beforeAll(async () => {
  ({ nodes } = await privateCluster());
  client = createRedis({ cluster: { nodes }, logger: silentLogger });
  await new Promise((resolve) => client.once('ready', resolve));
}, 60_000);
afterAll(async () => {
  await client.quit().catch(() => client.disconnect());
});

/** Makes every node stop answering commands for `ms` (the connections stay open, as with a stalled server). */
async function pauseAllNodes(ms: number): Promise<void> {
  await Promise.all(
    nodes.map(async (url) => {
      const admin = new Redis(url);
      await admin.call('CLIENT', 'PAUSE', ms, 'ALL');
      admin.disconnect();
    }),
  );
}

/** Resolves once every node answers again. */
async function nodesAnswer(): Promise<void> {
  await Promise.all(
    nodes.map(async (url) => {
      const probe = new Redis(url);
      await probe.ping();
      probe.disconnect();
    }),
  );
}

describe('on Redis Cluster, when the nodes stop answering', () => {
  it('each middleware answers within its timeout as configured, and works again afterwards', async () => {
    const timeout = '150ms';
    const options = { redis: client, timeout, logger: silentLogger };
    const app = express();
    const allow = rateLimit({ ...options, limit: 2, key: () => 'cluster-outage-allow' });
    const deny = rateLimit({ ...options, limit: 2, key: () => 'cluster-outage-deny', onRedisError: 'deny' });
    const secret = 'a-test-secret-that-is-long-enough-0001';
    const session = redisSession({ ...options, secret, prefix: 'cluster-outage-session' });
    let entryStored!: () => void;
    const stored = new Promise<void>((resolve) => {
      entryStored = resolve;
    });
    const cache = createCache({
      ...options,
      prefix: 'cluster-outage-cache',
      onEvent: (event) => event.type === 'cache.stored' && entryStored(),
    });
    let handlerRuns = 0;
    app.get('/allow', allow, (_req, res) => void res.send('ok'));
    app.get('/deny', deny, (_req, res) => void res.send('ok'));
    app.get('/session', session, (req, res) => {
      (req.session as unknown as Record<string, unknown>).seen = true;
      res.send('ok');
    });
    app.get('/cached', cache.response({ ttl: '1m' }), (_req, res) => {
      handlerRuns++;
      res.send(`run ${handlerRuns}`);
    });

    // Warm up: the cache holds an entry, the session exists. The entry is stored after its response is sent, in
    // several steps on Cluster: one the pause caught would delete the entry again, as its tags cannot be checked.
    await request(app).get('/cached').expect(200, 'run 1');
    await stored;
    const login = await request(app).get('/session').expect(200);
    const cookie = (login.headers['set-cookie'] as unknown as string[])[0].split(';')[0];

    await pauseAllNodes(1_500);
    const started = Date.now();
    const [allowed, denied, sessionFailed, cached] = await Promise.all([
      request(app).get('/allow'),
      request(app).get('/deny'),
      request(app).get('/session').set('Cookie', cookie),
      request(app).get('/cached'),
    ]);
    const elapsed = Date.now() - started;
    expect(allowed.status).toBe(200);
    expect(denied.status).toBe(503);
    expect(sessionFailed.status).toBe(503);
    expect(cached.status).toBe(200);
    expect(cached.headers['x-cache']).toBe('BYPASS');
    // Each waited about its 150 ms timeout, far less than the 1.5 s the nodes were paused.
    expect(elapsed).toBeLessThan(1_200);

    await nodesAnswer();
    // The increment sent during the pause may still have run once the node woke up (it was never re-sent).
    expect((await allow.get('cluster-outage-allow'))?.used ?? 0).toBeLessThanOrEqual(1);
    await allow.reset('cluster-outage-allow');
    await request(app).get('/allow').expect(200);
    await request(app).get('/allow').expect(200);
    await request(app).get('/allow').expect(429);
    await request(app).get('/session').set('Cookie', cookie).expect(200);
    expect((await request(app).get('/cached')).headers['x-cache']).toBe('HIT');
  }, 20_000);

  it('with one node gone for good, every request still gets its answer within the timeout, as configured', async () => {
    const options = { redis: client, timeout: '150ms', logger: silentLogger, limit: 1_000_000, key: () => '' };
    const denyOptions = { ...options, onRedisError: 'deny' as const, prefix: 'deny' };
    // Node 0 serves slots 0–5460, node 2 slots 10923–16383: a client whose keys live on node 0, and one elsewhere.
    const probe = new Redis(nodes[1]);
    const slotOf = async (key: string) => Number(await probe.call('CLUSTER', 'KEYSLOT', key));
    /** A client whose key under `limiter` lives on a node `onNode` accepts the slot of. */
    async function clientWhoseKey(onNode: (slot: number) => boolean, limiter: RateLimitOptions) {
      for (let i = 0; ; i++) if (onNode(await slotOf(counterKey(limiter, `client-${i}`)))) return `client-${i}`;
    }
    const goneClient = await clientWhoseKey((slot) => slot <= 5460, options);
    const goneDenyClient = await clientWhoseKey((slot) => slot <= 5460, denyOptions);
    const elsewhereClient = await clientWhoseKey((slot) => slot >= 10923, options);
    probe.disconnect();
    const app = express();
    app.get('/gone', rateLimit({ ...options, key: () => goneClient }), (_req, res) => void res.send('ok'));
    const deny = rateLimit({ ...denyOptions, key: () => goneDenyClient });
    app.get('/gone-deny', deny, (_req, res) => void res.send('ok'));
    const elsewhere = rateLimit({ ...options, key: () => elsewhereClient });
    app.get('/elsewhere', elsewhere, (_req, res) => void res.send('ok'));
    await request(app).get('/elsewhere').expect(200);

    const admin = new Redis(nodes[0], { retryStrategy: () => null });
    admin.on('error', () => {});
    await admin.call('SHUTDOWN', 'NOSAVE').catch(() => {}); // the connection drops as the node exits
    admin.disconnect();

    // Past the cluster's node timeout (2 s) the other nodes refuse every key too (CLUSTERDOWN, full coverage
    // required): requests keep getting their configured answer throughout, none waits past its timeout.
    const until = Date.now() + 3_000;
    let rounds = 0;
    while (Date.now() < until) {
      const started = Date.now();
      const [gone, goneDeny, elsewhere] = await Promise.all([
        request(app).get('/gone'),
        request(app).get('/gone-deny'),
        request(app).get('/elsewhere'),
      ]);
      expect([gone.status, goneDeny.status, elsewhere.status]).toEqual([200, 503, 200]);
      expect(Date.now() - started).toBeLessThan(1_000);
      rounds++;
    }
    expect(rounds).toBeGreaterThan(3);
  }, 20_000);
});
