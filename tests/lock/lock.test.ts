import { describe, expect, it } from 'vitest';
import { LockTimeoutError, withLock } from '../../lib/index.js';
import { useTestRedis } from '../support/redis.js';

const redis = useTestRedis('lock');
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('withLock()', () => {
  it('runs fn while holding lock:<resource>, resolves to its result and releases the lock', async () => {
    const resource = `${redis.prefix}:job`;
    const result = await withLock(
      resource,
      async () => {
        expect(await redis.client().exists(`lock:${resource.replaceAll(':', '%3A')}`)).toBe(1);
        return 'done';
      },
      { redis: redis.client() },
    );
    expect(result).toBe('done');
    expect(await redis.client().exists(`lock:${resource.replaceAll(':', '%3A')}`)).toBe(0);
  });

  it('never lets two holders overlap', async () => {
    const resource = `${redis.prefix}:exclusive`;
    let inside = 0;
    let maxInside = 0;
    await Promise.all(
      Array.from({ length: 5 }, () =>
        withLock(
          resource,
          async () => {
            inside++;
            maxInside = Math.max(maxInside, inside);
            await pause(20);
            inside--;
          },
          { redis: redis.newClient() },
        ),
      ),
    );
    expect(maxInside).toBe(1);
  });

  it('rejects with LockTimeoutError after waitTimeout, without running fn', async () => {
    const resource = `${redis.prefix}:busy`;
    await redis.client().set(`lock:${resource.replaceAll(':', '%3A')}`, 'someone-else', 'PX', 5_000);
    let ran = false;
    const attempt = withLock(
      resource,
      () => {
        ran = true;
      },
      { redis: redis.client(), waitTimeout: '150ms' },
    );
    await expect(attempt).rejects.toBeInstanceOf(LockTimeoutError);
    await expect(attempt).rejects.toThrow(/waitTimeout/);
    expect(ran).toBe(false);
  });

  it('extends the lease while fn runs longer than ttl, and releases when fn throws', async () => {
    const resource = `${redis.prefix}:long`;
    const key = `lock:${resource.replaceAll(':', '%3A')}`;
    await expect(
      withLock(
        resource,
        async () => {
          await pause(450);
          expect(await redis.client().exists(key)).toBe(1);
          throw new Error('fn failed');
        },
        { redis: redis.client(), ttl: '150ms' },
      ),
    ).rejects.toThrow('fn failed');
    expect(await redis.client().exists(key)).toBe(0);
  });

  it('never releases a lock someone else holds now', async () => {
    const resource = `${redis.prefix}:stolen`;
    const key = `lock:${resource.replaceAll(':', '%3A')}`;
    await withLock(
      resource,
      async () => {
        // Our lease is lost and someone else takes the lock.
        await redis.client().set(key, 'new-owner', 'PX', 5_000);
      },
      { redis: redis.client() },
    );
    expect(await redis.client().get(key)).toBe('new-owner');
  });

  it('rejects invalid arguments and options', async () => {
    await expect(withLock('', () => 1)).rejects.toThrow(TypeError);
    await expect(withLock('x', () => 1, { ttl: 'forever' })).rejects.toThrow(/withLock: option "ttl"/);
  });
});
