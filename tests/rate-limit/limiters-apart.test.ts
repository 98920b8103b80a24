// Two limiters in one app never count into each other, as the README's own example reads: a strict login limiter
// beside a loose global one. Each runs in a real stack (helmet, cors, express.json in front) on a Redis of its own,
// with the defaults the README shows (prefix 'rate').
import cors from 'cors';
import express, { type Express } from 'express';
import helmet from 'helmet';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { type RateLimitOptions, type RediswareEvent, rateLimit } from '../../lib/index.js';
import { privateRedisWithAdmin } from '../support/private-redis.js';
import { recordingLogger, silentLogger } from '../support/redis.js';

let redis: Redis;
let admin: Redis;
beforeAll(async () => {
  const server = await privateRedisWithAdmin();
  redis = server.client();
  admin = server.admin;
}, 30_000);

/** The README's app: `app.use(rateLimit())` and a login route with `rateLimit({ limit: 5, window: '1m' })`. */
function readmeApp(global: RateLimitOptions = {}, events: RediswareEvent[] = []): Express {
  const onEvent = (event: RediswareEvent) => void events.push(event);
  const app = express();
  app.set('trust proxy', 1);
  app.use(helmet(), cors(), express.json());
  app.use(rateLimit({ redis, logger: silentLogger, onEvent, ...global }));
  app.post(
    '/login',
    rateLimit({ redis, limit: 5, window: '1m', onRedisError: 'deny', logger: silentLogger, onEvent }),
    (_req, res) => void res.send('welcome'),
  );
  app.get('/', (_req, res) => void res.send('page'));
  return app;
}

describe('the README’s login limiter beside a global one', () => {
  it('limits login to 5 a minute on its own: page views never count against it', async () => {
    await admin.flushdb();
    const app = readmeApp();
    const client = '198.51.100.7';
    for (let i = 0; i < 3; i++) await request(app).get('/').set('X-Forwarded-For', client).expect(200);
    for (let i = 0; i < 5; i++) await request(app).post('/login').set('X-Forwarded-For', client).expect(200);
    const refused = await request(app).post('/login').set('X-Forwarded-For', client).expect(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60);
    // The global limiter counted every request once: 3 pages and 6 logins, 91 of 100 left.
    const page = await request(app).get('/').set('X-Forwarded-For', client).expect(200);
    expect(page.headers.ratelimit).toMatch(/r=90\b/);
  });

  it('with a sliding-window global limiter, login is still limited (no key of another type, no error)', async () => {
    await admin.flushdb();
    const events: RediswareEvent[] = [];
    const app = readmeApp({ algorithm: 'sliding-window' }, events);
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) {
      statuses.push((await request(app).post('/login').set('X-Forwarded-For', '198.51.100.8')).status);
    }
    expect(statuses.filter((status) => status === 200)).toHaveLength(5);
    expect(statuses.filter((status) => status === 429)).toHaveLength(25);
    expect(events.filter((event) => event.type === 'redis.error')).toEqual([]);
  });

  it('a limiter keyed by user name never drains the budget of the IP that happens to share its text', async () => {
    await admin.flushdb();
    const app = express();
    app.set('trust proxy', 1);
    app.use(express.json());
    app.use(rateLimit({ redis, limit: 3, logger: silentLogger }));
    app.post(
      '/login',
      rateLimit({ redis, limit: 3, logger: silentLogger, key: (req) => String(req.body.user) }),
      (_req, res) => void res.send('ok'),
    );
    app.get('/', (_req, res) => void res.send('page'));
    for (let i = 0; i < 5; i++) {
      await request(app)
        .post('/login')
        .set('X-Forwarded-For', `203.0.113.${i + 1}`)
        .send({ user: '198.51.100.9' });
    }
    await request(app).get('/').set('X-Forwarded-For', '198.51.100.9').expect(200);
  });
});

describe('two limiters in one namespace', () => {
  it('limiters of the same rules under the default prefix count apart, each its own budget, without a warning', async () => {
    await admin.flushdb();
    const logger = recordingLogger();
    const app = express();
    app.use(rateLimit({ redis, limit: 10, logger }));
    app.use('/api', rateLimit({ redis, limit: 3, logger }));
    // Made by one helper of the app, one per route: still apart.
    const strict = () => rateLimit({ redis, limit: 2, window: '1m', logger });
    app.post('/login', strict(), (_req, res) => void res.send('in'));
    app.post('/forgot-password', strict(), (_req, res) => void res.send('sent'));
    // A cost of its own is a rule of its own: charged in full, never skipped.
    app.post('/export', rateLimit({ redis, limit: 10, cost: 5, logger }), (_req, res) => void res.send('csv'));
    app.get('/api/items', (_req, res) => void res.send('items'));
    expect(logger.warnings).toEqual([]);
    const first = await request(app).get('/api/items').expect(200);
    expect(first.headers.ratelimit).toMatch(/r=2\b/); // the inner limiter's headers, its own count
    await request(app).post('/login').expect(200);
    await request(app).post('/login').expect(200);
    await request(app).post('/login').expect(429);
    await request(app).post('/forgot-password').expect(200);
    await request(app).post('/export').expect(200);
    await request(app).post('/export').expect(200);
    await request(app).post('/export').expect(429);
    expect(await admin.keys('rate:fixed.2-1m*')).toHaveLength(2);
  });

  it('limiters given one prefix of the app’s own and the same rules share a count, a request both see counted once', async () => {
    await admin.flushdb();
    const logger = recordingLogger();
    const app = express();
    app.use(rateLimit({ redis, prefix: 'shop', limit: 10, logger }));
    app.use('/api', rateLimit({ redis, prefix: 'shop', limit: 10, logger }));
    app.get('/api/items', (_req, res) => void res.send('items'));
    expect(logger.warnings).toEqual([]);
    expect((await request(app).get('/api/items').expect(200)).headers.ratelimit).toMatch(/r=9\b/);
    expect((await request(app).get('/api/items').expect(200)).headers.ratelimit).toMatch(/r=8\b/);
  });

  it('warns when two limiters given one name count different rules', () => {
    const logger = recordingLogger();
    rateLimit({ redis, name: 'checkout', limit: 5, window: '1m', logger });
    rateLimit({ redis, name: 'checkout', limit: 50, window: '1h', logger });
    expect(logger.warnings).toHaveLength(1);
    expect(logger.warnings[0]).toMatch(
      /named 'checkout' count different rules.*name 'checkout', 5 per 1m.*name 'checkout', 50 per 1h/,
    );
  });

  it('shares counts, without a warning, between limiters the app gave one name and the same rules', async () => {
    await admin.flushdb();
    const logger = recordingLogger();
    const options = { redis, name: 'search', limit: 2, logger };
    const one = express().get('/', rateLimit(options), (_req, res) => void res.send('one'));
    const other = express().get('/', rateLimit(options), (_req, res) => void res.send('other'));
    expect(logger.warnings).toEqual([]);
    await request(one).get('/').expect(200);
    await request(other).get('/').expect(200);
    await request(one).get('/').expect(429);
  });
});

describe('an app built twice in one process (as its tests do)', () => {
  it('each build counts on its own, without a warning', async () => {
    await admin.flushdb();
    const logger = recordingLogger();
    const build = () =>
      express()
        .use(rateLimit({ redis, limit: 1, logger }))
        .get('/', (_req, res) => void res.send('ok'));
    const first = build();
    const second = build();
    expect(logger.warnings).toEqual([]);
    await request(first).get('/').expect(200);
    await request(second).get('/').expect(200);
    await request(first).get('/').expect(429);
  });
});

describe('client addresses', () => {
  it('an address with a port in X-Forwarded-For is the address: one budget, not one per connection', async () => {
    await admin.flushdb();
    const app = express();
    app.set('trust proxy', 1);
    app.use(rateLimit({ redis, limit: 3, logger: silentLogger }));
    app.get('/', (_req, res) => void res.send('ok'));
    for (const port of [50001, 50002, 50003]) {
      await request(app).get('/').set('X-Forwarded-For', `198.51.100.9:${port}`).expect(200);
    }
    await request(app).get('/').set('X-Forwarded-For', '198.51.100.9:50004').expect(429);
    await request(app).get('/').set('X-Forwarded-For', '198.51.100.9').expect(429);
    for (const address of ['[2001:db8::1]:443', '[2001:db8::2]:444', '2001:db8::3']) {
      await request(app).get('/').set('X-Forwarded-For', address).expect(200); // one /56 network
    }
    await request(app).get('/').set('X-Forwarded-For', '[2001:db8::1]').expect(429);
  });

  it('values that are no address share one budget, with one warning, never one budget each', async () => {
    await admin.flushdb();
    const logger = recordingLogger();
    const app = express();
    app.set('trust proxy', 1);
    app.use(rateLimit({ redis, limit: 2, logger }));
    app.get('/', (_req, res) => void res.send('ok'));
    await request(app).get('/').set('X-Forwarded-For', 'not-an-address').expect(200);
    await request(app).get('/').set('X-Forwarded-For', 'another-one').expect(200);
    await request(app)
      .get('/')
      .set('X-Forwarded-For', `junk-${'x'.repeat(500)}`)
      .expect(429);
    expect(logger.warnings.filter((line) => /no IP address/.test(line))).toHaveLength(1);
    expect(await admin.dbsize()).toBe(1);
  });
});

describe('long client keys', () => {
  it('a client whose key spells another client’s hashed key has a budget of its own', async () => {
    await admin.flushdb();
    let who = '';
    const app = express();
    app.use(rateLimit({ redis, limit: 1, logger: silentLogger, key: () => who }));
    app.get('/', (_req, res) => void res.send('ok'));
    who = 'L'.repeat(300);
    await request(app).get('/').expect(200);
    const [stored] = await admin.keys('rate:*');
    who = stored.slice(stored.lastIndexOf(':') + 1); // the literal form of the long client's key
    await request(app).get('/').expect(200);
    who = `sha256-${'0'.repeat(64)}`;
    await request(app).get('/').expect(200);
  });
});
