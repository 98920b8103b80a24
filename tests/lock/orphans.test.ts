// No orphaned locks: an acquisition or a release that failed on the client but reached (or may reach) Redis is cleaned
// up by compare-and-delete, so a stall or a dropped connection never leaves a lock nobody owns until its lease ends.
import type { Redis } from 'ioredis';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRedis, LockTimeoutError, type RediswareEvent, withLock } from '../../lib/index.js';
import { healthOf } from '../../lib/redis/health.js';
import { faultyProxy } from '../support/faulty-proxy.js';
import { eventCount, privateRedisWithAdmin } from '../support/private-redis.js';
import { silentLogger } from '../support/redis.js';
import { cuttingProxy } from '../support/tcp-proxy.js';

let server: Awaited<ReturnType<typeof privateRedisWithAdmin>>['server'];
let admin: Redis;
let newClient: () => Redis;
beforeAll(async () => {
  ({ server, admin, client: newClient } = await privateRedisWithAdmin());
});

const lease = '10s';

/** A client through `port` (a proxy) that reconnects within 50 ms. */
function clientThrough(port: number): Redis {
  return createRedis({
    url: `redis://127.0.0.1:${port}`,
    logger: silentLogger,
    retry: { baseDelay: 10, maxDelay: 50 },
  }) as Redis;
}

describe('withLock() after a failed acquisition that reached Redis', () => {
  it('leaves no lock behind when Redis stalled 400 ms past a 250 ms timeout: the next withLock gets it at once', async () => {
    const redis = newClient();
    const resource = 'stalled-acquisition';
    await withLock(resource, () => 'warm', { redis }); // the scripts are loaded: the stall meets the acquisition
    let ran = false;
    await admin.call('CLIENT', 'PAUSE', '400', 'ALL');
    await expect(
      withLock(
        resource,
        () => {
          ran = true;
        },
        { redis, ttl: lease, timeout: '250ms' },
      ),
    ).rejects.toThrow(/did not answer within 250 ms/);
    expect(ran).toBe(false);
    // Redis applies the acquisition when the stall ends; its late reply has the lock released at once.
    await expect.poll(() => admin.exists(`lock:${resource}`), { timeout: 2_000, interval: 20 }).toBe(0);
    await expect(withLock(resource, () => 'second', { redis, ttl: lease, waitTimeout: '2s' })).resolves.toBe('second');
    redis.disconnect();
  });

  it('leaves no lock behind when the connection dropped after the acquisition reached Redis: released on reconnecting', async () => {
    const proxy = await cuttingProxy(server.port);
    const redis = clientThrough(proxy.port);
    const resource = 'cut-acquisition';
    const events: RediswareEvent[] = [];
    await withLock(resource, () => 'warm', { redis });
    proxy.cutAfter(`lock:${resource}`);
    await expect(
      withLock(resource, () => 'never', { redis, ttl: lease, onEvent: (e) => events.push(e) }),
    ).rejects.toThrow();
    expect(proxy.cuts).toBe(1);
    await expect.poll(() => admin.exists(`lock:${resource}`), { timeout: 2_000, interval: 20 }).toBe(0);
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'redis.deferred', source: 'lock', operation: 'unlock' }),
    );
    const other = newClient();
    await expect(withLock(resource, () => 'second', { redis: other, waitTimeout: '2s' })).resolves.toBe('second');
    redis.disconnect();
    other.disconnect();
  });
});

describe('withLock() whose release could not reach Redis', () => {
  it('releases the lock once Redis answers again, not when its lease ends', async () => {
    const proxy = await faultyProxy(server.port);
    const redis = clientThrough(proxy.port);
    const resource = 'lost-release';
    const events: RediswareEvent[] = [];
    const result = await withLock(
      resource,
      async () => {
        proxy.sever(300); // Redis unreachable as fn ends, for 300 ms
        await eventCount(redis, 'close', 1);
        return 'done';
      },
      { redis, ttl: lease, onEvent: (e) => events.push(e) },
    );
    expect(result).toBe('done');
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'redis.deferred', source: 'lock', operation: 'unlock' }),
    );
    expect(await admin.exists(`lock:${resource}`)).toBe(1);
    await expect.poll(() => admin.exists(`lock:${resource}`), { timeout: 2_000, interval: 20 }).toBe(0);
    const other = newClient();
    await expect(withLock(resource, () => 'next', { redis: other, waitTimeout: '2s' })).resolves.toBe('next');
    redis.disconnect();
    other.disconnect();
  });

  it('never deletes the lock of whoever took it over meanwhile', async () => {
    const proxy = await faultyProxy(server.port);
    const redis = clientThrough(proxy.port);
    const resource = 'released-late';
    const events: RediswareEvent[] = [];
    await withLock(
      resource,
      async () => {
        proxy.sever(300);
        await eventCount(redis, 'close', 1);
        // Our lease lost meanwhile: someone else holds the lock now.
        await admin.set(`lock:${resource}`, 'someone-else', 'PX', 5_000);
      },
      { redis, ttl: lease, onEvent: (e) => events.push(e) },
    );
    expect(events.map((event) => event.type)).toContain('redis.deferred');
    await expect.poll(() => healthOf(redis).down, { timeout: 2_000, interval: 20 }).toBe(false); // held release applied
    expect(await admin.get(`lock:${resource}`)).toBe('someone-else');
    await expect(withLock(resource, () => 'x', { redis, waitTimeout: '100ms' })).rejects.toBeInstanceOf(
      LockTimeoutError,
    );
    redis.disconnect();
  });
});
