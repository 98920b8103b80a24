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
  /**
   * The batched form, written by hand (see {@link forEachBatchedCall}) for a script hot enough that running its
   * body once per call under `pcall` costs Redis noticeably more; by default it is derived from the source.
   */
  batchedSource?: string;
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
      const batched = options.batchedSource ?? batchedSource(source, options.keys);
      this.batched = new RedisScript(`${name} (batched)`, batched, { binary: this.binary });
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

/** First ARGV of a batch whose groups all take the same arguments, which then follow it once. */
const sharedArgsMarker = '*';

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

/** How a script call ends: with `error`, or with `reply`. Callbacks must not throw. */
export type ScriptCallback = (error: Error | undefined, reply?: unknown) => void;

/** The calls of one flush that share a deadline, and the one timer that enforces it. */
interface Deadline {
  members: QueuedScript[];
  /** Members not yet settled: the timer is cleared when the last one is. */
  pending: number;
  timer?: NodeJS.Timeout;
}

interface QueuedScript {
  script: RedisScript;
  keys: readonly string[];
  args: readonly (string | number)[];
  done: ScriptCallback;
  /** Fail with {@link RedisTimeoutError} if no reply came this long after the call (none: the caller bounds it). */
  timeoutMs?: number;
  deadline?: Deadline;
  settled: boolean;
}

/** Calls per batched EVALSHA at most, so no single script holds Redis for long. */
const maxBatch = 500;

function settle(call: QueuedScript, error: Error | undefined, reply?: unknown): void {
  if (call.settled) return; // a reply after the deadline changes nothing: the caller has moved on
  call.settled = true;
  const deadline = call.deadline;
  if (deadline && --deadline.pending === 0) clearTimeout(deadline.timer);
  try {
    call.done(error, reply);
  } catch (thrown) {
    // A callback bug must not keep the other calls of the batch from their replies.
    process.emitWarning(thrown as Error);
  }
}

/**
 * Sends the script calls made during one turn of the event loop together: the calls of a batchable script
 * (see {@link RedisScript.batched}) as one EVALSHA for all of them, anything else as separate commands in the
 * same turn. So the requests Node parsed in one turn cost one command, one socket write and one reply, instead of
 * one each. Standalone Redis only: a Cluster routes each key to its own node.
 *
 * Calls that carry a timeout share one timer per flush and timeout value rather than one timer each: they were all
 * made during the same turn, and the timer is set for the earliest of them.
 */
class ScriptBatcher {
  private queue: QueuedScript[] = [];
  private scheduled = false;
  private turnStarted = 0;

  constructor(private readonly client: Redis) {}

  /** Queues a call for this turn's flush; `done` is called exactly once. */
  enqueue(
    script: RedisScript,
    keys: readonly string[],
    args: readonly (string | number)[],
    done: ScriptCallback,
    timeoutMs?: number,
  ): void {
    this.queue.push({ script, keys, args, done, timeoutMs, deadline: undefined, settled: false });
    if (!this.scheduled) {
      this.scheduled = true;
      this.turnStarted = Date.now();
      setImmediate(this.flush);
    }
  }

  run(script: RedisScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.enqueue(script, keys, args, (error, reply) => (error ? reject(error) : resolve(reply)));
    });
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const queued = this.queue;
    this.queue = [];
    // The connection may have dropped since the calls were made: sending now would park them in ioredis'
    // offline queue and replay them after a reconnect, long after their callers gave up.
    if (this.client.status !== 'ready') {
      const error = new RedisUnavailableError(`Redis is ${this.client.status}`);
      for (const call of queued) settle(call, error);
      return;
    }
    this.armDeadlines(queued);
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
          for (const call of calls) {
            script.send(this.client, call.keys, call.args).then(
              (reply) => settle(call, undefined, reply),
              (error) => settle(call, error),
            );
          }
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

  /** One timer per timeout value among `calls`, due `timeoutMs` after the turn in which they were made. */
  private armDeadlines(calls: QueuedScript[]): void {
    let deadlines: Map<number, Deadline> | undefined;
    for (const call of calls) {
      if (call.timeoutMs === undefined) continue;
      deadlines ??= new Map();
      let deadline = deadlines.get(call.timeoutMs);
      if (!deadline) {
        deadline = { members: [], pending: 0 };
        deadlines.set(call.timeoutMs, deadline);
      }
      deadline.members.push(call);
      deadline.pending++;
      call.deadline = deadline;
    }
    if (!deadlines) return;
    const elapsed = Date.now() - this.turnStarted;
    for (const [timeoutMs, deadline] of deadlines) {
      deadline.timer = setTimeout(
        () => {
          const error = new RedisTimeoutError(timeoutMs);
          for (const member of deadline.members) settle(member, error);
        },
        Math.max(0, timeoutMs - elapsed),
      );
    }
  }

  private sendBatch(batched: RedisScript, calls: QueuedScript[]): void {
    const keys: string[] = [];
    for (const call of calls) for (const key of call.keys) keys.push(key);
    // Callers that pass one arguments array for all their calls (a middleware's fixed options) have it sent once
    // per batch rather than once per call: less to serialise, send and parse on both sides.
    const sharedArgs = calls[0].args;
    const shared = calls.every((call) => call.args === sharedArgs);
    const args: (string | number)[] = [];
    if (shared) {
      args.push(sharedArgsMarker, ...sharedArgs);
    } else {
      for (const call of calls) {
        args.push(call.args.length);
        for (const arg of call.args) args.push(arg);
      }
    }
    batched.send(this.client, keys, args).then(
      (replies) => {
        for (let i = 0; i < calls.length; i++) {
          const reply = (replies as unknown[])[i];
          if (reply instanceof Error) settle(calls[i], reply);
          else settle(calls[i], undefined, reply);
        }
      },
      (error) => {
        for (const call of calls) settle(call, error);
      },
    );
  }
}

const batchers = new WeakMap<RedisClient, ScriptBatcher>();

function batcherFor(client: Redis): ScriptBatcher {
  let batcher = batchers.get(client);
  if (!batcher) {
    batcher = new ScriptBatcher(client);
    batchers.set(client, batcher);
  }
  return batcher;
}

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
  return batcherFor(client as Redis).run(script, keys, args);
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
 * For calls that are not batched a timer per call is cheaper than it looks: Node keeps one list per duration, and a
 * cancelled timer dies young, whereas a shared queue that keeps settled calls until their deadline keeps them past
 * young-generation GC. (The batcher's one timer per flush is cleared as soon as the flush's last call settles.)
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
  function call<T>(command: (redis: RedisClient) => Promise<T>): Promise<T> {
    const redis = client();
    return boundedCall(redis, timeoutMs, () => command(redis), report);
  }
  /**
   * Runs a hot-path script like `call((redis) => runScript(redis, …))`, answering through `done` instead of a
   * promise: on a ready standalone connection the call joins this turn's batch and shares its deadline timer, so
   * it costs no promise and no timer of its own. Otherwise (connecting, Cluster) it goes through `call`.
   */
  call.script = function callScript(
    script: RedisScript,
    keys: readonly string[],
    args: readonly (string | number)[],
    done: ScriptCallback,
  ): void {
    const redis = client();
    if (redis.status === 'ready' && !isCluster(redis)) {
      batcherFor(redis as Redis).enqueue(
        script,
        keys,
        args,
        (error, reply) => {
          report(error);
          done(error, reply);
        },
        timeoutMs,
      );
      return;
    }
    call((r) => runScript(r, script, keys, args)).then(
      (reply) => done(undefined, reply),
      (error: Error) => done(error),
    );
  };
  return call;
}
