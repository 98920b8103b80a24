import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSessionScript } from '../../lib/session/scripts.js';
import { runScript, useTestRedis, watchCommands } from '../support/redis.js';

const redis = useTestRedis('session-scripts');
let client: Redis;
let watch: Awaited<ReturnType<typeof watchCommands>>;

beforeAll(async () => {
  client = redis.newClient();
  await client.ping();
  watch = await watchCommands(client);
});
afterAll(() => watch.stop());

const idle = 60_000;
const absolute = 3_600_000;

/** A stored session (times in ms, Redis clock) with a short TTL, so an extension shows. */
async function storeSession(name: string, times: { created?: number; seen?: number } = {}): Promise<string> {
  const key = `${redis.prefix}:${name}`;
  const [seconds] = await client.time();
  const now = Number(seconds) * 1000;
  await client.hset(key, '_c', times.created ?? now, '_s', times.seen ?? now, 'd:name', `"${name}"`);
  await client.pexpire(key, 5_000);
  return key;
}

describe('the session load script, batched by hand', () => {
  it('loads the sessions of one turn in one EVALSHA, each with its own arguments and timeouts; a key of another type is none', async () => {
    const rolling = [idle, absolute, 1];
    const still = [idle, absolute, 0];
    const load = (key: string, args: number[]) => runScript(client, loadSessionScript, [key], args);
    await Promise.all([load('warm-1', rolling), load('warm-2', still)]); // loads the batched script if needed
    const extended = await storeSession('extended');
    const untouched = await storeSession('untouched');
    const pastAbsolute = await storeSession('past-absolute', { created: 1 });
    const wrongType = `${redis.prefix}:not-a-hash`;
    await client.set(wrongType, 'x', 'PX', 60_000);
    await watch.settle();
    watch.reset();

    const replies = await Promise.allSettled([
      load(extended, rolling),
      load(untouched, still),
      load(pastAbsolute, rolling),
      load(wrongType, rolling),
      load(`${redis.prefix}:missing`, still),
    ]);
    await watch.settle();
    expect(watch.sent.map((args) => args[0].toLowerCase())).toEqual(['evalsha']);
    expect(replies.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual([
      ['', 'name', '"extended"'],
      ['', 'name', '"untouched"'],
      0,
      0,
      0,
    ]);
    expect(await client.pttl(extended)).toBeGreaterThan(50_000);
    expect(await client.pttl(untouched)).toBeLessThanOrEqual(5_000);
    expect(await client.exists(pastAbsolute)).toBe(0);
    expect(await client.exists(wrongType)).toBe(0); // not a session of ours: deleted, never obeyed
  });

  it('sends the arguments once when every call of the turn shares them, with the same results', async () => {
    const shared = [idle, absolute, 1];
    const keys = await Promise.all(['shared-1', 'shared-2', 'shared-3'].map((name) => storeSession(name)));
    await watch.settle();
    watch.reset();
    const replies = await Promise.all(keys.map((key) => runScript(client, loadSessionScript, [key], shared)));
    await watch.settle();
    expect(watch.sent.map((args) => args[0].toLowerCase())).toEqual(['evalsha']);
    expect(watch.sent[0].slice(3 + keys.length)).toEqual(['*', ...shared.map(String)]);
    expect(replies).toEqual(['1', '2', '3'].map((n) => ['', 'name', `"shared-${n}"`]));
    for (const key of keys) expect(await client.pttl(key)).toBeGreaterThan(50_000);
  });

  it('gives a session with a lifetime of its own (req.session.cookie.maxAge) that lifetime as its idle timeout', async () => {
    const key = await storeSession('remembered');
    await client.hset(key, '_m', 30 * 86_400_000);
    const [loaded] = await Promise.all([runScript(client, loadSessionScript, [key], [idle, absolute, 1])]);
    expect(loaded).toEqual([String(30 * 86_400_000), 'name', '"remembered"']);
    // Capped by the time left before the absolute timeout (an hour here), not by the configured idle minute.
    expect(await client.pttl(key)).toBeGreaterThan(idle);
    expect(await client.pttl(key)).toBeLessThanOrEqual(absolute);
  });
});
