// The `onEvent` hook of every factory, seen the way an app sees it: through a real middleware stack (compression,
// cors, helmet, a request id, body parsers), with events for each outcome, a hook that throws, and Redis down.
import compression from 'compression';
import cors from 'cors';
import express, { type Express, type RequestHandler } from 'express';
import requestId from 'express-request-id';
import helmet from 'helmet';
import { type Redis, ReplyError } from 'ioredis';
import request from 'supertest';
import { afterAll, describe, expect, it } from 'vitest';
import {
  combineEventHooks,
  createCache,
  createRedis,
  LockTimeoutError,
  type RediswareEvent,
  rateLimit,
  redisSession,
  withLock,
} from '../lib/index.js';
import { privateRedisWithAdmin } from './support/private-redis.js';
import { recordingLogger, silentLogger, uniquePrefix, useTestRedis } from './support/redis.js';

const redis = useTestRedis('events');
const secret = 'a-session-secret-of-at-least-32-characters';

/** A hook that keeps every event, and the types seen so far. */
function recorder() {
  const events: RediswareEvent[] = [];
  return {
    events,
    onEvent: (event: RediswareEvent) => void events.push(event),
    types: () => events.map((event) => event.type),
    of: <T extends RediswareEvent['type']>(type: T) =>
      events.filter((event): event is RediswareEvent & { type: T } => event.type === type),
  };
}

/** The stack apps mount redisware in, with `mount` in the middle and a JSON echo route behind it. */
function stackApp(mount: (app: Express) => void): Express {
  const app = express();
  app.use(compression({ threshold: 0 }));
  app.use(cors());
  app.use(helmet());
  app.use(requestId());
  app.use(express.json());
  app.use(express.urlencoded({ extended: false }));
  mount(app);
  return app;
}

/** A client of a Redis that is not there: every command waits until the middleware's timeout. */
const downClients: Redis[] = [];
function downRedis(onEvent?: (event: RediswareEvent) => void): Redis {
  const client = createRedis({
    url: 'redis://127.0.0.1:1',
    logger: silentLogger,
    retry: { maxDelay: 100 },
    onEvent,
  }) as Redis;
  downClients.push(client);
  return client;
}
afterAll(() => {
  for (const client of downClients) client.disconnect();
});

const durationIsMeasured = (event: { durationMs: number }) =>
  expect(event.durationMs).toSatisfy((ms: number) => Number.isFinite(ms) && ms >= 0);

describe('rateLimit() onEvent', () => {
  it('reports each counted request as allowed, then blocked (from Redis, then from memory), with its numbers', async () => {
    const seen = recorder();
    const limiter = rateLimit({ redis: redis.client(), prefix: uniquePrefix('rl'), limit: 2, onEvent: seen.onEvent });
    const app = stackApp((app) => app.get('/', limiter, (_req, res) => res.json({ ok: true })));
    await request(app).get('/').expect(200);
    await request(app).get('/').expect(200);
    await request(app).get('/').expect(429);
    await request(app).get('/').expect(429);
    expect(seen.types()).toEqual(['rateLimit.allowed', 'rateLimit.allowed', 'rateLimit.blocked', 'rateLimit.blocked']);
    const [first, second] = seen.of('rateLimit.allowed');
    expect(first).toMatchObject({ key: '127.0.0.1', limit: 2, used: 1, remaining: 1 });
    expect(second).toMatchObject({ used: 2, remaining: 0 });
    durationIsMeasured(first);
    const [fromRedis, fromMemory] = seen.of('rateLimit.blocked');
    expect(fromRedis).toMatchObject({ limit: 2, used: 3, fromMemory: false });
    expect(fromRedis.retryAfter).toBeGreaterThan(0);
    expect(fromMemory).toMatchObject({ fromMemory: true, durationMs: 0 });
  });

  it('reports a Redis outage with what it did: allowed, or denied with 503', async () => {
    const seen = recorder();
    const common = { redis: downRedis(), timeout: '100ms', logger: silentLogger, onEvent: seen.onEvent } as const;
    const allow = rateLimit({ ...common, prefix: 'allow' });
    const deny = rateLimit({ ...common, prefix: 'deny', onRedisError: 'deny' });
    const app = stackApp((app) => {
      app.get('/allow', allow, (_req, res) => res.send('ok'));
      app.get('/deny', deny, (_req, res) => res.send('ok'));
    });
    await request(app).get('/allow').expect(200);
    await request(app).get('/deny').expect(503);
    const errors = seen.of('redis.error');
    expect(errors.map(({ source, action, operation }) => ({ source, action, operation }))).toEqual([
      { source: 'rateLimit', action: 'allowed', operation: 'hit' },
      { source: 'rateLimit', action: 'denied', operation: 'hit' },
    ]);
    expect(errors[0].error).toBeInstanceOf(Error);
    // A Redis known to be down (its connection refused) is not waited on: failed at once, not after `timeout`.
    expect(errors[0].durationMs).toBeGreaterThanOrEqual(0);
    expect(errors[0].durationMs).toBeLessThan(90);
  });

  it('goes on answering when the hook throws or rejects, and logs it once', async () => {
    const logger = recordingLogger();
    let calls = 0;
    const throwing = rateLimit({
      redis: redis.client(),
      prefix: uniquePrefix('rl-throw'),
      limit: 1,
      logger,
      onEvent: () => {
        calls++;
        throw new Error('dashboard down');
      },
    });
    const rejecting = rateLimit({
      redis: redis.client(),
      prefix: uniquePrefix('rl-reject'),
      limit: 1,
      logger,
      onEvent: async () => {
        calls++;
        throw new Error('async dashboard down');
      },
    });
    const app = stackApp((app) => {
      app.get('/throw', throwing, (_req, res) => res.send('ok'));
      app.get('/reject', rejecting, (_req, res) => res.send('ok'));
    });
    await request(app).get('/throw').expect(200);
    await request(app).get('/throw').expect(429);
    await request(app).get('/throw').expect(429);
    await request(app).get('/reject').expect(200);
    await request(app).get('/reject').expect(429);
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toBe(5);
    expect(logger.errors).toEqual([
      'redisware: the onEvent hook threw on rateLimit.allowed (dashboard down); further throws of this hook are not logged',
      'redisware: the onEvent hook threw on rateLimit.allowed (async dashboard down); further throws of this hook are not logged',
    ]);
  });
});

describe('redisSession() onEvent', () => {
  function sessionStack(onEvent: (event: RediswareEvent) => void, client: Redis = redis.client(), prefix?: string) {
    const sessions = redisSession({
      secret,
      redis: client,
      prefix: prefix ?? uniquePrefix('session'),
      timeout: '100ms',
      logger: silentLogger,
      onEvent,
    });
    const app = stackApp((app) => {
      app.use(sessions);
      app.post('/login', async (req, res) => {
        await req.session.regenerate();
        req.session.userId = String(req.body.user);
        res.json({ id: req.session.id });
      });
      app.get('/me', (req, res) => res.json({ userId: req.session.userId ?? null }));
      app.post('/logout', async (req, res) => {
        await req.session.destroy();
        res.json({ ok: true });
      });
      app.post('/logout-everywhere', async (req, res) => {
        res.json({ destroyed: await sessions.destroyByUser(req.session.userId as string) });
      });
    });
    return { app, sessions };
  }

  it('reports login (regenerated, created), logout (destroyed), log out everywhere and an expired cookie', async () => {
    const seen = recorder();
    const prefix = uniquePrefix('session');
    const { app } = sessionStack(seen.onEvent, redis.client(), prefix);
    const laptop = request.agent(app);
    const phone = request.agent(app);
    const tablet = request.agent(app);
    const { id } = (await laptop.post('/login').send({ user: 'ada' }).expect(200)).body;
    await phone.post('/login').send({ user: 'ada' }).expect(200);
    await tablet.post('/login').send({ user: 'ada' }).expect(200);
    expect(seen.types()).toEqual([
      'session.regenerated',
      'session.created',
      'session.regenerated',
      'session.created',
      'session.regenerated',
      'session.created',
    ]);
    expect(seen.of('session.created')[0]).toMatchObject({ userId: 'ada' });
    durationIsMeasured(seen.of('session.created')[0]);

    seen.events.length = 0;
    await tablet.post('/logout').expect(200);
    expect(seen.events).toEqual([
      { type: 'session.destroyed', reason: 'destroy', userId: 'ada', durationMs: expect.any(Number) },
    ]);

    seen.events.length = 0;
    expect((await laptop.post('/logout-everywhere').expect(200)).body).toEqual({ destroyed: 2 });
    expect(seen.of('session.destroyed').map((event) => [event.reason, event.userId])).toEqual([
      ['destroyByUser', 'ada'],
      ['destroyByUser', 'ada'],
    ]);

    seen.events.length = 0;
    expect((await phone.get('/me').expect(200)).body).toEqual({ userId: null });
    expect(seen.types()).toEqual(['session.expired']);
    // A session id is a bearer token: no event carries one.
    expect(JSON.stringify(seen.events)).not.toContain(id);
  });

  it('reports Redis down on load as denied (503) or bypassed (continue)', async () => {
    const { app: up } = sessionStack(() => {}, redis.client(), 'shared-session');
    const cookie = (await request(up).post('/login').send({ user: 'bob' }).expect(200)).headers['set-cookie'];
    const seen = recorder();
    const { app: down } = sessionStack(seen.onEvent, downRedis(), 'shared-session');
    await request(down).get('/me').set('Cookie', cookie).expect(503);
    expect(seen.of('redis.error')).toMatchObject([{ source: 'session', action: 'denied', operation: 'load' }]);
  });

  it('never breaks a login when the hook throws', async () => {
    const { app } = sessionStack(() => {
      throw new Error('boom');
    });
    const agent = request.agent(app);
    await agent.post('/login').send({ user: 'ada' }).expect(200);
    expect((await agent.get('/me').expect(200)).body).toEqual({ userId: 'ada' });
    await agent.post('/logout').expect(200);
  });
});

describe('cache onEvent', () => {
  function cacheStack(onEvent: (event: RediswareEvent) => void, options: { redis?: Redis; handlerMs?: number } = {}) {
    const cache = createCache({
      redis: options.redis ?? redis.client(),
      prefix: uniquePrefix('cache'),
      timeout: '100ms',
      logger: silentLogger,
      onEvent,
    });
    let runs = 0;
    const handler: RequestHandler = async (req, res) => {
      runs++;
      await new Promise((resolve) => setTimeout(resolve, options.handlerMs ?? 0));
      res.json({ id: req.params.id, body: 'x'.repeat(100) });
    };
    const app = stackApp((app) => {
      app.get('/items/:id', cache.response({ ttl: '1m' }), handler);
      app.get('/stale/:id', cache.response({ ttl: '100ms', staleWhileRevalidate: '1m' }), handler);
      app.post('/items/:id', cache.response(), (_req, res) => res.json({ saved: true }));
    });
    return { app, cache, runs: () => runs };
  }

  it('reports miss, stored, hit, bypass and invalidation per route, with sizes and Redis waits', async () => {
    const seen = recorder();
    const { app } = cacheStack(seen.onEvent);
    await request(app).get('/items/1').expect(200);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the entry is stored after the response
    const hit = await request(app).get('/items/1').expect(200);
    expect(hit.headers['x-cache']).toBe('HIT');
    await request(app).get('/items/1').set('Authorization', 'Bearer t').expect(200);
    await request(app).post('/items/1').send({ name: 'new' }).expect(200);
    expect(seen.types()).toEqual([
      'cache.miss',
      'cache.stored',
      'cache.hit',
      'cache.bypass',
      'cache.bypass',
      'cache.invalidated',
    ]);
    const [miss] = seen.of('cache.miss');
    expect(miss).toMatchObject({ route: '/items/:id', path: '/items/1' });
    expect(miss.key).toMatch(/^[\w-]{16}$/); // a hash of the entry's Redis key, the same in each of its events
    durationIsMeasured(miss);
    const [stored] = seen.of('cache.stored');
    expect(stored).toMatchObject({ route: '/items/:id', key: miss.key, ttlMs: 60_000 });
    expect(stored.size).toBe(Buffer.byteLength(JSON.stringify({ id: '1', body: 'x'.repeat(100) })));
    expect(seen.of('cache.hit')[0]).toMatchObject({ route: '/items/:id', key: miss.key, size: stored.size });
    expect(seen.of('cache.bypass').map((event) => event.reason)).toEqual(['authorization', 'method']);
    expect(seen.of('cache.invalidated')[0]).toMatchObject({ tags: ['url:/items/1'], count: 1 });
  });

  it('reports concurrent misses as one miss and coalesced followers', async () => {
    const seen = recorder();
    const { app, runs } = cacheStack(seen.onEvent, { handlerMs: 200 });
    const server = app.listen(0, '127.0.0.1');
    try {
      await Promise.all(Array.from({ length: 4 }, () => request(server).get('/items/2').expect(200)));
    } finally {
      server.close();
    }
    expect(runs()).toBe(1);
    const lookups = seen.events.filter((event) => event.type !== 'cache.stored');
    expect(lookups.map((event) => event.type).sort()).toEqual([
      'cache.coalesced',
      'cache.coalesced',
      'cache.coalesced',
      'cache.miss',
    ]);
    for (const event of seen.of('cache.coalesced')) {
      expect(event).toMatchObject({ across: 'process', route: '/items/:id' });
      expect(event.durationMs).toBeGreaterThan(100);
    }
  });

  it('reports a stale answer and the background refresh that stores it again', async () => {
    const seen = recorder();
    const { app } = cacheStack(seen.onEvent);
    await request(app).get('/stale/3').expect(200);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await request(app).get('/stale/3').expect(200)).headers['x-cache']).toBe('STALE');
    await expect.poll(() => seen.of('cache.stored').length).toBe(2);
    expect(seen.types().filter((type) => type !== 'cache.stored')).toEqual(['cache.miss', 'cache.stale']);
    expect(seen.of('cache.stored').map((event) => event.background)).toEqual([undefined, true]);
  });

  it('reports Redis down as a bypass and a redis.error, and still answers', async () => {
    const seen = recorder();
    const { app } = cacheStack(seen.onEvent, { redis: downRedis() });
    const response = await request(app).get('/items/4').expect(200);
    expect(response.headers['x-cache']).toBe('BYPASS');
    expect(seen.types()).toEqual(['redis.error', 'cache.bypass']);
    expect(seen.of('redis.error')[0]).toMatchObject({ source: 'cache', action: 'bypassed', operation: 'read' });
    expect(seen.of('cache.bypass')[0].reason).toBe('redis-error');
  });

  it('reports cache-aside lookups, loads shared in this process, stores and invalidations', async () => {
    const seen = recorder();
    const { cache } = cacheStack(seen.onEvent);
    let loads = 0;
    const load = async () => {
      loads++;
      await new Promise((resolve) => setTimeout(resolve, 50));
      return { name: 'ada' };
    };
    await Promise.all([cache.wrap('user:1', load, { tags: ['users'] }), cache.wrap('user:1', load)]);
    await cache.wrap('user:1', load);
    expect(loads).toBe(1);
    expect(await cache.invalidateTags('users')).toBe(1);
    expect(seen.types()).toEqual(['cache.miss', 'cache.stored', 'cache.coalesced', 'cache.hit', 'cache.invalidated']);
    // The key is reported as a hash (an app's key may hold what a request sent), the same one for each event.
    const key = (seen.of('cache.stored')[0] as { key: string }).key;
    expect(key).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(seen.of('cache.stored')[0]).toMatchObject({ key, size: 14 });
    expect(seen.of('cache.hit')[0]).toMatchObject({ key, size: 14 });
    expect(seen.of('cache.miss')[0]).toMatchObject({ key });
    expect(seen.events.some((event) => 'route' in event)).toBe(false);
    expect(seen.of('cache.invalidated')[0]).toMatchObject({ tags: ['users'], count: 1 });
  });

  it('reports concurrent cache.wrap() lookups of a stored value as hits, never as coalesced loads', async () => {
    const seen = recorder();
    const { cache } = cacheStack(seen.onEvent);
    let loads = 0;
    await cache.wrap('stored', () => ++loads);
    seen.events.length = 0;
    const values = await Promise.all(Array.from({ length: 5 }, () => cache.wrap('stored', () => ++loads)));
    expect(values).toEqual([1, 1, 1, 1, 1]);
    expect(loads).toBe(1);
    expect(seen.types()).toEqual(Array(5).fill('cache.hit'));
  });

  it('answers from the cache when the hook throws', async () => {
    const { app, runs } = cacheStack(() => {
      throw new Error('boom');
    });
    await request(app).get('/items/5').expect(200);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await request(app).get('/items/5').expect(200)).headers['x-cache']).toBe('HIT');
    expect(runs()).toBe(1);
  });
});

describe('withLock() onEvent', () => {
  it('reports acquiring the lock, and giving up on it after waitTimeout', async () => {
    const seen = recorder();
    const resource = `job-${Date.now()}`;
    let release: () => void = () => {};
    const held = withLock(resource, () => new Promise<void>((resolve) => (release = resolve)), {
      redis: redis.client(),
      onEvent: seen.onEvent,
    });
    await expect.poll(() => seen.types()).toEqual(['lock.acquired']);
    await expect(
      withLock(resource, () => 'never', { redis: redis.client(), waitTimeout: '150ms', onEvent: seen.onEvent }),
    ).rejects.toBeInstanceOf(LockTimeoutError);
    release();
    await held;
    expect(seen.types()).toEqual(['lock.acquired', 'lock.timeout']);
    expect(seen.events[0]).toMatchObject({ resource, key: `lock:${resource}` });
    expect(seen.of('lock.timeout')[0].durationMs).toBeGreaterThanOrEqual(140);
  });

  it('reports Redis down as a redis.error before rejecting', async () => {
    const seen = recorder();
    await expect(
      withLock('job', () => 'never', { redis: downRedis(), timeout: '100ms', onEvent: seen.onEvent }),
    ).rejects.toThrow();
    expect(seen.of('redis.error')).toMatchObject([{ source: 'lock', action: 'failed', operation: 'lock' }]);
  });
});

describe('createRedis() onEvent', () => {
  it("reports a Cluster's node errors as well as its own", async () => {
    const seen = recorder();
    const cluster = createRedis({
      cluster: { nodes: ['redis://127.0.0.1:1'] },
      logger: silentLogger,
      retry: { maxDelay: 100 },
      onEvent: seen.onEvent,
    });
    try {
      await expect
        .poll(() => new Set(seen.of('redis.error').map((event) => event.error.message)))
        .toEqual(new Set(['Connection is closed.', 'Failed to refresh slots cache.']));
    } finally {
      cluster.disconnect();
    }
  });

  it('reports every connection error, and a hook that throws does not crash the process', async () => {
    const seen = recorder();
    downRedis(
      combineEventHooks(seen.onEvent, () => {
        throw new Error('boom');
      }),
    );
    await expect.poll(() => seen.of('redis.error').length, { timeout: 3_000 }).toBeGreaterThanOrEqual(2);
    expect(seen.of('redis.error')[0]).toMatchObject({ source: 'connection', action: 'reconnecting' });
  });
});

describe('what events never carry, and what they report the same way every time', () => {
  /** Every string an error would show to a logger that serialises all its own properties (pino's does). */
  const serialised = (error: Error) => JSON.stringify(error, Object.getOwnPropertyNames(error));

  it("never passes on the command ioredis attaches to an error: not an AUTH password, not a session's key or data", async () => {
    const { server, admin } = await privateRedisWithAdmin();
    const seen = recorder();
    await admin.config('SET', 'requirepass', 'admin-only-password');
    try {
      downClients.push(
        createRedis({
          url: `redis://:Wrong-Secret-Password@127.0.0.1:${server.port}`,
          logger: silentLogger,
          retry: { maxDelay: 100 },
          onEvent: seen.onEvent,
        }) as Redis,
      );
      await expect.poll(() => seen.of('redis.error').length).toBeGreaterThan(0);
      const [connection] = seen.of('redis.error');
      expect(connection.error.message).toMatch(/WRONGPASS|invalid/i);
      expect(serialised(connection.error)).not.toContain('Wrong-Secret-Password');
      expect(connection.error).not.toHaveProperty('command');
      expect(connection.error).toBeInstanceOf(ReplyError); // still of its class, for hooks that tell errors apart
    } finally {
      await admin.config('SET', 'requirepass', '');
    }

    // A session saved into a full Redis: the refused script call carries the session's key and data.
    const client = createRedis({ url: server.url, logger: silentLogger }) as Redis;
    downClients.push(client);
    const sessions = redisSession({ secret, redis: client, logger: silentLogger, onEvent: seen.onEvent });
    const app = stackApp((app) => {
      app.use(sessions);
      app.post('/save', (req, res) => {
        req.session.userId = 'secret-user-data';
        res.json({ id: req.session.id });
      });
    });
    await admin.config('SET', 'maxmemory', '1');
    try {
      await request(app).post('/save').expect(503);
    } finally {
      await admin.config('SET', 'maxmemory', '0');
    }
    const save = seen.of('redis.error').find((event) => event.source === 'session');
    expect(save).toMatchObject({ action: 'denied', operation: 'save' });
    expect(save?.error.message).toMatch(/OOM/);
    expect(serialised(save?.error as Error)).not.toMatch(/secret-user-data|session:/);
  });

  it('never reports the values of request headers a response varies on (an Authorization token, say)', async () => {
    const seen = recorder();
    const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('vary'), onEvent: seen.onEvent });
    const app = stackApp((app) =>
      app.get('/me', cache.response({ allowAuthorized: true, vary: ['authorization'] }), (_req, res) => res.send('me')),
    );
    await request(app).get('/me').set('Authorization', 'Bearer SECRET-TOKEN').expect(200);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await request(app).get('/me').set('Authorization', 'Bearer SECRET-TOKEN').expect(200);
    expect(seen.types()).toEqual(['cache.miss', 'cache.stored', 'cache.hit']);
    expect(JSON.stringify(seen.events)).not.toContain('SECRET-TOKEN');
  });

  it('reports one route for a URL behind app.use(), the same on a MISS and a HIT, and its path beside it', async () => {
    const seen = recorder();
    const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('mounted'), onEvent: seen.onEvent });
    const router = express.Router();
    router.get('/users/:id', (req, res) => res.json({ id: req.params.id }));
    const app = stackApp((app) => app.use('/api', cache.response(), router));
    await request(app).get('/api/users/42').expect(200);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await request(app).get('/api/users/42').expect(200);
    expect(
      seen.events.map((event) => [event.type, 'route' in event && event.route, 'path' in event && event.path]),
    ).toEqual([
      ['cache.miss', '/api/*', '/api/users/42'],
      ['cache.stored', '/api/*', '/api/users/42'],
      ['cache.hit', '/api/*', '/api/users/42'],
    ]);
  });

  it("takes a route's pattern only from the route the cache is on, not from an earlier one that passed the request on", async () => {
    const seen = recorder();
    const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('routes'), onEvent: seen.onEvent });
    const app = stackApp((app) => {
      app.get('/fall/:id', (_req, _res, next) => next());
      app.use('/fall', cache.response(), (_req: unknown, res: express.Response) => void res.send('fell through'));
      app.get(/^\/rx\/\d+$/, cache.response(), (_req, res) => res.send('regex'));
      app.get('/items/:id', cache.response(), (_req, res) => res.send('item'));
    });
    await request(app).get('/fall/1').expect(200);
    await request(app).get('/rx/7').expect(200);
    await request(app).get('/items/3').expect(200);
    expect(seen.of('cache.miss').map((event) => event.route)).toEqual(['/fall/*', '/^\\/rx\\/\\d+$/', '/items/:id']);
  });

  it('reports each failed Redis step of the API as a redis.error before it rejects (regenerate, reset, listByUser), and an invalidation that cannot be held as redis.dropped', async () => {
    const seen = recorder();
    const client = redis.newClient();
    const sessions = redisSession({ secret, redis: client, logger: silentLogger, onEvent: seen.onEvent });
    const cache = createCache({
      redis: client,
      prefix: uniquePrefix('gone'),
      logger: silentLogger,
      onEvent: seen.onEvent,
    });
    const limiter = rateLimit({ redis: client, prefix: uniquePrefix('gone-rl'), onEvent: seen.onEvent });
    const app = stackApp((app) => {
      app.use(sessions);
      app.post('/login', (req, res) => {
        req.session.userId = 'ada';
        res.send('ok');
      });
      // Redis goes away between the session's load and the handler's own steps.
      app.post('/regenerate', async (req, res, next) => {
        client.disconnect();
        try {
          await req.session.regenerate();
          res.send('ok');
        } catch (error) {
          next(error); // Express 4 does not catch a rejected handler
        }
      });
      app.post('/items', cache.response({ key: () => 'items' }), (_req, res) => res.send('saved'));
    });
    const agent = request.agent(app);
    await agent.post('/login').expect(200);
    await agent.post('/regenerate').expect(500);
    // An invalidation fails nothing: it is held until Redis answers again (redis.deferred) — or, here, where the app
    // closed its client itself, reported lost at once (redis.dropped): no client will ever take it.
    await request(app).post('/items').expect(200);
    await expect(cache.invalidateTags('users')).resolves.toBe(0);
    await expect(cache.delete('user:1')).resolves.toBeUndefined();
    await expect(limiter.reset('10.0.0.1')).rejects.toThrow();
    await expect(sessions.listByUser('ada')).rejects.toThrow();
    const failures = seen.of('redis.error').map(({ source, action, operation }) => `${source} ${action} ${operation}`);
    expect(failures).toEqual(['session failed regenerate', 'rateLimit failed reset', 'session failed listByUser']);
    const lost = seen.of('redis.dropped').filter((event) => event.source === 'cache');
    expect(lost.map(({ operation }) => operation)).toEqual(['invalidate', 'invalidate', 'invalidate']);
  });

  it('reports unawaited, callback-less session calls (the express-session way) failing while Redis is down, and nothing rejects unhandled', async () => {
    const seen = recorder();
    const client = redis.newClient();
    const sessions = redisSession({
      secret,
      redis: client,
      timeout: '100ms',
      logger: silentLogger,
      onEvent: seen.onEvent,
    });
    const app = stackApp((app) => {
      app.use(sessions);
      app.post('/login', (req, res) => {
        req.session.userId = 'ada';
        res.send('ok');
      });
      app.post('/fire-and-forget', (req, res) => {
        client.disconnect();
        void req.session.touch();
        void req.session.reload();
        void req.session.destroy();
        res.send('answered');
      });
    });
    const agent = request.agent(app);
    await agent.post('/login').expect(200);
    await agent.post('/fire-and-forget').expect(200);
    await expect
      .poll(() =>
        seen
          .of('redis.error')
          .map((event) => `${event.action} ${event.operation}`)
          .sort(),
      )
      .toEqual(['failed destroy', 'failed reload', 'failed touch']);
  });

  it('logs a throwing hook through the logger of the factory whose event it threw on', async () => {
    const quiet = recordingLogger();
    const loud = recordingLogger();
    const onEvent = (event: RediswareEvent) => {
      if (event.type.startsWith('cache.')) throw new Error('cache dashboard down');
    };
    const limiter = rateLimit({ redis: redis.client(), prefix: uniquePrefix('rl-log'), logger: quiet, onEvent });
    const cache = createCache({ redis: redis.client(), prefix: uniquePrefix('c-log'), logger: loud, onEvent });
    const app = stackApp((app) => app.get('/', limiter, (_req, res) => res.send('ok')));
    await request(app).get('/').expect(200);
    await cache.wrap('k', () => 1);
    expect(quiet.errors).toEqual([]);
    expect(loud.errors).toEqual([
      'redisware: the onEvent hook threw on cache.miss (cache dashboard down); further throws of this hook are not logged',
    ]);
  });

  it('logs a throwing hook once, however many withLock() calls it is given to', async () => {
    const logger = recordingLogger();
    const onEvent = () => {
      throw new Error('boom');
    };
    for (let i = 0; i < 3; i++) {
      await withLock(`job-once-${Date.now()}-${i}`, () => i, { redis: redis.client(), onEvent, logger });
    }
    expect(logger.errors).toHaveLength(1);
  });

  it('reports a cache.wrap() follower of another instance as coalesced only, never also as a miss', async () => {
    const seen = { a: recorder(), b: recorder() };
    const prefix = uniquePrefix('instances');
    const instanceA = createCache({ redis: redis.client(), prefix, onEvent: seen.a.onEvent });
    const instanceB = createCache({ redis: redis.newClient(), prefix, onEvent: seen.b.onEvent });
    let loads = 0;
    const load = async () => {
      loads++;
      await new Promise((resolve) => setTimeout(resolve, 150));
      return { report: 'r' };
    };
    const first = instanceA.wrap('report', load);
    await expect.poll(() => loads).toBe(1);
    await instanceB.wrap('report', load);
    await first;
    expect(loads).toBe(1);
    expect(seen.a.types()).toEqual(['cache.miss', 'cache.stored']);
    expect(seen.b.types()).toEqual(['cache.coalesced']);
    expect(seen.b.events[0]).toMatchObject({ across: 'instances' });
    expect(JSON.stringify(seen.b.events)).not.toContain('report');
  });
});

describe('combineEventHooks()', () => {
  it("passes an async hook's rejection on to the factory, which logs it once", async () => {
    const logger = recordingLogger();
    const seen = recorder();
    const limiter = rateLimit({
      redis: redis.client(),
      prefix: uniquePrefix('rl-combined'),
      logger,
      onEvent: combineEventHooks(seen.onEvent, async () => {
        throw new Error('exporter offline');
      }),
    });
    const app = stackApp((app) => app.get('/', limiter, (_req, res) => res.send('ok')));
    await request(app).get('/').expect(200);
    await request(app).get('/').expect(200);
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen.types()).toEqual(['rateLimit.allowed', 'rateLimit.allowed']);
    expect(logger.errors).toEqual([
      'redisware: the onEvent hook threw on rateLimit.allowed (exporter offline); further throws of this hook are not logged',
    ]);
  });

  it('calls every hook, even after one throws, and then throws the first error', () => {
    const calls: string[] = [];
    const hook = combineEventHooks(
      () => void calls.push('a'),
      () => {
        calls.push('b');
        throw new Error('b failed');
      },
      undefined,
      () => void calls.push('c'),
    );
    expect(() => hook({ type: 'cache.invalidated', tags: [], count: 0, durationMs: 0 })).toThrow('b failed');
    expect(calls).toEqual(['a', 'b', 'c']);
  });
});
