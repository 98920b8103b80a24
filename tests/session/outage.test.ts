import type { Redis } from 'ioredis';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { redisSession } from '../../lib/index.js';
import { eventCount, privateRedisWithAdmin } from '../support/private-redis.js';
import { silentLogger } from '../support/redis.js';
import { cookiePair, secret, sessionApp } from './support.js';

// These tests pause and stop their own redis-server, never the suite's shared one.
let server: Awaited<ReturnType<typeof privateRedisWithAdmin>>['server'];
let admin: Redis;
let sessionClient: () => Redis;
beforeAll(async () => {
  ({ server, admin, client: sessionClient } = await privateRedisWithAdmin());
});

describe('redisSession() when Redis is slow', () => {
  it("'fail' answers 503 within the timeout; 'continue' serves an empty, unsaved session", async () => {
    const redis = sessionClient();
    const options = { secret, redis, timeout: '100ms', logger: silentLogger } as const;
    const failing = sessionApp(redisSession(options));
    const continuing = sessionApp(redisSession({ ...options, onRedisError: 'continue' }));
    const cookie = cookiePair(await request(failing).get('/set?a=1'));
    await admin.call('CLIENT', 'PAUSE', '1500', 'ALL');
    try {
      const failed = await request(failing).get('/peek').set('Cookie', cookie).expect(503);
      expect(failed.headers['retry-after']).toBe('1');
      const continued = await request(continuing).get('/set?b=2').set('Cookie', cookie).expect(200);
      expect(continued.headers['set-cookie']).toBeUndefined();
    } finally {
      await admin.call('CLIENT', 'UNPAUSE');
    }
    // The 'continue' request's change was not saved.
    expect((await request(failing).get('/peek').set('Cookie', cookie)).body.data).toEqual({ a: '1' });
    redis.disconnect();
  });
});

describe('redisSession() when Redis is down', () => {
  it("'fail' answers 503 and 'continue' proceeds without a session; sessions work again when Redis returns", async () => {
    const redis = sessionClient();
    const options = { secret, redis, timeout: '150ms', logger: silentLogger } as const;
    const failing = sessionApp(redisSession(options));
    const continuing = sessionApp(redisSession({ ...options, onRedisError: 'continue' }));
    const cookie = cookiePair(await request(failing).get('/set?a=1'));

    await server.stop();
    await eventCount(redis, 'reconnecting', 1);
    await request(failing).get('/peek').set('Cookie', cookie).expect(503);
    // A write on a fresh session cannot be saved either: 503, not a silent loss.
    await request(failing).get('/set?x=1').expect(503);
    const continued = await request(continuing).get('/set?b=2').set('Cookie', cookie).expect(200);
    expect(continued.headers['set-cookie']).toBeUndefined();
    // Without a cookie and without touching the session, Redis is never needed.
    await request(failing).get('/peek').expect(200);

    const ready = eventCount(redis, 'ready', 1);
    await server.restart();
    await ready;
    const fresh = await request(failing).get('/set?c=3').expect(200);
    expect((await request(failing).get('/peek').set('Cookie', cookiePair(fresh))).body.data).toEqual({ c: '3' });
    redis.disconnect();
  });
});
