import type { Redis } from 'ioredis';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { redisSession } from '../../lib/index.js';
import { eventCount, privateRedisWithAdmin } from '../support/private-redis.js';
import { recordingLogger, silentLogger } from '../support/redis.js';
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

describe('express-session habits while Redis is down', () => {
  it('never produces an unhandled rejection from a method neither awaited nor given a callback, and answers', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      for (const route of ['/logout-habit', '/habits']) {
        // Redis goes away while the request runs: its session was loaded, the methods then fail.
        const redis = sessionClient();
        const errors = recordingLogger();
        const app = sessionApp(
          redisSession({ secret, redis, timeout: '100ms', logger: errors }),
          undefined,
          (routes) => {
            routes.get('/habits', (req, res) => {
              redis.disconnect();
              req.session.save();
              req.session.touch();
              req.session.reload();
              req.session.regenerate();
              res.send('answered');
            });
            routes.get('/logout-habit', (req, res) => {
              redis.disconnect();
              req.session.destroy();
              res.redirect('/');
            });
          },
        );
        const cookie = cookiePair(await request(app).get('/set?a=1'));
        const response = await request(app).get(route).set('Cookie', cookie);
        if (route === '/logout-habit') {
          expect(response.status).toBe(302);
          // The cookie is cleared on this response although the session could not be deleted.
          expect(response.headers['set-cookie']?.[0]).toMatch(/^sid=; .*Expires=Thu, 01 Jan 1970/);
        } else {
          expect(response.status).toBe(200);
        }
        // Each failure is logged once it comes in (the connection closes after the response went out).
        const failed = route === '/logout-habit' ? /destroy\(\) failed/ : /regenerate\(\) failed/;
        for (let waited = 0; !failed.test(errors.errors.join('\n')) && waited < 1_000; waited += 10) {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        expect(errors.errors.join('\n')).toMatch(failed);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
