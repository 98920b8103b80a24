// The client an app already has, from its own copy of ioredis: 5 or 6, whichever major redisware itself resolved.

import express from 'express';
import { Redis as Redis5 } from 'ioredis5';
import { Redis as Redis6 } from 'ioredis6';
import { Redis as Redis53 } from 'ioredis53';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCache, rateLimit, redisSession, withLock } from '../../lib/index.js';
import { fixedWindowScript } from '../../lib/rate-limit/scripts.js';
import { appWith, counterKey } from '../rate-limit/support.js';
import { cookiePair, secret, sessionApp } from '../session/support.js';
import { eventCount, privateRedisWithAdmin } from '../support/private-redis.js';
import { redisUrl, scriptCaller, silentLogger, uniquePrefix, useTestRedis, watchCommands } from '../support/redis.js';
import { cuttingProxy } from '../support/tcp-proxy.js';

const redis = useTestRedis('user-client');

/** Typed as one of them: the tests use what every release has. */
type UserClient = InstanceType<typeof Redis5>;
/** The oldest release the peer dependency allows, and the latest of each major. */
const majors: [string, (url: string) => UserClient][] = [
  ['5.3', (url) => new Redis53(url, { retryStrategy: () => 20 }) as unknown as UserClient],
  ['5', (url) => new Redis5(url, { retryStrategy: () => 20 })],
  ['6', (url) => new Redis6(url, { retryStrategy: () => 20 }) as unknown as UserClient],
];

describe.each(majors)("a client from the app's own ioredis %s", (major, connect) => {
  let client: UserClient;
  const opened: UserClient[] = [];
  /** A client as an app makes it: its own package, its own options (no auto-pipelining), an error listener. */
  const userClient = (url = redisUrl()) => {
    const made = connect(url);
    made.on('error', () => {});
    opened.push(made);
    return made;
  };
  beforeAll(async () => {
    client = userClient();
    await client.ping();
  });
  afterAll(() => {
    for (const made of opened) made.disconnect();
  });

  it('batches the script calls of one turn into one EVALSHA and answers each, in order', async () => {
    const key = `${redis.prefix}:batched:${major}`;
    const call = scriptCaller(client as never);
    const hit = () => call.run(fixedWindowScript, [key], [1, 60_000, 100, 0]) as Promise<number[]>;
    await Promise.all([hit(), hit()]); // loads the batched script if needed
    const watch = await watchCommands(client as never);
    try {
      const replies = await Promise.all(Array.from({ length: 5 }, hit));
      await watch.settle();
      expect(watch.sent.map((args) => args[0].toLowerCase())).toEqual(['evalsha']);
      expect(replies.map((reply) => reply[1])).toEqual([3, 4, 5, 6, 7]);
    } finally {
      watch.stop();
    }
  });

  it('rateLimit lets exactly `limit` of many concurrent requests through, before and after SCRIPT FLUSH', async () => {
    // A server of its own: SCRIPT FLUSH on the shared one would change what other files' tests see.
    const { admin, server } = await privateRedisWithAdmin();
    const own = userClient(server.url);
    const options = { redis: own, name: 'flush', limit: 10, key: () => 'c', logger: silentLogger };
    const limiter = rateLimit(options);
    const app = appWith(limiter);
    const statuses = async () =>
      Promise.all(
        Array.from({ length: 40 }, () =>
          request(app)
            .get('/')
            .then((r) => r.status),
        ),
      );
    let seen = await statuses();
    expect(seen.filter((status) => status === 200)).toHaveLength(10);
    expect(seen.filter((status) => status === 429)).toHaveLength(30);
    expect(await admin.pttl(counterKey(options, 'c'))).toBeGreaterThan(0);

    await limiter.reset('c');
    await admin.script('FLUSH');
    seen = await statuses();
    expect(seen.filter((status) => status === 200)).toHaveLength(10);
    expect(await admin.get(counterKey(options, 'c'))).toBe('40');
  });

  it('redisSession logs in, keeps concurrent changes to different fields, and reads them back', async () => {
    const session = redisSession({ secret, redis: client, prefix: uniquePrefix('user-session') });
    const app = sessionApp(session);
    const login = await request(app).get('/login/ada').expect(302);
    const cookie = cookiePair(login);
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => request(app).get(`/set?field${i}=${i}`).set('Cookie', cookie).expect(200)),
    );
    const read = await request(app).get('/peek').set('Cookie', cookie).expect(200);
    expect(read.body.data.userId).toBe('ada');
    for (let i = 0; i < 10; i++) expect(read.body.data[`field${i}`]).toBe(String(i));
    expect(await session.listByUser('ada')).toHaveLength(1);
    // A cookie for a session Redis no longer has gets a fresh, saved session.
    expect(await session.destroyByUser('ada')).toBe(1);
    const fresh = await request(app).get('/set?after=yes').set('Cookie', cookie).expect(200);
    expect(cookiePair(fresh)).not.toBe(cookie);
    const again = await request(app).get('/peek').set('Cookie', cookiePair(fresh)).expect(200);
    expect(again.body.data).toEqual({ after: 'yes' });
  });

  it('the response cache serves a HIT, runs the handler once for concurrent misses, and invalidates by tag', async () => {
    const cache = createCache({ redis: client, prefix: uniquePrefix('user-cache'), logger: silentLogger });
    let runs = 0;
    const app = express();
    app.get('/slow', cache.response({ tags: ['slow'] }), async (_req, res) => {
      runs++;
      await new Promise((resolve) => setTimeout(resolve, 100));
      res.json({ runs });
    });
    const first = await Promise.all(Array.from({ length: 5 }, () => request(app).get('/slow').expect(200)));
    expect(runs).toBe(1);
    expect(first.map((r) => r.body)).toEqual(Array(5).fill({ runs: 1 }));
    const hit = await request(app).get('/slow').expect(200);
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(await cache.invalidateTags('slow')).toBe(1);
    expect((await request(app).get('/slow').expect(200)).headers['x-cache']).toBe('MISS');
    expect(await cache.wrap('value', () => ({ loaded: true }))).toEqual({ loaded: true });
  });

  it('withLock runs the function under the lock and releases it', async () => {
    const resource = uniquePrefix('user-lock');
    expect(await withLock(resource, () => 'ran', { redis: client })).toBe('ran');
    expect(await redis.client().exists(`lock:${resource}`)).toBe(0);
  });

  describe('when Redis stalls or goes away', () => {
    let setup: Awaited<ReturnType<typeof privateRedisWithAdmin>>;
    beforeAll(async () => {
      setup = await privateRedisWithAdmin();
    });

    it('never re-sends an increment that timed out on a connection that then dropped', async () => {
      // The app's client keeps ioredis' default of re-sending what a dropped connection left unanswered.
      const own = userClient(setup.server.url);
      await own.ping();
      const id = await own.client('ID');
      const options = { redis: own, prefix: 'replay', timeout: '100ms', key: () => 'c', logger: silentLogger };
      const app = appWith(rateLimit(options));
      await setup.admin.call('CLIENT', 'PAUSE', '5000', 'WRITE');
      try {
        await request(app).get('/').expect(200); // held by the pause, times out, fails open
        const ready = eventCount(own, 'ready', 1);
        await setup.admin.client('KILL', 'ID', String(id));
        await ready;
      } finally {
        await setup.admin.call('CLIENT', 'UNPAUSE');
      }
      expect(await own.ping()).toBe('PONG'); // the app's own commands still work
      expect(await setup.admin.exists(counterKey(options, 'c'))).toBe(0);
      expect((await request(app).get('/').expect(200)).headers.ratelimit).toMatch(/r=99;/);
    });

    it('never re-sends the EVAL that follows a NOSCRIPT when the connection drops before its reply', async () => {
      const proxy = await cuttingProxy(setup.server.port);
      const own = userClient(`redis://127.0.0.1:${proxy.port}`);
      await own.ping();
      const options = { redis: own, prefix: 'eval-replay', timeout: '300ms', key: () => 'c', logger: silentLogger };
      const app = appWith(rateLimit(options));
      await setup.admin.script('FLUSH');
      proxy.cutAfter('$4\r\neval\r\n');
      await request(app).get('/').expect(200); // fails open: the reply never came
      expect(proxy.cuts).toBe(1);
      // Reconnected (through the proxy): whatever the client would re-send has been sent by the time a PING answers.
      for (let waited = 0; own.status !== 'ready' && waited < 2_000; waited += 10) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await own.ping();
      expect(await setup.admin.get(counterKey(options, 'c'))).toBe('1'); // counted once, by the EVAL that reached Redis
    });

    it('every middleware answers within its timeout, as configured, and works again afterwards', async () => {
      const own = userClient(setup.server.url);
      await own.ping();
      const common = { redis: own, timeout: '100ms', logger: silentLogger };
      const limited = appWith(rateLimit({ ...common, prefix: 'rl', limit: 5, onRedisError: 'deny' }));
      const sessions = sessionApp(redisSession({ ...common, secret }));
      const cache = createCache({ ...common, prefix: 'cache' });
      const cached = express();
      cached.get('/', cache.response(), (_req, res) => void res.send('fresh'));
      const login = await request(sessions).get('/login/bo').expect(302);
      const cookie = cookiePair(login);

      const answers = async () => {
        const started = Date.now();
        const [rl, session, page] = await Promise.all([
          request(limited).get('/'),
          request(sessions).get('/peek').set('Cookie', cookie),
          request(cached).get('/'),
        ]);
        return { rl: rl.status, session: session.status, page: page.headers['x-cache'], ms: Date.now() - started };
      };

      await setup.admin.call('CLIENT', 'PAUSE', '1000', 'WRITE');
      const paused = await answers();
      await setup.admin.call('CLIENT', 'UNPAUSE');
      expect(paused).toMatchObject({ rl: 503, session: 503, page: 'BYPASS' });
      expect(paused.ms).toBeLessThan(600);

      await setup.server.stop();
      const down = await answers();
      expect(down).toMatchObject({ rl: 503, session: 503, page: 'BYPASS' });
      expect(down.ms).toBeLessThan(600);

      await setup.server.restart();
      for (let attempt = 0; own.status !== 'ready' && attempt < 100; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const back = await answers();
      expect(back).toMatchObject({ rl: 200, session: 200 });
    });
  });
});
