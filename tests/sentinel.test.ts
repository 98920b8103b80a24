// Every middleware on a Sentinel-managed master while it fails over: planned (SENTINEL FAILOVER) and by a crash.
import express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCache, createRedis, type RedisClient, rateLimit, redisSession } from '../lib/index.js';
import { counterKey } from './rate-limit/support.js';
import { cookiePair, secret, sessionApp } from './session/support.js';
import { delayingProxy, eventually, masterName, privateSentinel } from './support/private-sentinel.js';
import { silentLogger } from './support/redis.js';

type SentinelSetup = Awaited<ReturnType<typeof privateSentinel>>;

/** A fresh master, replica and three Sentinels for one describe block, a Sentinel client, and a subscriber. */
function sentinelFixture() {
  const fixture = {} as { setup: SentinelSetup; client: RedisClient; subscriber: Redis };
  beforeAll(async () => {
    fixture.setup = await privateSentinel();
    fixture.client = createRedis({
      sentinel: { sentinels: fixture.setup.sentinels, name: masterName },
      logger: silentLogger,
      retry: { baseDelay: 20, maxDelay: 200 },
    });
    await new Promise((resolve) => fixture.client.once('ready', resolve));
    // A Sentinel announces each switch of master on +switch-master: the test times the client against it.
    fixture.subscriber = new Redis(fixture.setup.sentinels[0]);
    await fixture.subscriber.subscribe('+switch-master');
  }, 60_000);
  afterAll(async () => {
    fixture.client?.disconnect();
    fixture.subscriber?.disconnect();
    await fixture.setup?.stop();
  });
  return fixture;
}

const timeout = 200;
/**
 * The three middlewares, each on its own app, sharing the Sentinel client; and the rate limiter's options, which
 * name its keys in Redis.
 */
function apps(client: RedisClient) {
  const common = () => ({ redis: client, timeout, logger: silentLogger });
  const limiterOptions = {
    ...common(),
    name: 'sentinel', // made once per describe block: the name keeps its keys where counterKey looks
    limit: 100_000,
    key: (req: express.Request) => String(req.query.k ?? 'load'),
  };
  const limited = express();
  limited.use(rateLimit(limiterOptions));
  limited.get('/', (_req, res) => void res.send('ok'));
  const sessions = sessionApp(redisSession({ ...common(), secret }));
  const cached = express();
  cached.get('/page', createCache(common()).response({ ttl: '1m' }), (_req, res) => void res.send('page'));
  return { limited, sessions, cached, limiterOptions };
}

interface Answer {
  sentAt: number;
  ms: number;
  statuses: number[];
}

/** Sends one request to each middleware every 25 ms until stopped; every answer is timed. */
function steadyLoad(app: ReturnType<typeof apps>, cookie: string) {
  const answers: Answer[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const sentAt = Date.now();
      const responses = await Promise.all([
        request(app.limited).get('/'),
        request(app.sessions).get('/peek').set('Cookie', cookie),
        request(app.cached).get('/page'),
      ]);
      answers.push({ sentAt, ms: Date.now() - sentAt, statuses: responses.map((r) => r.status) });
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  })();
  return {
    answers,
    async stop() {
      running = false;
      await loop;
    },
  };
}

/**
 * Counts probe keys `probe-<n>` through the rate limiter, one every 50 ms from `from` on, until `stop()`; each
 * probe's key exists on whichever server took the write.
 */
function probes(app: ReturnType<typeof apps>, from: number) {
  const sent: { n: number; at: number }[] = [];
  let running = true;
  const loop = (async () => {
    for (let n = from; running; n++) {
      sent.push({ n, at: Date.now() });
      await request(app.limited)
        .get('/')
        .query({ k: `probe-${n}` });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  return {
    sent,
    async stop() {
      running = false;
      await loop;
    },
  };
}

const nextSwitch = (subscriber: Redis) =>
  new Promise<number>((resolve) => subscriber.once('message', () => resolve(Date.now())));

describe('behind Sentinel, through a planned failover (SENTINEL FAILOVER)', () => {
  const fixture = sentinelFixture();

  it('keeps answering, reaches the new master within a second, and loses nothing written before', async () => {
    const { setup, client, subscriber } = fixture;
    const app = apps(client);
    for (let i = 0; i < 5; i++) await request(app.limited).get('/').query({ k: 'before' }).expect(200);
    const cookie = cookiePair(await request(app.sessions).get('/login/ada').expect(302));
    await request(app.cached).get('/page').expect(200);
    await setup.inSync();

    const load = steadyLoad(app, cookie);
    const probing = probes(app, 0);
    const switched = nextSwitch(subscriber);
    await setup.sentinelAdmin.call('SENTINEL', 'FAILOVER', masterName);
    const switchedAt = await switched;
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    await probing.stop();
    await load.stop();

    const master = setup.admin((await setup.currentMaster()).port);
    // Every probe sent a second or more after the switch was written to the new master.
    const late = probing.sent.filter((probe) => probe.at >= switchedAt + 1_000);
    expect(late.length).toBeGreaterThan(10);
    const landed = await Promise.all(
      late.map((probe) => master.exists(counterKey(app.limiterOptions, `probe-${probe.n}`))),
    );
    expect(landed).toEqual(late.map(() => 1));
    // Nobody waited much longer than the timeout, and nobody got an error the middleware does not give.
    expect(load.answers.length).toBeGreaterThan(20);
    for (const answer of load.answers) {
      expect(answer.ms).toBeLessThan(timeout * 3 + 200);
      expect([200]).toContain(answer.statuses[0]); // onRedisError: 'allow'
      expect([200, 503]).toContain(answer.statuses[1]);
      expect(answer.statuses[2]).toBe(200);
    }
    // What was written before the failover is on the new master.
    expect(await master.get(counterKey(app.limiterOptions, 'before'))).toBe('5');
    const read = await request(app.sessions).get('/peek').set('Cookie', cookie).expect(200);
    expect(read.body.data.userId).toBe('ada');
  });
});

describe('behind Sentinel, when the master crashes', () => {
  const fixture = sentinelFixture();

  it('keeps answering within the timeout while the master is down, and works on the promoted replica after', async () => {
    const { setup, client, subscriber } = fixture;
    const app = apps(client);
    const cookie = cookiePair(await request(app.sessions).get('/login/bo').expect(302));
    await setup.inSync();
    const load = steadyLoad(app, cookie);
    const switched = nextSwitch(subscriber);
    await setup.killMaster();
    await switched;
    const newMaster = setup.admin((await setup.currentMaster()).port);
    await eventually(
      'a write through the middleware to reach the promoted replica',
      async () => {
        const key = `after-crash-${Date.now()}`;
        await request(app.limited).get('/').query({ k: key });
        return (await newMaster.exists(counterKey(app.limiterOptions, key))) === 1;
      },
      15_000,
    );
    await load.stop();

    for (const answer of load.answers) expect(answer.ms).toBeLessThan(timeout * 3 + 200);
    const login = await request(app.sessions).get('/login/cy').expect(302);
    const read = await request(app.sessions).get('/peek').set('Cookie', cookiePair(login)).expect(200);
    expect(read.body.data.userId).toBe('cy');
  }, 40_000);
});

describe('behind slow Sentinels, when the master crashes', () => {
  const fixture = {} as { setup: SentinelSetup; proxies: Awaited<ReturnType<typeof delayingProxy>>[] };
  beforeAll(async () => {
    fixture.setup = await privateSentinel();
    fixture.proxies = await Promise.all(fixture.setup.sentinels.map((sentinel) => delayingProxy(sentinel, 150)));
  }, 60_000);
  afterAll(async () => {
    await Promise.all(fixture.proxies?.map((proxy) => proxy.close()) ?? []);
    await fixture.setup?.stop();
  });

  // The switch is announced while the client, reconnecting, waits for a Sentinel to name the master: ioredis'
  // failover detector then closes the connector under that attempt, which rejects it and ends the client for good.
  it('reconnects to the promoted replica even when the switch is announced while it is asking a Sentinel', async () => {
    const { setup, proxies } = fixture;
    const client = createRedis({
      sentinel: { sentinels: proxies.map((proxy) => proxy.address), name: masterName },
      logger: silentLogger,
      retry: { baseDelay: 10, maxDelay: 20 },
    });
    try {
      await new Promise((resolve) => client.once('ready', resolve));
      const statuses = new Set<string>();
      client.on('end', () => statuses.add('end'));
      await setup.killMaster();
      await eventually(
        'the client to write to the promoted replica',
        async () => {
          await client.set('after-crash', '1');
          const { port } = await setup.currentMaster();
          return (await setup.admin(port).exists('after-crash')) === 1;
        },
        20_000,
      );
      expect(statuses.has('end')).toBe(false);
    } finally {
      client.disconnect();
    }
  }, 40_000);

  it('watches the Sentinels on connections of its own, closed with the client', async () => {
    const { setup } = fixture;
    const subscribed = async () => {
      const list = (await setup.sentinelAdmin.call('CLIENT', 'LIST')) as string;
      return list.split('\n').filter((line) => / sub=1 /.test(line)).length;
    };
    const before = await subscribed();
    const client = createRedis({ sentinel: { sentinels: setup.sentinels, name: masterName }, logger: silentLogger });
    await new Promise((resolve) => client.once('ready', resolve));
    await eventually('the client to watch the first Sentinel', async () => (await subscribed()) === before + 1, 5_000);
    await client.quit();
    await eventually('its watch to end with it', async () => (await subscribed()) === before, 5_000);
  });
});
