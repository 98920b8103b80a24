// Headers as the wire carries them: a header on several lines is read whole, the safer reading of conflicting
// directives wins, and no header value a client sends can make a request slow.
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createCache } from '../../lib/index.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';
import { stackApp } from './support.js';

const redis = useTestRedis('cache-headers');
const newCache = () => createCache({ redis: redis.client(), prefix: uniquePrefix('headers'), logger: silentLogger });

describe('Vary over several header lines', () => {
  it.each([
    [
      'two res.append() calls',
      (res: import('express').Response) => {
        res.append('Vary', 'Accept-Language');
        res.append('Vary', 'Cookie');
      },
    ],
    ['an array', (res: import('express').Response) => void res.setHeader('Vary', ['Accept-Language', 'Cookie'])],
  ])('keys the variant on every line (%s): bob never gets alice’s page', async (_how, setVary) => {
    const cache = newCache();
    const app = stackApp();
    app.get('/account', cache.response(), (req, res) => {
      setVary(res);
      res.send(`the account page of ${req.headers.cookie}`);
    });
    const get = (cookie: string) => request(app).get('/account').set('Accept-Language', 'en').set('Cookie', cookie);
    expect((await get('user=alice')).text).toBe('the account page of user=alice');
    expect((await get('user=alice')).headers['x-cache']).toBe('HIT');
    expect((await get('user=bob')).text).toBe('the account page of user=bob');
  });
});

describe('conflicting Cache-Control directives in HTTP mode: the safer reading wins', () => {
  const shared: [string, string[]][] = [
    ['private="x-foo", private, max-age=60 on one line', ['private="x-foo", private, max-age=60']],
    ['private="x-foo" and private, max-age=60 on two lines', ['private="x-foo"', 'private, max-age=60']],
    ['max-age=60, ext="a, private (an unterminated quote)', ['max-age=60, ext="a, private']],
    ['max-age=60, private="x-foo (an unterminated qualified private)', ['max-age=60, private="x-foo']],
  ];
  it.each(shared)('%s is never served to another user', async (_what, lines) => {
    const cache = newCache();
    const app = stackApp();
    app.get('/mine', cache.response({ freshness: 'http' }), (req, res) => {
      for (const line of lines) res.append('Cache-Control', line);
      res.send(`for ${req.headers['x-user']}`);
    });
    await request(app).get('/mine').set('X-User', 'alice');
    const bob = await request(app).get('/mine').set('X-User', 'bob');
    expect(bob.text).toBe('for bob');
  });

  it('no-cache="x-foo", no-cache, max-age=600 is revalidated with the handler before every use', async () => {
    const cache = newCache();
    const app = stackApp();
    let runs = 0;
    app.get('/checked', cache.response({ freshness: 'http' }), (_req, res) => {
      runs++;
      res.setHeader('Cache-Control', 'no-cache="x-foo", no-cache, max-age=600');
      res.send(`run ${runs}`);
    });
    await request(app).get('/checked');
    await request(app).get('/checked');
    expect(runs).toBe(2);
  });
});

describe('adversarial header values', () => {
  it('a 16 KB Accept-Language on a URL that varies on it is answered at once', async () => {
    const cache = newCache();
    const app = stackApp();
    app.get('/hello', cache.response(), (_req, res) => {
      res.vary('Accept-Language');
      res.send('hello');
    });
    const hostile = `a${' '.repeat(16_000)}a`;
    await request(app).get('/hello').set('Accept-Language', 'en');
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      await request(app).get('/hello').set('Accept-Language', hostile).expect(200);
      expect(performance.now() - started).toBeLessThan(100);
    }
  });
});
