// The fencing counter beside each lock: one key per resource, never another resource's lock or counter, and in the
// lock's Redis Cluster slot, so the lock and its token are taken by one script on a Cluster too.
import fc from 'fast-check';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis, type RedisClient, withLock } from '../../lib/index.js';
import { fenceKey, lockKey } from '../../lib/lock/keys.js';
import { privateCluster } from '../support/private-cluster.js';
import { silentLogger } from '../support/redis.js';

let nodes: string[];
let node: Redis;
const clients: RedisClient[] = [];
beforeAll(async () => {
  ({ nodes } = await privateCluster());
  node = new Redis(nodes[0] as string);
}, 60_000);
afterAll(async () => {
  node?.disconnect();
  for (const client of clients) client.disconnect();
});

/** Resources with the characters that decide a key's slot (`{`, `}`) and its parts (`:`, `%`). */
const resource = fc.string({ unit: fc.constantFrom('a', 'b', '{', '}', ':', '%', '3', 'A', 'é'), minLength: 1 });

/** The slot Redis Cluster puts `key` in, as a node computes it. */
const slotOf = (key: string) => node.call('CLUSTER', 'KEYSLOT', key) as Promise<number>;

describe('the fencing counter key', () => {
  it('lives in the slot of its lock, whenever a key can (the lock has a hash tag, or no "}")', async () => {
    await fc.assert(
      fc.asyncProperty(resource, async (name) => {
        const lock = lockKey(name);
        const counter = fenceKey(lock);
        if (counter === undefined) {
          expect(lock).toContain('}');
          return;
        }
        expect(await slotOf(counter)).toBe(await slotOf(lock));
      }),
      { numRuns: 300 },
    );
    expect(fenceKey(lockKey('job'))).toBeDefined();
    expect(fenceKey(lockKey('{tenant}:job'))).toBeDefined();
  });

  it("lives in the slot of its lock under a client's keyPrefix too", async () => {
    await fc.assert(
      fc.asyncProperty(resource, resource, async (prefix, name) => {
        const lock = lockKey(name);
        const counter = fenceKey(lock, prefix);
        if (counter !== undefined) expect(await slotOf(prefix + counter)).toBe(await slotOf(prefix + lock));
      }),
      { numRuns: 300 },
    );
    expect(fenceKey(lockKey('job'), 'app:')).toBeDefined();
  });

  it('is one key per resource, and never a lock key', () => {
    fc.assert(
      fc.property(resource, resource, (a, b) => {
        const [fa, fb] = [fenceKey(lockKey(a)), fenceKey(lockKey(b))];
        if (a !== b && fa !== undefined) expect(fa).not.toBe(fb);
        expect(fa).not.toBe(lockKey(b));
      }),
      { numRuns: 2_000 },
    );
  });
});

describe('withLock() on Redis Cluster', () => {
  it('gives growing fencing tokens for resources of every shape', async () => {
    const redis = createRedis({ cluster: { nodes }, logger: silentLogger });
    clients.push(redis);
    for (const name of ['job', '{tenant}:job', 'a{b', 'a}b', '{}x', '%3A']) {
      const first = await withLock(name, ({ fencingToken }) => fencingToken, { redis });
      const second = await withLock(name, ({ fencingToken }) => fencingToken, { redis });
      expect(second).toBeGreaterThan(first);
    }
  });

  it("works through a Cluster client with a keyPrefix of the app's", async () => {
    const redis = new Cluster(nodes, { keyPrefix: 'app:' });
    clients.push(redis as unknown as RedisClient);
    const first = await withLock('job', ({ fencingToken }) => fencingToken, { redis });
    const second = await withLock('job', ({ fencingToken }) => fencingToken, { redis });
    expect(second).toBeGreaterThan(first);
  });
});
