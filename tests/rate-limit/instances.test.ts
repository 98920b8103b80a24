// Rate limits as apps run them: several instances sharing Redis, function limits, refunds across windows.
import express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { rateLimit } from '../../lib/index.js';
import { privateRedisWithAdmin } from '../support/private-redis.js';
import { recordingLogger, redisUrl, silentLogger, subscribers, uniquePrefix, useTestRedis } from '../support/redis.js';
import { appWith, counterKey } from './support.js';

const redis = useTestRedis('rate-limit-instances');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `check` holds (for a pub/sub message to arrive), at most two seconds. */
async function eventually(check: () => Promise<boolean>): Promise<boolean> {
  for (let waited = 0; waited < 2_000; waited += 20) {
    if (await check()) return true;
    await sleep(20);
  }
  return false;
}

describe('rateLimit() across instances', () => {
  it('reset() on one instance unblocks the client on every instance', async () => {
    const prefix = uniquePrefix('rl-reset');
    const options = { prefix, limit: 1, window: '1m', key: () => 'c', logger: silentLogger };
    const first = rateLimit({ ...options, redis: redis.newClient() });
    const second = rateLimit({ ...options, redis: redis.newClient() });
    const [a, b] = [appWith(first), appWith(second)];
    await request(a).get('/').expect(200);
    await request(a).get('/').expect(429);
    await request(b).get('/').expect(429); // both instances now answer this client from memory
    await subscribers([redis.client()], `${prefix}:reset`, 2);
    await first.reset('c');
    await request(a).get('/').expect(200);
    // The other instance hears of the reset and asks Redis again: the client has one request left there.
    expect(await eventually(async () => (await request(b).get('/')).status === 429)).toBe(true);
    await first.reset('c');
    expect(await eventually(async () => (await request(b).get('/')).status === 200)).toBe(true);
  });

  it('reset() reaches every instance on clients with a keyPrefix too', async () => {
    const prefix = uniquePrefix('rl-reset-kp');
    const options = { prefix: 'rate-kp', limit: 1, window: '1m', key: () => 'c', logger: silentLogger };
    const prefixed = () => new Redis(redisUrl(), { keyPrefix: `${prefix}:` });
    const clients = [prefixed(), prefixed()];
    try {
      const [first, second] = clients.map((client) => rateLimit({ ...options, redis: client }));
      const b = appWith(second);
      await request(b).get('/').expect(200);
      await request(b).get('/').expect(429);
      await subscribers([redis.client()], 'rate-kp:reset', 1); // b's: it has counted a request
      await first.reset('c');
      expect(await eventually(async () => (await request(b).get('/')).status === 200)).toBe(true);
    } finally {
      for (const client of clients) client.disconnect();
    }
  });

  it('reset() still clears the count for a Redis user without channel rights, and says what it could not do', async () => {
    const { admin, server } = await privateRedisWithAdmin();
    await admin.call('ACL', 'SETUSER', 'app', 'on', '>app-password', '~*', '+@all', 'resetchannels');
    const client = new Redis(server.url, { username: 'app', password: 'app-password' });
    const logger = recordingLogger();
    try {
      const limiter = rateLimit({ redis: client, limit: 1, key: () => 'c', logger });
      const app = appWith(limiter);
      await request(app).get('/').expect(200);
      await request(app).get('/').expect(429);
      await limiter.reset('c');
      await request(app).get('/').expect(200);
      await limiter.reset('c');
      expect(logger.warnings.filter((warning) => /could not tell other instances/.test(warning))).toHaveLength(1);
    } finally {
      client.disconnect();
    }
  });

  it('never answers from a block remembered under another limit or a smaller cost', async () => {
    const prefix = uniquePrefix('rl-function');
    let limit = 1;
    let cost = 1;
    const app = appWith(
      rateLimit({
        redis: redis.client(),
        prefix,
        algorithm: 'sliding-window', // blocked requests are not counted
        window: '1h',
        limit: () => limit,
        cost: () => cost,
        key: () => 'c',
        logger: silentLogger,
      }),
    );
    await request(app).get('/').expect(200);
    await request(app).get('/').expect(429);
    limit = 5; // an upgraded plan: the remembered block no longer applies
    await request(app).get('/').expect(200);
    cost = 4;
    await request(app).get('/').expect(429); // 2 used of 5: no room for 4 more
    cost = 1;
    await request(app).get('/').expect(200);
  });

  it('get() returns numbers for a client counted elsewhere, with a function limit', async () => {
    const prefix = uniquePrefix('rl-get');
    const options = {
      prefix,
      limit: (req: express.Request) => (req.headers['x-plan'] === 'pro' ? 50 : 5),
      window: '1m',
      key: () => 'c',
      logger: silentLogger,
    };
    const counting = rateLimit({ ...options, redis: redis.client() });
    const asking = rateLimit({ ...options, redis: redis.client() });
    expect(await asking.get('c')).toBeNull();
    await request(appWith(counting)).get('/').set('X-Plan', 'pro').expect(200);
    const seen = await asking.get('c');
    expect(seen).toMatchObject({ used: 1, key: 'c' });
    for (const value of [seen?.limit, seen?.remaining, seen?.used]) expect(Number.isFinite(value)).toBe(true);
    // Given a request of that client, the limit is the function's.
    const pro = { headers: { 'x-plan': 'pro' } } as unknown as express.Request;
    expect(await asking.get('c', pro)).toMatchObject({ limit: 50, used: 1, remaining: 49 });
    expect(await counting.get('c')).toMatchObject({ limit: 50, used: 1, remaining: 49 });
  });

  it('a refund (skipFailedRequests) never reaches the next window', async () => {
    const options = {
      redis: redis.client(),
      prefix: uniquePrefix('rl-refund'),
      limit: 10,
      window: 150,
      key: () => 'c',
      skipFailedRequests: true,
      logger: silentLogger,
    };
    const app = express();
    app.use(rateLimit(options));
    app.get('/slow-failure', async (_req, res) => {
      await sleep(250); // ends after its window did
      res.status(500).send('failed');
    });
    app.get('/', (_req, res) => void res.send('ok'));
    const slow = request(app)
      .get('/slow-failure')
      .then((response) => response.status);
    await sleep(200); // the first window is over: this request starts the next one
    await request(app).get('/').expect(200);
    expect(await slow).toBe(500);
    await sleep(20);
    expect(await redis.client().get(counterKey(options, 'c'))).toBe('1');
  });
});
