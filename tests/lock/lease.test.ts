// Locks that tell their holder: fn gets an AbortSignal that aborts when the lease is lost, and a fencing token that
// grows with each acquisition of the resource, for the app to hand to what it writes.
import type { Redis } from 'ioredis';
import { beforeAll, describe, expect, it } from 'vitest';
import { type RediswareEvent, withLock } from '../../lib/index.js';
import { privateRedisWithAdmin } from '../support/private-redis.js';

let admin: Redis;
let newClient: () => Redis;
beforeAll(async () => {
  ({ admin, client: newClient } = await privateRedisWithAdmin());
});

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The keys Redis holds now besides `except` (this file's Redis is its own). */
async function keysBesides(...except: string[]): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'COUNT', 500);
    cursor = next;
    found.push(...keys.filter((key) => !except.includes(key)));
  } while (cursor !== '0');
  return found;
}

/** Resolves with the signal's reason once it aborts, or `undefined` after `ms`. */
function abortOf(signal: AbortSignal, ms: number): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve(signal.reason);
    });
  });
}

describe('withLock() fencing tokens', () => {
  it('gives fn a fencing token that grows with each acquisition of the resource', async () => {
    const redis = newClient();
    const tokens: number[] = [];
    for (let i = 0; i < 3; i++) {
      await withLock('fenced', ({ fencingToken }) => tokens.push(fencingToken), { redis });
    }
    for (const token of tokens) expect(Number.isSafeInteger(token) && token > 0).toBe(true);
    expect(tokens[1]).toBeGreaterThan(tokens[0] as number);
    expect(tokens[2]).toBeGreaterThan(tokens[1] as number);
    redis.disconnect();
  });

  it('keeps the counter in one key beside the lock, with a TTL; a counter lost meanwhile still gives a larger token', async () => {
    const redis = newClient();
    const first = await withLock('counted', ({ fencingToken }) => fencingToken, { redis });
    const counters = await keysBesides();
    const counter = counters.find((key) => key.includes('counted')) as string;
    expect(counter).toBeDefined();
    expect(counter).not.toBe('lock:counted');
    expect(await admin.pttl(counter)).toBeGreaterThan(0);
    await admin.del(counter); // expired, evicted, or a restart without persistence
    const second = await withLock('counted', ({ fencingToken }) => fencingToken, { redis });
    expect(second).toBeGreaterThan(first);
    // A counter holding garbage is repaired, not obeyed.
    await admin.set(counter, 'not a number', 'PX', 60_000);
    const third = await withLock('counted', ({ fencingToken }) => fencingToken, { redis });
    expect(third).toBeGreaterThan(second);
    await admin.set(counter, String(2 ** 60), 'PX', 60_000);
    const fourth = await withLock('counted', ({ fencingToken }) => fencingToken, { redis });
    expect(Number.isSafeInteger(fourth)).toBe(true);
    redis.disconnect();
  });

  it('takes the lock and its token in one round trip', async () => {
    const redis = newClient();
    await withLock('one-trip', () => 'warm', { redis });
    const sent: string[] = [];
    const monitor = await admin.duplicate().monitor();
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      if (source !== 'lua') sent.push(String(args[0]).toLowerCase());
    });
    await pause(50);
    await withLock('one-trip', () => 'again', { redis });
    await pause(50);
    monitor.disconnect();
    // The acquisition (the lock and its token together) and the release: nothing else.
    expect(sent).toHaveLength(2);
    redis.disconnect();
  });
});

describe('withLock() lease', () => {
  it('tells a holder whose lease lapsed while Redis was paused: its signal aborts, lock.lost, the next holder has a larger token', async () => {
    const holder = newClient();
    const next = newClient();
    await Promise.all([holder.ping(), next.ping()]);
    const events: RediswareEvent[] = [];
    let secondToken: Promise<number> | undefined;
    let abortedWhileRunning = false;
    let seen: { signal: AbortSignal; fencingToken: number } | undefined;
    const result = await withLock(
      'lapsed',
      async (lease) => {
        seen = lease;
        lease.signal.addEventListener('abort', () => {
          abortedWhileRunning = true;
          // Another process asks for the lock now; it gets it once Redis answers again.
          secondToken = withLock('lapsed', ({ fencingToken }) => fencingToken, {
            redis: next,
            timeout: '2s',
            waitTimeout: '3s',
          });
        });
        await admin.call('CLIENT', 'PAUSE', '900', 'ALL');
        await pause(900); // fn works on while its lease (300 ms) cannot be extended
        return 'fn decides';
      },
      { redis: holder, ttl: '300ms', timeout: '250ms', onEvent: (event) => events.push(event) },
    );
    expect(result).toBe('fn decides');
    expect(abortedWhileRunning).toBe(true);
    const reason = seen?.signal.reason as Error;
    expect(reason).toBeInstanceOf(Error);
    expect(reason.message).toMatch(/lease/);
    expect(reason.message).toMatch(/lapsed/);
    expect(events.filter((event) => event.type === 'lock.lost')).toEqual([
      expect.objectContaining({ type: 'lock.lost', resource: 'lapsed', key: 'lock:lapsed' }),
    ]);
    expect(await secondToken).toBeGreaterThan(seen?.fencingToken as number);
    holder.disconnect();
    next.disconnect();
  });

  it('tells a holder whose lock someone else took over, at the next extension', async () => {
    const redis = newClient();
    const events: RediswareEvent[] = [];
    const reason = await withLock(
      'taken-over',
      async ({ signal }) => {
        await admin.set('lock:taken-over', 'another-holder', 'PX', 5_000);
        return abortOf(signal, 2_000);
      },
      { redis, ttl: '300ms', onEvent: (event) => events.push(event) },
    );
    expect(reason).toBeInstanceOf(Error);
    expect((reason as Error).message).toMatch(/no longer holds/);
    expect(events.map((event) => event.type)).toEqual(['lock.acquired', 'lock.lost']);
    expect(await admin.get('lock:taken-over')).toBe('another-holder');
    redis.disconnect();
  });

  it('never aborts the signal of a holder whose lease is extended, nor after its release', async () => {
    const redis = newClient();
    const events: RediswareEvent[] = [];
    let signal: AbortSignal | undefined;
    await withLock(
      'kept',
      async (lease) => {
        signal = lease.signal;
        await pause(500);
        expect(lease.signal.aborted).toBe(false);
      },
      { redis, ttl: '150ms', onEvent: (event) => events.push(event) },
    );
    await pause(400);
    expect(signal?.aborted).toBe(false);
    expect(events.map((event) => event.type)).toEqual(['lock.acquired']);
    redis.disconnect();
  });
});

describe('withLock() re-entrancy', () => {
  it('rejects a nested withLock on a resource its caller holds at once, instead of waiting out waitTimeout', async () => {
    const redis = newClient();
    const started = Date.now();
    const nested = await withLock(
      'reentrant',
      () => withLock('reentrant', () => 'never', { redis, waitTimeout: '5s' }).catch((error: Error) => error),
      { redis },
    );
    expect(nested).toBeInstanceOf(Error);
    expect((nested as Error).name).toBe('LockReentryError');
    expect((nested as Error).message).toMatch(/"reentrant" is already held/);
    expect(Date.now() - started).toBeLessThan(2_000);
    redis.disconnect();
  });

  it('lets a nested withLock take another resource, and a task started under the lock take it once released', async () => {
    const redis = newClient();
    let later: Promise<string> | undefined;
    const inner = await withLock(
      'outer',
      async () => {
        later = pause(100).then(() => withLock('outer', () => 'after the release', { redis, waitTimeout: '2s' }));
        return withLock('inner', () => 'inner ran', { redis });
      },
      { redis },
    );
    expect(inner).toBe('inner ran');
    expect(await later).toBe('after the release');
    redis.disconnect();
  });
});
