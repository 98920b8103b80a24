// A Lua script, and the one way it reaches Redis: EVALSHA, with EVAL when the server has not cached it.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type CommandFactory, commandFactory, isCluster, neverResent, type RedisClient } from './client.js';

/** How a script call ends: with `error`, or with `reply`. Callbacks must not throw. */
export type ScriptCallback = (error: Error | undefined, reply?: unknown) => void;

/** A NOSCRIPT reply: the server has not cached the script, so it did not run. */
function isNoScript(error: unknown): boolean {
  return (error as Error)?.message?.startsWith('NOSCRIPT') === true;
}

/** The Buffer-reply variants of EVALSHA / EVAL that ioredis defines at run time but does not declare. */
interface ScriptingCommands {
  evalsha(...args: (string | number)[]): Promise<unknown>;
  eval(...args: (string | number)[]): Promise<unknown>;
  evalshaBuffer(...args: (string | number)[]): Promise<unknown>;
  evalBuffer(...args: (string | number)[]): Promise<unknown>;
}

/** How a script is called and answered. */
export interface ScriptOptions {
  /** The number of keys every call takes: given, calls can be batched (see {@link RedisScript.batched}). */
  keys?: number;
  /** Bulk replies arrive as Buffers (binary-safe) instead of strings. */
  binary?: boolean;
  /**
   * The batched form, written by hand (see {@link forEachBatchedCall}) for a script hot enough that running its
   * body once per call under `pcall` costs Redis noticeably more; by default it is derived from the source.
   */
  batchedSource?: string;
}

/** Commands of a standalone client built the way its own ioredis builds them (see `commandFactory`). */
const factories = new WeakMap<Redis, CommandFactory | null>();

function factoryFor(client: Redis): CommandFactory | null {
  let factory = factories.get(client);
  if (factory === undefined) {
    factory = commandFactory(client) ?? null;
    factories.set(client, factory);
  }
  return factory;
}

/** A Lua script sent with EVALSHA, falling back to EVAL when the server has not cached it (restart, SCRIPT FLUSH). */
export class RedisScript {
  readonly sha: string;
  readonly binary: boolean;
  /**
   * For a script with a fixed number of keys: the same script applied to many (keys, args) groups in one EVALSHA,
   * returning the replies in order (an error reply in place of a group that failed). See `batcher.ts`.
   */
  readonly batched?: RedisScript;

  constructor(
    readonly name: string,
    readonly source: string,
    options: ScriptOptions = {},
  ) {
    this.sha = createHash('sha1').update(source).digest('hex');
    this.binary = options.binary === true;
    if (options.keys !== undefined) {
      const batched = options.batchedSource ?? batchedSource(source, options.keys);
      this.batched = new RedisScript(`${name} (batched)`, batched, { binary: this.binary });
    }
  }

  /**
   * Runs the script once and calls `done` once: one round trip normally, two after a NOSCRIPT reply (which means
   * the script did not run, so the EVAL fallback never applies it twice). On a standalone client the command is
   * handed straight to the connection, built by the client's own ioredis; a Cluster gets it through its public
   * methods, which route it to the node of its keys.
   */
  send(client: RedisClient, keys: readonly string[], args: readonly (string | number)[], done: ScriptCallback): void {
    let reply: Promise<unknown>;
    const factory = isCluster(client) ? null : factoryFor(client as Redis);
    if (factory) {
      const command = factory('evalsha', [this.sha, keys.length, ...keys, ...args], this.binary);
      neverResent(client as Redis, command);
      (client as Redis).sendCommand(command as never);
      reply = command.promise;
    } else {
      const scripting = client as unknown as ScriptingCommands;
      const evalsha = this.binary ? scripting.evalshaBuffer : scripting.evalsha;
      reply = evalsha.call(client, this.sha, keys.length, ...keys, ...args);
    }
    reply.then(
      (value) => done(undefined, value),
      (error: Error) => {
        if (!isNoScript(error)) return done(error);
        this.evalSource(client, keys, args).then(
          (value) => done(undefined, value),
          (evalError: Error) => done(evalError),
        );
      },
    );
  }

  /** {@link send} as a Promise. */
  run(client: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return new Promise((resolve, reject) =>
      this.send(client, keys, args, (error, reply) => (error ? reject(error) : resolve(reply))),
    );
  }

  /**
   * Sends the whole script (EVAL), which also caches it on the server: like EVALSHA, built by the client's own
   * ioredis and never re-sent after a dropped connection.
   */
  evalSource(client: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    const factory = isCluster(client) ? null : factoryFor(client as Redis);
    if (factory) {
      const command = factory('eval', [this.source, keys.length, ...keys, ...args], this.binary);
      neverResent(client as Redis, command);
      (client as Redis).sendCommand(command as never);
      return command.promise;
    }
    const scripting = client as unknown as ScriptingCommands;
    const evalScript = this.binary ? scripting.evalBuffer : scripting.eval;
    return evalScript.call(client, this.source, keys.length, ...keys, ...args);
  }
}

/** Lua that sets `now` to Redis's clock in milliseconds (never the app server's: their clocks may differ). */
export const redisNow = `local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)`;

/**
 * Lua (after {@link redisNow}) that adds `member` to the sorted set `key`, scored by when it expires (`ttl` ms from
 * now), trims the members that have expired, and keeps the set as long as its newest member: an index that never
 * outlives what it lists, nor loses a live member. Each argument is a Lua expression.
 */
export const addToExpiringSet = (key: string, member: string, ttl: string): string =>
  `redis.call('ZADD', ${key}, now + ${ttl}, ${member})
redis.call('ZREMRANGEBYSCORE', ${key}, '-inf', now)
if redis.call('PTTL', ${key}) < ${ttl} then redis.call('PEXPIRE', ${key}, ${ttl}) end`;

/** First ARGV of a batch whose groups all take the same arguments, which then follow it once. */
export const sharedArgsMarker = '*';

/**
 * Lua that sets `replies[i + 1]` to `reply` for each call `i` (from 0) of a batched EVALSHA and returns `replies`.
 * ARGV holds, per call, its argument count and then its arguments; or, when every call takes the same arguments,
 * the marker and those arguments once. In `reply`, the call's arguments are `ARGV[base + 1]` onwards, `count` of
 * them, and its keys `KEYS[i * keys + 1]` onwards.
 */
export function forEachBatchedCall(keys: number, reply: string): string {
  return `local replies, position, shared = {}, 1, ARGV[1] == '${sharedArgsMarker}'
for i = 0, #KEYS / ${keys} - 1 do
  local base, count = 1, #ARGV - 1
  if not shared then
    base, count = position, tonumber(ARGV[position])
    position = position + count + 1
  end
  replies[i + 1] = ${reply}
end
return replies`;
}

/**
 * The batched form of a script: its body becomes a function of (KEYS, ARGV), so it reads its own call's keys and
 * arguments unchanged, and is called once per call under pcall, so one call's error (WRONGTYPE, say) is that
 * call's reply alone. Calls run one after another inside one atomic script, so two calls on the same key see each
 * other's effect exactly as two separate scripts would. Arguments shared by every call are copied into a table
 * once; the body must not change its KEYS or ARGV.
 */
function batchedSource(source: string, keys: number): string {
  const callKeys = Array.from({ length: keys }, (_, j) => `KEYS[i * ${keys} + ${j + 1}]`).join(', ');
  return `local function script(KEYS, ARGV)
${source}
end
local sharedArgs = {}
if ARGV[1] == '${sharedArgsMarker}' then for j = 2, #ARGV do sharedArgs[j - 1] = ARGV[j] end end
local function run(keys, base, count, shared)
  local args = sharedArgs
  if not shared then
    args = {}
    for j = 1, count do args[j] = ARGV[base + j] end
  end
  local ok, reply = pcall(script, keys, args)
  if not ok then
    if type(reply) ~= 'table' then reply = redis.error_reply(tostring(reply)) end
  elseif reply == nil then
    reply = false
  end
  return reply
end
${forEachBatchedCall(keys, `run({${callKeys}}, base, count, shared)`)}
`;
}
