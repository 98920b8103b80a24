import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedWindowScript } from '../../lib/rate-limit/scripts.js';
import { RedisScript } from '../../lib/redis/script.js';
import { privateRedisWithAdmin } from '../support/private-redis.js';
import { recordingLogger, redisUrl, runScript, scriptCaller, useTestRedis, watchCommands } from '../support/redis.js';

const redis = useTestRedis('redis-client');
let client: Redis;
let watch: Awaited<ReturnType<typeof watchCommands>>;

beforeAll(async () => {
  client = redis.newClient();
  await client.ping();
  watch = await watchCommands(client);
});
afterAll(() => watch.stop());

const ignoreOutages = { failed() {}, recovered() {} };
const callerFor = scriptCaller;

const names = (commands: string[][]) => commands.map((args) => args[0].toLowerCase());
const hit = (key: string) => runScript(client, fixedWindowScript, [key], [1, 60_000, 100, 0]) as Promise<number[]>;

describe('runScript batching (standalone Redis)', () => {
  it('sends the calls of one event-loop turn as one EVALSHA and gives each call its own reply, in order', async () => {
    const key = (i: number) => `${redis.prefix}:batch:${i % 3}`;
    await hit(`${redis.prefix}:warm`); // the batched script may need loading once (NOSCRIPT → EVAL)
    await Promise.all([hit(key(0)), hit(key(1))]);
    await client.del(key(0), key(1), key(2));
    await watch.settle();
    watch.reset();

    const replies = await Promise.all(Array.from({ length: 9 }, (_, i) => hit(key(i))));
    await watch.settle();
    expect(names(watch.sent)).toEqual(['evalsha']);
    // Calls on the same key run one after another, exactly as separate calls would: 1, 2, 3 per key.
    expect(replies.map((reply) => reply[1])).toEqual([1, 1, 1, 2, 2, 2, 3, 3, 3]);
    for (const reply of replies) {
      expect(reply[0]).toBe(1);
      expect(reply[2]).toBeGreaterThan(59_000);
    }
    for (let i = 0; i < 3; i++) expect(await client.pttl(key(i))).toBeGreaterThan(59_000);
  });

  it('splits a very large turn into EVALSHAs of at most 500 calls, still counting every call once', async () => {
    const key = `${redis.prefix}:large-turn`;
    await watch.settle();
    watch.reset();
    const replies = await Promise.all(Array.from({ length: 1_200 }, () => hit(key)));
    await watch.settle();
    expect(names(watch.sent)).toEqual(['evalsha', 'evalsha', 'evalsha']);
    expect(replies.map((reply) => reply[1])).toEqual(Array.from({ length: 1_200 }, (_, i) => i + 1));
  });

  it("applies the client's keyPrefix to every key of a batch", async () => {
    const prefixed = new Redis(redisUrl(), { keyPrefix: `${redis.prefix}:kp:` });
    await prefixed.ping();
    try {
      await Promise.all(['a', 'b', 'a'].map((k) => runScript(prefixed, fixedWindowScript, [k], [1, 60_000, 100, 0])));
      expect(await client.get(`${redis.prefix}:kp:a`)).toBe('2');
      expect(await client.get(`${redis.prefix}:kp:b`)).toBe('1');
      expect(await client.exists('a', 'b')).toBe(0);
    } finally {
      await prefixed.quit();
    }
  });

  it('sends a single call as the plain script', async () => {
    await watch.settle();
    watch.reset();
    await hit(`${redis.prefix}:single`);
    await watch.settle();
    expect(watch.sent).toHaveLength(1);
    expect(watch.sent[0][0].toLowerCase()).toBe('evalsha');
    expect(watch.sent[0][1]).toBe(fixedWindowScript.sha);
  });

  it("fails only the call whose key errors (WRONGTYPE); the batch's other calls succeed", async () => {
    const wrong = `${redis.prefix}:a-list`;
    await client.rpush(wrong, 'x');
    await client.pexpire(wrong, 60_000);
    // A plain INCR: the rate-limit scripts repair such a key instead of failing on it.
    const increment = new RedisScript('increment', "return redis.call('INCR', KEYS[1])", { keys: 1 });
    const incr = (key: string) => runScript(client, increment, [key], []);
    const results = await Promise.allSettled([incr(`${redis.prefix}:ok-1`), incr(wrong), incr(`${redis.prefix}:ok-2`)]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/WRONGTYPE/);
    expect(await client.get(`${redis.prefix}:ok-2`)).toBe('1');
  });

  it('runs a batch exactly once after SCRIPT FLUSH (NOSCRIPT → EVAL of the batched script)', async () => {
    // A server of its own: SCRIPT FLUSH on the shared one would change what other files' tests see.
    const { admin, client: privateClient } = await privateRedisWithAdmin();
    const flushed = privateClient();
    await flushed.ping();
    const hitFlushed = () => runScript(flushed, fixedWindowScript, ['flushed'], [1, 60_000, 100, 0]);
    await hitFlushed();
    await admin.script('FLUSH');
    await Promise.all(Array.from({ length: 5 }, hitFlushed));
    expect(await admin.get('flushed')).toBe('6');
    flushed.disconnect();
  });

  it('keeps a nil reply (a missing key) in its place between non-nil ones', async () => {
    const getText = new RedisScript('get-text', "return redis.call('GET', KEYS[1])", { keys: 1 });
    const present = `${redis.prefix}:present`;
    await client.set(present, 'ada', 'PX', 60_000);
    const get = (key: string) => runScript(client, getText, [key], []);
    for (let round = 0; round < 2; round++) {
      const replies = await Promise.all([
        get(`${redis.prefix}:absent-1`),
        get(present),
        get(`${redis.prefix}:absent-2`),
      ]);
      expect(replies).toEqual([null, 'ada', null]);
    }
  });

  it('batches calls that pass different numbers of arguments, each seeing exactly its own', async () => {
    const describeCall = new RedisScript(
      'describe-call',
      "return KEYS[1] .. ':' .. #ARGV .. ':' .. table.concat(ARGV, ',')",
      {
        keys: 1,
      },
    );
    await describeCall.evalSource(client, ['warm'], []);
    await watch.settle();
    watch.reset();
    const calls: [string, string[]][] = [
      ['k1', []],
      ['k2', ['a']],
      ['k3', ['b', 'c', 'd']],
      ['k4', ['', '']],
    ];
    // Twice: the first batch may load the batched script (NOSCRIPT → EVAL); the second runs it by its SHA.
    for (let i = 0; i < 2; i++) {
      const replies = await Promise.all(calls.map(([key, args]) => runScript(client, describeCall, [key], args)));
      expect(replies).toEqual(['k1:0:', 'k2:1:a', 'k3:3:b,c,d', 'k4:2:,']);
    }
    await watch.settle();
    expect(names(watch.sent).filter((n) => n !== 'eval')).toEqual(['evalsha', 'evalsha']);
  });

  it('sends an arguments array shared by every call of a batch once, and each call still sees all of it', async () => {
    const describeCall = new RedisScript('describe-shared', "return KEYS[1] .. ':' .. table.concat(ARGV, ',')", {
      keys: 1,
    });
    const shared = ['x', '', 'y z'];
    const keys = ['s1', 's2', 's3', 's4'];
    const run = (args: (key: string) => string[]) =>
      Promise.all(keys.map((key) => runScript(client, describeCall, [key], args(key))));
    const expected = keys.map((key) => `${key}:x,,y z`);
    await run(() => shared); // the first batch may load the batched script (NOSCRIPT → EVAL)
    await watch.settle();
    watch.reset();
    expect(await run(() => shared)).toEqual(expected);
    // Equal contents in different arrays are not assumed shared: each call sends its own.
    expect(await run(() => [...shared])).toEqual(expected);
    await watch.settle();
    expect(names(watch.sent)).toEqual(['evalsha', 'evalsha']);
    // EVALSHA sha numkeys s1..s4, then the arguments: once after the marker, or each after its count.
    expect(watch.sent[0].slice(3 + keys.length)).toEqual(['*', ...shared]);
    expect(watch.sent[1].slice(3 + keys.length)).toEqual(keys.flatMap(() => ['3', ...shared]));
  });

  it('keeps binary replies byte for byte in a batch of a binary script', async () => {
    const getBytes = new RedisScript('get-bytes', "return redis.call('GET', KEYS[1])", { keys: 1, binary: true });
    const values = [Buffer.from([0, 255, 254, 10, 13]), Buffer.from([0xc3, 0x28]), Buffer.alloc(0)];
    const keys = values.map((_, i) => `${redis.prefix}:bytes:${i}`);
    for (const [i, value] of values.entries()) await client.set(keys[i], value, 'PX', 60_000);
    for (let round = 0; round < 2; round++) {
      const replies = await Promise.all(
        [...keys, `${redis.prefix}:bytes:missing`].map((key) => runScript(client, getBytes, [key], [])),
      );
      expect(replies).toEqual([...values, null]);
    }
  });

  it('does not batch a script without a shape', async () => {
    const echo = new RedisScript('echo-key', 'return KEYS[1]');
    expect(echo.batched).toBeUndefined();
    await watch.settle();
    watch.reset();
    const keys = ['a', 'b', 'c'].map((k) => `${redis.prefix}:${k}`);
    expect(await Promise.all(keys.map((k) => runScript(client, echo, [k], [])))).toEqual(keys);
    await watch.settle();
    expect(names(watch.sent).filter((n) => n !== 'eval')).toEqual(['evalsha', 'evalsha', 'evalsha']);
  });
});

describe('boundedCaller deadlines', () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it('fails each slow call at its own deadline, lets fast calls between them succeed, and reports both', async () => {
    const events: string[] = [];
    const call = callerFor(
      client,
      {
        failed: (error) => events.push(`failed: ${(error as Error).name}`),
        recovered: () => events.push('recovered'),
      },
      100,
    );
    const started = Date.now();
    const outcome = (delay: number) => {
      const sent = Date.now();
      return call((redis) => sleep(delay).then(() => redis.ping())).then(
        (reply) => ({ reply, after: Date.now() - sent }),
        (error: Error) => ({ reply: error.name, after: Date.now() - sent }),
      );
    };
    const first = outcome(400);
    await sleep(30);
    const second = outcome(5);
    await sleep(30);
    const third = outcome(400);
    const results = await Promise.all([first, second, third]);
    expect(results.map((r) => r.reply)).toEqual(['RedisTimeoutError', 'PONG', 'RedisTimeoutError']);
    for (const timedOut of [results[0], results[2]]) {
      expect(timedOut.after).toBeGreaterThanOrEqual(95);
      expect(timedOut.after).toBeLessThan(250);
    }
    expect(Date.now() - started).toBeLessThan(350); // nobody waited for the 400 ms calls
    expect(events).toEqual(['recovered', 'failed: RedisTimeoutError', 'failed: RedisTimeoutError']);
    await sleep(100); // the slow calls still send their PINGs at 400 ms: let them go before the next test watches
  });
});

describe('boundedCaller script calls (callbacks sharing one batch and one deadline per turn)', () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  type Outcome = { error?: string; reply?: unknown; after: number };

  /** Makes `count` calls in this turn and resolves with every callback invocation once `waitMs` has passed. */
  function callsInOneTurn(call: ReturnType<typeof scriptCaller>, keys: string[], waitMs: number) {
    const outcomes: Outcome[][] = keys.map(() => []);
    const sent = Date.now();
    keys.forEach((key, i) => {
      call.script(fixedWindowScript, [key], [1, 60_000, 100, 0], (error, reply) => {
        outcomes[i].push({ error: error?.name, reply, after: Date.now() - sent });
      });
    });
    return sleep(waitMs).then(() => outcomes);
  }

  it('answers each call of a turn through its own callback, from one EVALSHA, in order', async () => {
    const call = callerFor(client, ignoreOutages, 1_000);
    const key = `${redis.prefix}:callback`;
    await callsInOneTurn(call, [key, key], 200); // loads the batched script if needed
    await client.del(key);
    await watch.settle();
    watch.reset();
    const outcomes = await callsInOneTurn(call, [key, key, key], 200);
    await watch.settle();
    expect(names(watch.sent)).toEqual(['evalsha']);
    expect(outcomes.map((calls) => calls.length)).toEqual([1, 1, 1]);
    expect(outcomes.map(([outcome]) => (outcome.reply as number[])[1])).toEqual([1, 2, 3]);
    expect(await client.pttl(key)).toBeGreaterThan(59_000);
  });

  it('fails every call of a stalled turn at its deadline, each turn on its own, and ignores the late replies', async () => {
    const { admin, client: privateClient } = await privateRedisWithAdmin();
    const stalled = privateClient();
    await stalled.ping();
    const events: string[] = [];
    const call = callerFor(
      stalled,
      {
        failed: (error) => events.push((error as Error).name),
        recovered: () => events.push('recovered'),
      },
      100,
    );
    await admin.call('CLIENT', 'PAUSE', '500', 'WRITE');
    const firstTurn = callsInOneTurn(call, ['a', 'b', 'a'], 800);
    await sleep(50);
    const secondTurn = callsInOneTurn(call, ['c', 'd'], 750);
    const outcomes = [...(await firstTurn), ...(await secondTurn)];
    // Exactly one callback per call, a timeout, within the budget measured from the call's own turn:
    // the replies that arrived after the pause ended were dropped.
    for (const calls of outcomes) {
      expect(calls).toHaveLength(1);
      expect(calls[0].error).toBe('RedisTimeoutError');
      expect(calls[0].after).toBeGreaterThanOrEqual(95);
      expect(calls[0].after).toBeLessThan(250);
    }
    expect(events).toEqual(Array(5).fill('RedisTimeoutError'));
    stalled.disconnect();
  });
});

describe('a batch the server refuses as a whole', () => {
  it('fails its calls, without re-sending them one by one or giving up batching, when the server is busy', async () => {
    const { admin, server } = await privateRedisWithAdmin();
    const busy = new Redis(server.url);
    const client = new Redis(server.url);
    const logger = recordingLogger();
    const call = scriptCaller(client, undefined, 5_000, logger);
    const hitAll = (keys: string[]) =>
      Promise.allSettled(keys.map((key) => call.run(fixedWindowScript, [key], [1, 60_000, 100, 0])));
    await hitAll(['a', 'b']); // loads the batched script
    const rejectedEvalshas = async () =>
      Number(/cmdstat_evalsha:.*rejected_calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0);
    const rejectedBefore = await rejectedEvalshas();
    const watch = await watchCommands(client, server.url);
    try {
      // A script that runs past busy-reply-threshold makes Redis answer everything else BUSY until it is killed.
      await admin.config('SET', 'busy-reply-threshold', '10');
      busy.eval('while true do end', 0).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 50));
      const refused = await hitAll(['a', 'b', 'c']);
      expect(refused.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
      expect(String((refused[0] as PromiseRejectedResult).reason)).toMatch(/^ReplyError: BUSY/);
      await admin.script('KILL');
      while ((await admin.ping().catch(() => 'BUSY')) !== 'PONG') await new Promise((r) => setTimeout(r, 5));
      // Redis refused exactly one EVALSHA (the batch): nothing was re-sent one by one.
      expect((await rejectedEvalshas()) - rejectedBefore).toBe(1);
      const counted = await hitAll(['a', 'b', 'c']);
      expect(counted.map((r) => (r as PromiseFulfilledResult<number[]>).value[1])).toEqual([2, 2, 1]);
      await watch.settle();
      // And the next turn is one batch of the three calls again.
      // (Redis 7.0 drops its script cache when a script is killed: EVAL may follow the EVALSHA.)
      const scripts = watch.sent.filter((args) => args[0].toLowerCase() === 'evalsha');
      expect(scripts.map((args) => args[2])).toEqual(['3']);
      expect(logger.warnings).toEqual([]);
    } finally {
      watch.stop();
      busy.disconnect();
      client.disconnect();
    }
  });
});
