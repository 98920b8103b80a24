import { createHash } from 'node:crypto';
import { type Cluster, Command, type Redis } from 'ioredis';
import { RedisTimeoutError, RedisUnavailableError } from './errors.js';

/**
 * The client every middleware accepts: an ioredis `Redis` or `Cluster`.
 * Only commands both share are used, and every script passes its keys as KEYS[] so Cluster can route it.
 */
export type RedisClient = Redis | Cluster;

/** Whether `client` is an ioredis `Cluster` (whose pipelines must stay within one slot). */
export function isCluster(client: RedisClient): boolean {
  return (client as { isCluster?: boolean }).isCluster === true;
}

/** A NOSCRIPT reply: the server has not cached the script, so it did not run. */
function isNoScript(error: unknown): boolean {
  return (error as Error)?.message?.startsWith('NOSCRIPT') === true;
}

/** The Buffer-reply variants of EVALSHA / EVAL that ioredis defines at run time. */
interface BufferScripting {
  evalshaBuffer(...args: (string | number)[]): Promise<unknown>;
  evalBuffer(...args: (string | number)[]): Promise<unknown>;
}

/** How a script is called and answered. */
export interface ScriptOptions {
  /** The number of keys every call takes: given, calls can be batched (see {@link RedisScript.batched}). */
  keys?: number;
  /** Bulk replies arrive as Buffers (binary-safe) instead of strings. */
  binary?: boolean;
}

/** A Lua script sent with EVALSHA, falling back to EVAL when the server has not cached it (restart, SCRIPT FLUSH). */
export class RedisScript {
  readonly sha: string;
  readonly binary: boolean;
  /**
   * For a script with a fixed number of keys: the same script applied to many (keys, args) groups in one EVALSHA,
   * returning the replies in order (an error reply in place of a group that failed). Each group's arguments are
   * sent after their count, so calls may differ in how many arguments they pass.
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
      this.batched = new RedisScript(`${name} (batched)`, batchedSource(source, options.keys), { binary: this.binary });
    }
  }

  /**
   * Runs the script: one round trip normally, two after a NOSCRIPT reply.
   * A NOSCRIPT reply means the script did not run, so the EVAL fallback never applies it twice.
   */
  run(client: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    // ioredis has evalshaBuffer/evalBuffer at run time but does not declare them; `callBuffer` would do, but
    // combined with auto-pipelining it drops the command name (the SHA is sent as the command).
    const evalsha = this.binary ? (client as unknown as BufferScripting).evalshaBuffer : client.evalsha;
    return this.evalOnNoScript(evalsha.call(client, this.sha, keys.length, ...keys, ...args), client, keys, args);
  }

  /**
   * Like {@link run}, but handed straight to the connection (`sendCommand`), around ioredis' auto-pipelining:
   * for callers that already gather a turn's calls themselves, where a pipeline object would be built for nothing.
   */
  send(client: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    const command = new Command('evalsha', [this.sha, keys.length, ...keys, ...args], {
      keyPrefix: client.options.keyPrefix,
      replyEncoding: this.binary ? null : 'utf8',
    });
    client.sendCommand(command);
    return this.evalOnNoScript(command.promise, client, keys, args);
  }

  /** Sends the whole script (EVAL), which also caches it on the server. */
  evalSource(client: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    const evalScript = this.binary ? (client as unknown as BufferScripting).evalBuffer : client.eval;
    return evalScript.call(client, this.source, keys.length, ...keys, ...args);
  }

  private evalOnNoScript(
    reply: Promise<unknown>,
    client: RedisClient,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    return reply.catch((error: Error) => {
      if (!isNoScript(error)) throw error;
      return this.evalSource(client, keys, args);
    });
  }
}

/**
 * The batched form of a script: its body becomes a function of (KEYS, ARGV), so it reads its own group's
 * keys and arguments unchanged, and is called once per group under pcall, so one group's error (WRONGTYPE, say)
 * is that group's reply alone. Groups run one after another inside one atomic script, so two groups on the same
 * key see each other's effect exactly as two separate calls would. ARGV holds, per group, its argument count
 * and then its arguments.
 */
function batchedSource(source: string, keys: number): string {
  const groupKeys = Array.from({ length: keys }, (_, j) => `KEYS[i * ${keys} + ${j + 1}]`).join(', ');
  return `local function script(KEYS, ARGV)
${source}
end
local replies, position = {}, 1
for i = 0, #KEYS / ${keys} - 1 do
  local count, args = tonumber(ARGV[position]), {}
  for j = 1, count do args[j] = ARGV[position + j] end
  position = position + count + 1
  local ok, reply = pcall(script, {${groupKeys}}, args)
  if not ok then
    if type(reply) ~= 'table' then reply = redis.error_reply(tostring(reply)) end
  elseif reply == nil then
    reply = false
  end
  replies[i + 1] = reply
end
return replies
`;
}

interface QueuedScript {
  script: RedisScript;
  keys: readonly string[];
  args: readonly (string | number)[];
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** Calls per batched EVALSHA at most, so no single script holds Redis for long. */
const maxBatch = 500;

/**
 * Sends the script calls made during one turn of the event loop together: the calls of a batchable script
 * (see {@link RedisScript.batched}) as one EVALSHA for all of them, anything else as separate commands in the
 * same turn. So the requests Node parsed in one turn cost one command, one socket write and one reply, instead of
 * one each. Standalone Redis only: a Cluster routes each key to its own node.
 */
class ScriptBatcher {
  private queue: QueuedScript[] = [];
  private scheduled = false;

  constructor(private readonly client: Redis) {}

  run(script: RedisScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queue.push({ script, keys, args, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flush);
      }
    });
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const queued = this.queue;
    this.queue = [];
    const groups = new Map<RedisScript, QueuedScript[]>();
    for (const call of queued) {
      const group = groups.get(call.script);
      if (group) group.push(call);
      else groups.set(call.script, [call]);
    }
    // Several commands (different scripts, or a batch over maxBatch) still leave in one socket write.
    const stream = this.client.stream;
    stream?.cork();
    try {
      for (const [script, calls] of groups) {
        if (calls.length === 1 || !script.batched) {
          for (const call of calls) script.send(this.client, call.keys, call.args).then(call.resolve, call.reject);
        } else {
          for (let from = 0; from < calls.length; from += maxBatch) {
            this.sendBatch(script.batched, calls.slice(from, from + maxBatch));
          }
        }
      }
    } finally {
      stream?.uncork();
    }
  };

  private sendBatch(batched: RedisScript, calls: QueuedScript[]): void {
    const keys: string[] = [];
    const args: (string | number)[] = [];
    for (const call of calls) {
      for (const key of call.keys) keys.push(key);
      args.push(call.args.length);
      for (const arg of call.args) args.push(arg);
    }
    batched.send(this.client, keys, args).then(
      (replies) => {
        calls.forEach((call, i) => {
          const reply = (replies as unknown[])[i];
          if (reply instanceof Error) call.reject(reply);
          else call.resolve(reply);
        });
      },
      (error) => {
        for (const call of calls) call.reject(error);
      },
    );
  }
}

const batchers = new WeakMap<RedisClient, ScriptBatcher>();

/**
 * Runs a hot-path script: on a standalone Redis batched with the other calls of this event-loop turn
 * (see {@link ScriptBatcher}); on a Cluster through ioredis' per-node auto-pipelining.
 */
export function runScript(
  client: RedisClient,
  script: RedisScript,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  if (isCluster(client)) return script.run(client, keys, args);
  let batcher = batchers.get(client);
  if (!batcher) {
    batcher = new ScriptBatcher(client as Redis);
    batchers.set(client, batcher);
  }
  return batcher.run(script, keys, args);
}

const nextReadyByClient = new WeakMap<RedisClient, Promise<void>>();

/** Resolves on the client's next `ready` event; one shared promise (and listener) per client. */
function nextReady(client: RedisClient): Promise<void> {
  let ready = nextReadyByClient.get(client);
  if (!ready) {
    ready = new Promise<void>((resolve) => {
      client.once('ready', () => {
        nextReadyByClient.delete(client);
        resolve();
      });
    });
    nextReadyByClient.set(client, ready);
    // A lazyConnect client only connects on its first command, which we withhold until it is ready.
    if (client.status === 'wait') client.connect().catch(() => {});
  }
  return ready;
}

/**
 * Settles with `work`, or rejects with `onTimeout()` if `work` has not settled within `timeoutMs`;
 * `onSettled` sees the outcome first (for outage reporting) without another promise in between.
 * A timer per call is cheaper than it looks: Node keeps one list per duration, and a cancelled timer dies young,
 * whereas any shared structure that keeps settled calls until their deadline keeps them past young-generation GC.
 */
function withDeadline<T>(
  work: Promise<T>,
  timeoutMs: number,
  onTimeout: () => Error,
  onSettled?: (error: unknown) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      const error = onTimeout();
      onSettled?.(error);
      reject(error);
    }, timeoutMs);
    // A reply after the deadline changes nothing: the caller has moved on, and the outage was already reported.
    work.then(
      (value) => {
        if (timedOut) return;
        clearTimeout(timer);
        onSettled?.(undefined);
        resolve(value);
      },
      (error) => {
        if (timedOut) return;
        clearTimeout(timer);
        onSettled?.(error);
        reject(error);
      },
    );
  });
}

/**
 * Runs `command` against `client` within `timeoutMs`, or rejects with
 * {@link RedisUnavailableError} / {@link RedisTimeoutError}.
 *
 * The command is only sent once the client is `ready`: while ioredis is (re)connecting we wait for it
 * within the same budget instead of queueing, so nothing piles up in its offline queue during an
 * outage and no command whose caller already gave up is sent later.
 */
export function boundedCall<T>(
  client: RedisClient,
  timeoutMs: number,
  command: () => Promise<T>,
  onSettled?: (error: unknown) => void,
): Promise<T> {
  const timedOut = () => new RedisTimeoutError(timeoutMs);
  if (client.status === 'ready') return withDeadline(command(), timeoutMs, timedOut, onSettled);
  if (client.status === 'end') {
    const error = new RedisUnavailableError('Redis connection is closed');
    onSettled?.(error);
    return Promise.reject(error);
  }
  const started = Date.now();
  const unavailable = () => new RedisUnavailableError(`Redis is ${client.status}`);
  return withDeadline(nextReady(client), timeoutMs, unavailable).then(
    () => {
      const left = timeoutMs - (Date.now() - started);
      if (left <= 0) {
        const error = timedOut();
        onSettled?.(error);
        throw error;
      }
      return withDeadline(command(), left, timedOut, onSettled);
    },
    (error) => {
      onSettled?.(error);
      throw error;
    },
  );
}

/** Something that is told when Redis fails and when it works again (see `OutageReporter`). */
interface OutageListener {
  failed(error: unknown): void;
  recovered(): void;
}

/**
 * A `call(command)` helper for one middleware: runs `command` on the (lazily resolved) client through
 * {@link boundedCall} and reports failures and recoveries to `outage`, so each outage is logged once.
 */
export function boundedCaller(client: () => RedisClient, timeoutMs: number, outage: OutageListener) {
  const report = (error: unknown) => {
    if (error === undefined) outage.recovered();
    else outage.failed(error);
  };
  return function call<T>(command: (redis: RedisClient) => Promise<T>): Promise<T> {
    const redis = client();
    return boundedCall(redis, timeoutMs, () => command(redis), report);
  };
}
