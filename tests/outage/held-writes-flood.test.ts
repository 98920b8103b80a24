// Held writes are bounded per kind: an anonymous client filling the cache's share with invalidations (POSTs to
// distinct query strings, uncounted by rateLimit's default onRedisError 'allow') cannot crowd out a real user's
// logout, which is applied once Redis returns.
import express from 'express';
import { beforeAll, expect, it } from 'vitest';
import { createCache, rateLimit, redisSession } from '../../lib/index.js';
import { healthOf, maxDeferredWrites } from '../../lib/redis/health.js';
import { privateRedisWithAdmin } from '../support/private-redis.js';
import { silentLogger } from '../support/redis.js';
import { redisLink } from '../support/redis-link.js';
import { listen, pool, send, until } from './support.js';

let link: Awaited<ReturnType<typeof redisLink>>;
beforeAll(async () => {
  const { server } = await privateRedisWithAdmin();
  link = await redisLink(server.port);
});

it("a flood of unsafe requests to distinct URLs while Redis is down cannot crowd out a user's logout: it is held and applied when Redis returns", async () => {
  const redis = link.client();
  await redis.ping();
  const app = express();
  app.use(rateLimit({ redis, logger: silentLogger }));
  app.use(
    redisSession({ redis, secret: 'a-test-secret-that-is-long-enough-0001', logger: silentLogger, timeout: '150ms' }),
  );
  const cache = createCache({ redis, logger: silentLogger, timeout: '150ms' });
  app.use(cache.response({ ttl: '1m' }));
  app.get('/login/:user', async (req, res) => {
    await req.session.regenerate();
    (req.session as unknown as Record<string, unknown>).user = req.params.user;
    res.send('ok');
  });
  app.get('/me', (req, res) => {
    res.json({ user: (req.session as unknown as Record<string, unknown>).user ?? null });
  });
  app.post('/logout', async (req, res, next) => {
    try {
      await req.session.destroy();
      res.send('bye');
    } catch (error) {
      next(error);
    }
  });
  app.post('/comments', (_req, res) => {
    res.status(201).send('created'); // a public write endpoint (e.g. a contact form): any query string reaches it
  });
  const http = await listen(app);
  try {
    const login = await send(http.url, 'GET', '/login/victim');
    const cookie = String(login.headers['set-cookie']?.[0]).split(';')[0];
    expect((await send(http.url, 'GET', '/me', { cookie })).body).toBe('{"user":"victim"}');

    await link.down(redis);
    // the attacker: anonymous POSTs with distinct query strings
    await pool(maxDeferredWrites / 2, 32, (i) => send(http.url, 'POST', `/comments?n=${i}`));
    expect(healthOf(redis).held).toBeGreaterThanOrEqual(maxDeferredWrites);

    // the victim logs out (e.g. on a shared computer) while Redis is still down
    const logout = await send(http.url, 'POST', '/logout', { cookie });
    await link.up(redis);
    await until(() => !healthOf(redis).down, 10_000);

    // Expected: the logout is never lost. Observed: dropped (503), and the session is alive after recovery.
    const after = await send(http.url, 'GET', '/me', { cookie });
    expect({ logout: logout.status, after: after.body }).toEqual({ logout: 200, after: '{"user":null}' });
  } finally {
    await http.close();
    redis.disconnect();
  }
}, 60_000);
