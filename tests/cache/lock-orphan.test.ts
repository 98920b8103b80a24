// One 400 ms stall costs at most one `lock.wait`, not a queue of them: a miss whose lock acquisition timed out while
// Redis stalled (and which Redis applied afterwards) leaves no lock for the next requests of that URL to wait on.
import express from 'express';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCache, createRedis } from '../../lib/index.js';
import { faultyProxy } from '../support/faulty-proxy.js';
import { privateRedisWithAdmin } from '../support/private-redis.js';
import { silentLogger } from '../support/redis.js';
import { sleep } from './support.js';

let server: Awaited<ReturnType<typeof privateRedisWithAdmin>>['server'];
let admin: Redis;
beforeAll(async () => {
  ({ server, admin } = await privateRedisWithAdmin());
});

/** The cache's lock keys Redis holds now. */
async function locksHeld(prefix: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}:lock:*`, 'COUNT', 500);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}

describe('cacheResponse() after Redis stalled during a miss', () => {
  it('answers the next requests for an uncacheable URL without waiting lock.wait, and leaves no lock behind', async () => {
    const proxy = await faultyProxy(server.port);
    const redis = createRedis({ url: `redis://127.0.0.1:${proxy.port}`, logger: silentLogger }) as Redis;
    const prefix = 'stalled';
    const cache = createCache({ redis, prefix, timeout: '250ms', logger: silentLogger });
    let calls = 0;
    const app = express();
    // A personal page: never stored, so every request is a miss that takes the URL's lock.
    app.get('/me', cache.response({ lock: { wait: '3s', ttl: '10s' } }), (_req, res) => {
      calls++;
      res.set('Cache-Control', 'private').json({ calls });
    });
    await request(app).get('/me').expect(200); // scripts loaded, subscriber listening
    await expect.poll(() => locksHeld(prefix)).toEqual([]);

    proxy.stallAt(`${prefix}:lock:`, 400); // the next lock acquisition meets a 400 ms stall
    await request(app).get('/me').expect(200);
    expect(proxy.stalls).toBe(1);
    await sleep(Math.max(proxy.stalledUntil - Date.now(), 0) + 20);

    // Redis applied the acquisition as the stall ended: its late reply had the lock released.
    await expect.poll(() => locksHeld(prefix), { timeout: 1_000, interval: 20 }).toEqual([]);
    const started = Date.now();
    const responses = await Promise.all(Array.from({ length: 5 }, () => request(app).get('/me')));
    for (const response of responses) expect(response.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(1_500); // lock.wait is 3 s
    expect(calls).toBe(7);
    redis.disconnect();
  });
});
