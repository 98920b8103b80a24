// A cached response only ever answers the request it was made for: origins are validated, every key is built from
// its parts without ambiguity, and invalidation reaches every entry a request could be served from.
import { Redis as Redis6 } from 'ioredis6';
import request from 'supertest';
import { afterAll, describe, expect, it } from 'vitest';
import { createCache, redisSession } from '../../lib/index.js';
import { recordingLogger, redisUrl, silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';
import { cookieOf, stackApp } from './support.js';

const secret = 'a-test-secret-that-is-long-enough-0001';

const redis = useTestRedis('cache-identity');
const newCache = (options: Parameters<typeof createCache>[0] = {}) =>
  createCache({ redis: redis.client(), prefix: uniquePrefix('identity'), logger: silentLogger, ...options });

describe('origins', () => {
  function siteApp(trustProxy?: boolean) {
    const cache = newCache();
    const app = stackApp((app) => {
      if (trustProxy) app.set('trust proxy', true);
    });
    app.use(cache.response());
    app.get('/account/settings', (_req, res) => void res.send('the real settings page'));
    app.get('/settings', (_req, res) => void res.send('a page the attacker controls'));
    return { app, cache };
  }

  it('a Host holding a path never poisons the entry of another path', async () => {
    const { app, cache } = siteApp();
    const attack = await request(app).get('/settings').set('Host', '127.0.0.1/account');
    expect(attack.headers['x-cache']).toBe('BYPASS');
    const victim = await request(app).get('/account/settings');
    expect(victim.text).toBe('the real settings page');
    // Deleting the real path reaches everything stored for it.
    await cache.delete('/account/settings');
    expect((await request(app).get('/account/settings')).headers['x-cache']).toBe('MISS');
  });

  it('a trusted X-Forwarded-Host holding a path is not cached at all', async () => {
    const { app } = siteApp(true);
    for (let i = 0; i < 2; i++) {
      const attack = await request(app).get('/settings').set('X-Forwarded-Host', '127.0.0.1/account');
      expect(attack.headers['x-cache']).toBe('BYPASS');
    }
    expect((await request(app).get('/account/settings').set('X-Forwarded-Host', '127.0.0.1')).text).toBe(
      'the real settings page',
    );
  });

  it.each([
    ['a user part', 'user@127.0.0.1'],
    ['a path', 'example.com/x'],
    ['a query', 'example.com?x'],
    ['a fragment', 'example.com#x'],
    ['a space', 'example .com'],
    ['a port that is not a number', 'example.com:http'],
    ['a port over 65535', 'example.com:65536'],
    ['an unclosed IP literal', '[::1'],
    ['an IP literal that is no address', '[not-an-address]'],
    ['a name of 256 characters', 'a'.repeat(256)],
    ['a stray percent sign', 'exa%mple.com'],
  ])('a Host with %s is answered by the handler and never stored', async (_what, host) => {
    const { app } = siteApp();
    for (let i = 0; i < 2; i++) {
      const response = await request(app).get('/account/settings').set('Host', host);
      expect([response.status, response.headers['x-cache']]).toEqual([200, 'BYPASS']);
    }
  });

  it('names, IPv4, IPv6 literals and ports of the RFC 3986 form are cached, the port kept apart', async () => {
    const { app } = siteApp();
    for (const host of [
      'shop.example',
      'SHOP.example:8080',
      '192.0.2.1',
      '[2001:db8::1]:443',
      'xn--bcher-kva.example',
    ]) {
      const first = await request(app).get('/account/settings').set('Host', host);
      expect(first.headers['x-cache'], host).toBe('MISS');
      const again = await request(app).get('/account/settings').set('Host', host.toLowerCase());
      expect(again.headers['x-cache'], host).toBe('HIT');
    }
    // Another port is another origin.
    expect((await request(app).get('/account/settings').set('Host', 'shop.example:8081')).headers['x-cache']).toBe(
      'MISS',
    );
  });
});

describe('queries', () => {
  it('the same plain parameters in another order share an entry', async () => {
    const app = stackApp();
    app.get('/search', newCache().response(), (req, res) => void res.json(req.query));
    await request(app).get('/search?b=2&a=1');
    expect((await request(app).get('/search?a=1&b=2')).headers['x-cache']).toBe('HIT');
  });

  it('invalid UTF-8 in a query value (%FF, %FE) never poisons another query', async () => {
    const app = stackApp();
    app.set('query parser', 'extended');
    app.get('/search', newCache().response(), (req, res) => void res.json({ q: req.query.q }));
    expect((await request(app).get('/search?q=%FF')).body).toEqual({ q: '%FF' });
    expect((await request(app).get('/search?q=%FE')).body).toEqual({ q: '%FE' });
  });

  it('a handler that forwards the raw query (a proxy) never gets another query’s response', async () => {
    const app = stackApp();
    app.use('/cms', newCache().response(), (req, res) => void res.send(`upstream got ${req.url}`));
    expect((await request(app).get('/cms/page?id=%FF')).text).toBe('upstream got /page?id=%FF');
    expect((await request(app).get('/cms/page?id=%EF%BF%BD')).text).toBe('upstream got /page?id=%EF%BF%BD');
  });

  it('qs bracket notation: the order of id[] and id is the order of the values the handler sees', async () => {
    const app = stackApp();
    app.set('query parser', 'extended');
    app.get('/first', newCache().response(), (req, res) => {
      res.json({ first: ([] as unknown[]).concat(req.query.id)[0] });
    });
    expect((await request(app).get('/first?id[]=666&id=1')).body).toEqual({ first: '666' });
    expect((await request(app).get('/first?id=1&id[]=666')).body).toEqual({ first: '1' });
  });
});

describe('values and responses', () => {
  it('a value set under any key never touches a stored response', async () => {
    const cache = newCache();
    const app = stackApp();
    app.get('/x', cache.response(), (_req, res) => void res.send('the response of /x'));
    await request(app).get('/x').set('Host', '127.0.0.1');
    for (const key of ['{GET http://127.0.0.1/x}', 'GET http://127.0.0.1/x', '/x', 'GET /x']) {
      await cache.set(key, 'poison');
      expect(await cache.get(key)).toBe('poison');
    }
    const hit = await request(app).get('/x').set('Host', '127.0.0.1');
    expect([hit.headers['x-cache'], hit.text]).toEqual(['HIT', 'the response of /x']);
  });
});

describe('invalidation reaches every entry a request could be served from', () => {
  const prefixedClients = {
    client: new Redis6(redisUrl(), { keyPrefix: `${uniquePrefix('app')}:`, lazyConnect: true }),
    raw: new Redis6(redisUrl(), { lazyConnect: true }),
  };
  afterAll(async () => {
    for (const each of Object.values(prefixedClients)) await each.quit().catch(() => each.disconnect());
  });
  function postsApp(cache = newCache()) {
    let version = 1;
    const app = stackApp();
    app.use(cache.response());
    app.get('/posts/:id', (req, res) => void res.json({ id: req.params.id, version }));
    app.put('/posts/:id', (_req, res) => {
      version++;
      res.send('updated');
    });
    return app;
  }

  it('every spelling Express routes to the same handler: case, a trailing slash, an empty query', async () => {
    const app = postsApp();
    const spellings = ['/posts/1', '/POSTS/1', '/posts/1/', '/Posts/1?', '/posts/%31'];
    for (const path of spellings) await request(app).get(path);
    for (const path of spellings) expect((await request(app).get(path)).headers['x-cache'], path).toBe('HIT');
    await request(app).put('/posts/1').expect(200);
    for (const path of spellings) {
      const after = await request(app).get(path);
      expect([after.headers['x-cache'], after.body.version], path).toEqual(['MISS', 2]);
    }
  });

  it("with the app's own ioredis 6 client created with keyPrefix", async () => {
    const { client, raw } = prefixedClients;
    const cache = createCache({ redis: client, prefix: uniquePrefix('kp'), logger: silentLogger });
    const app = postsApp(cache);
    const tagged = stackApp();
    tagged.get('/tagged', cache.response({ tags: ['news'] }), (_req, res) => void res.send('news'));
    await request(app).get('/posts/1');
    await request(tagged).get('/tagged');
    expect((await request(tagged).get('/tagged')).headers['x-cache']).toBe('HIT');
    expect(await cache.invalidateTags('news')).toBe(1);
    expect((await request(tagged).get('/tagged')).headers['x-cache']).toBe('MISS');
    await request(app).put('/posts/1').expect(200);
    const after = await request(app).get('/posts/1');
    expect([after.headers['x-cache'], after.body.version]).toEqual(['MISS', 2]);
    // Nothing was written twice prefixed.
    expect(await raw.keys(`${client.options.keyPrefix}${client.options.keyPrefix}*`)).toEqual([]);
  });

  it('a custom key and perSession: the user’s own write and cache.delete(key) reach every session’s entry', async () => {
    const cache = newCache();
    let version = 1;
    const app = stackApp();
    app.use(redisSession({ secret, redis: redis.client(), prefix: uniquePrefix('s'), logger: silentLogger }));
    app.get('/login/:user', (req, res) => {
      (req.session as unknown as Record<string, unknown>).user = req.params.user;
      res.send('ok');
    });
    app.use(cache.response({ perSession: true, key: (req) => `profile ${req.path}` }));
    app.get('/profile', (req, res) => {
      res.json({ version, user: (req.session as unknown as { user?: string }).user });
    });
    app.post('/profile', (_req, res) => {
      version++;
      res.send('saved');
    });
    const alice = cookieOf(await request(app).get('/login/alice'));
    const bob = cookieOf(await request(app).get('/login/bob'));
    for (const cookie of [alice, bob]) await request(app).get('/profile').set('Cookie', cookie);
    expect((await request(app).get('/profile').set('Cookie', alice)).headers['x-cache']).toBe('HIT');
    await request(app).post('/profile').set('Cookie', alice).expect(200);
    for (const cookie of [alice, bob]) {
      const after = await request(app).get('/profile').set('Cookie', cookie);
      expect([after.headers['x-cache'], after.body.version]).toEqual(['MISS', 2]);
    }
    await cache.delete('profile /profile');
    for (const cookie of [alice, bob]) {
      expect((await request(app).get('/profile').set('Cookie', cookie)).headers['x-cache']).toBe('MISS');
    }
  });

  it('a key() that throws on an unsafe request is reported, and the URL is invalidated all the same', async () => {
    const logger = recordingLogger();
    const cache = newCache({ logger });
    let version = 1;
    const app = stackApp();
    app.use(
      cache.response({
        key: (req) => {
          if (req.method !== 'GET') throw new Error('this key function only knows GET');
          return `doc ${req.path}`;
        },
      }),
    );
    app.get('/doc', (_req, res) => void res.json({ version }));
    app.put('/doc', (_req, res) => {
      version++;
      res.send('updated');
    });
    await request(app).get('/doc');
    expect((await request(app).get('/doc')).headers['x-cache']).toBe('HIT');
    await request(app).put('/doc').expect(200);
    const after = await request(app).get('/doc');
    expect([after.headers['x-cache'], after.body.version]).toEqual(['MISS', 2]);
    expect(logger.errors.join('\n')).toMatch(/key.*only knows GET/);
  });
});
