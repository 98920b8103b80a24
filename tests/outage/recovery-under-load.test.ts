// Recovery under load: once Redis returns, a steady stream of anonymous unsafe requests (each one an invalidation)
// cannot keep the client's health down; sessions and rate limits answer from Redis again at once.
import express from 'express';
import { beforeAll, expect, it } from 'vitest';
import { createCache, rateLimit, redisSession } from '../../lib/index.js';
import { healthOf } from '../../lib/redis/health.js';
import { privateRedisWithAdmin } from '../support/private-redis.js';
import { silentLogger } from '../support/redis.js';
import { redisLink } from '../support/redis-link.js';
import { listen, send } from './support.js';

let link: Awaited<ReturnType<typeof redisLink>>;
beforeAll(async () => {
  const { server } = await privateRedisWithAdmin();
  link = await redisLink(server.port);
});

it('after Redis returns, a stream of anonymous POSTs to distinct URLs does not keep sessions or rate limits down', async () => {
  const redis = link.client();
  await redis.ping();
  const app = express();
  const denied: number[] = [];
  app.use(rateLimit({ redis, logger: silentLogger, limit: 1_000_000 }));
  app.use(
    redisSession({
      redis,
      secret: 'a-test-secret-that-is-long-enough-0001',
      logger: silentLogger,
      timeout: '150ms',
      onRedisError: 'fail',
    }),
  );
  const cache = createCache({ redis, logger: silentLogger, timeout: '150ms' });
  app.use(cache.response({ ttl: '1m' }));
  app.get('/login', (req, res) => {
    (req.session as unknown as Record<string, unknown>).userId = 'ada';
    res.send('ok');
  });
  app.get('/me', (req, res) => {
    res.json({ user: (req.session as unknown as Record<string, unknown>).userId ?? null });
  });
  app.post('/comments', (_req, res) => {
    res.status(201).send('created');
  });
  const http = await listen(app);
  let stop = false;
  try {
    const login = await send(http.url, 'GET', '/login');
    const cookie = String(login.headers['set-cookie']?.[0]).split(';')[0];
    await link.down(redis);
    await send(http.url, 'POST', '/comments?n=first');
    expect(healthOf(redis).held).toBeGreaterThan(0);

    // The attacker: 8 sequential loops of POSTs to distinct URLs (a few hundred a second on this machine).
    let n = 0;
    let posts = 0;
    const loops = Array.from({ length: 8 }, async () => {
      while (!stop) {
        await send(http.url, 'POST', `/comments?n=${n++}`);
        posts++;
      }
    });
    await link.up(redis);
    const upAt = Date.now();
    const postsAtUp = posts;
    // Issue 27: recovery within 1 s of Redis returning. Give it 3 s.
    let me = await send(http.url, 'GET', '/me', { cookie });
    while (me.status !== 200 && Date.now() - upAt < 3_000) {
      await new Promise((r) => setTimeout(r, 50));
      me = await send(http.url, 'GET', '/me', { cookie });
      denied.push(me.status);
    }
    const rate = Math.round(((posts - postsAtUp) * 1000) / (Date.now() - upAt));
    stop = true;
    await Promise.all(loops);
    expect({
      status: me.status,
      body: me.body,
      down: healthOf(redis).down,
      held: healthOf(redis).held,
      rateLimitFailsAtOnce: healthOf(redis).failsNow(undefined),
      postsPerSecond: rate,
    }).toEqual({
      status: 200,
      body: '{"user":"ada"}',
      down: false,
      held: 0,
      rateLimitFailsAtOnce: false,
      postsPerSecond: rate,
    });
  } finally {
    stop = true;
    await http.close();
    redis.disconnect();
  }
}, 60_000);
