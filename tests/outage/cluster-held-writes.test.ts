// Redis Cluster, one node stalled: an invalidation whose tag set lives on that node is held, and sessions, whose
// loads wait only for held logouts, go on being read from the nodes that answer (a partial failure stays partial).
import express from 'express';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createCache, createRedis, type RedisClient, redisSession } from '../../lib/index.js';
import { healthOf } from '../../lib/redis/health.js';
import { privateCluster } from '../support/private-cluster.js';
import { silentLogger } from '../support/redis.js';
import { listen, send } from './support.js';

let nodes: string[];
let client: RedisClient;
beforeAll(async () => {
  ({ nodes } = await privateCluster());
  client = createRedis({ cluster: { nodes }, logger: silentLogger });
  await new Promise((resolve) => client.once('ready', resolve));
}, 60_000);
afterAll(() => client.disconnect());

it('on Cluster, an invalidation held for one stalled node leaves sessions on the nodes that answer readable', async () => {
  const app = express();
  app.use(
    redisSession({
      redis: client,
      secret: 'a-test-secret-that-is-long-enough-0001',
      prefix: 'attk',
      timeout: '150ms',
      logger: silentLogger,
    }),
  );
  const cache = createCache({ redis: client, prefix: 'attkc', timeout: '150ms', logger: silentLogger });
  app.get('/login/:user', async (req, res) => {
    await req.session.regenerate();
    (req.session as unknown as Record<string, unknown>).user = req.params.user;
    res.send('ok');
  });
  app.get('/me', (req, res) => {
    res.json({ user: (req.session as unknown as Record<string, unknown>).user ?? null });
  });
  const http = await listen(app);
  const admins = nodes.map((url) => new Redis(url));
  try {
    const login = await send(http.url, 'GET', '/login/victim');
    expect(login.status).toBe(200);
    const cookie = String(login.headers['set-cookie']?.[0]).split(';')[0];
    // which node holds the session (and its user index)
    const holders = await Promise.all(admins.map(async (a) => (await a.keys('attk*')).length > 0));
    const stalled = admins[holders.indexOf(false)] as Redis; // a node holding none of the victim's keys
    expect(stalled).toBeDefined();
    await stalled.call('CLIENT', 'PAUSE', 3000, 'ALL');
    // an admin invalidates some tags (e.g. after a product update); some tag sets live on the stalled node
    await cache.invalidateTags(...Array.from({ length: 20 }, (_, i) => `product-${i}`));
    expect(healthOf(client).held).toBeGreaterThan(0);
    const me = await send(http.url, 'GET', '/me', { cookie });
    // Expected: the victim's session, on a node that answers, loads. Observed: 503 (SessionUnavailableError).
    expect({ status: me.status, body: me.body }).toEqual({ status: 200, body: '{"user":"victim"}' });
  } finally {
    await http.close();
    for (const a of admins) a.disconnect();
  }
}, 30_000);
