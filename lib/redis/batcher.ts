// Sends the script calls made during one turn of the event loop together, on a standalone client.
import { AsyncResource } from 'node:async_hooks';
import type { Redis } from 'ioredis';
import { RedisTimeoutError, RedisUnavailableError } from '../errors.js';
import type { Logger } from '../logger.js';
import { isCrossSlot, isReplyError, markRefusesCrossSlot, type RedisClient } from './client.js';
import { type RedisScript, type ScriptCallback, sharedArgsMarker } from './script.js';

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
 * Refusals that say something about the server's state at the moment, not about batching: the calls alone may pass
 * a moment later, which would not mean that the batch was the problem.
 */
const passingRefusal = /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|READONLY|OOM|NOAUTH|CLUSTERDOWN|MOVED|ASK)\b/;

/** Sends one call on its own and settles it with the reply. */
function sendAlone(client: RedisClient, call: QueuedScript, done: ScriptCallback = (e, r) => settle(call, e, r)) {
  call.script.send(client, call.keys, call.args, done);
}

/**
 * Sends the script calls made during one turn of the event loop together: the calls of a batchable script
 * (see {@link RedisScript.batched}) as one EVALSHA for all of them, anything else as separate commands in the
 * same turn. So the requests Node parsed in one turn cost one command, one socket write and one reply, instead of
 * one each. Standalone Redis only: a Cluster routes each key to its own node.
 *
 * A batch holds keys of many slots. Behind a proxy that spreads keys over a Cluster (Envoy, twemproxy, a managed
 * "cluster behind one endpoint"), the server refuses it as a whole, CROSSSLOT, where each call alone would have
 * worked: the batch's calls are then sent one by one, and so is every later call on this client (one warning).
 * Only a refusal is retried that way: an error reply to the whole batched script means none of it ran (each call
 * runs under `pcall`), so no increment is ever applied twice. A dropped connection or a timeout is never retried.
 *
 * Calls that carry a timeout share one timer per flush and timeout value rather than one timer each: they were all
 * made during the same turn, and the timer is set for the earliest of them.
 */
export class ScriptBatcher {
  private queue: QueuedScript[] = [];
  private scheduled = false;
  private turnStarted = 0;
  /** Whether batches are sent at all (false once the server refused one that its calls alone would pass). */
  private batching = true;

  constructor(
    private readonly client: Redis,
    private readonly logger: Logger,
  ) {}

  /** Queues a call for this turn's flush; `done` is called exactly once. */
  enqueue(
    script: RedisScript,
    keys: readonly string[],
    args: readonly (string | number)[],
    done: ScriptCallback,
    timeoutMs?: number,
  ): void {
    // The batch's reply arrives in the context of whichever call started the flush: each caller is answered in its
    // own async context (AsyncLocalStorage: request ids, tracing spans), as if its call had gone alone.
    // (A resource destroyed by hand once it answered: `AsyncResource.bind` leaves that to the garbage collector,
    // registering each resource with it, which cost about 13 µs per call here — more than the rest of the work.)
    const scope = new AsyncResource('redisware.script', { requireManualDestroy: true });
    const answer: ScriptCallback = (error, reply) => {
      try {
        scope.runInAsyncScope(done, undefined, error, reply);
      } finally {
        scope.emitDestroy();
      }
    };
    this.queue.push({ script, keys, args, done: answer, timeoutMs, deadline: undefined, settled: false });
    if (!this.scheduled) {
      this.scheduled = true;
      this.turnStarted = Date.now();
      setImmediate(this.flush);
    }
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
        if (calls.length === 1 || !script.batched || !this.batching) {
          for (const call of calls) sendAlone(this.client, call);
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
    batched.send(this.client, keys, args, (error, replies) => {
      if (error) {
        if (isReplyError(error)) this.sendEachAfterRefusal(calls, error);
        else for (const call of calls) settle(call, error);
        return;
      }
      for (let i = 0; i < calls.length; i++) {
        const reply = (replies as unknown[])[i];
        if (reply instanceof Error) settle(calls[i], reply);
        else settle(calls[i], undefined, reply);
      }
    });
  }

  /**
   * The server refused a batch as a whole, so none of it ran: unless the refusal is about the server's state at the
   * moment (it is loading, out of memory, …), its calls go one by one. If that is what the server wanted (CROSSSLOT,
   * or a call alone passes where the batch did not), batching stops for this client.
   */
  private sendEachAfterRefusal(calls: QueuedScript[], refusal: Error): void {
    if (passingRefusal.test(refusal.message)) {
      // Each call alone would be refused the same way right now.
      for (const call of calls) settle(call, refusal);
      return;
    }
    if (isCrossSlot(refusal)) {
      markRefusesCrossSlot(this.client);
      this.stopBatching(refusal);
    }
    for (const call of calls) {
      sendAlone(this.client, call, (error, reply) => {
        if (!error) this.stopBatching(refusal);
        settle(call, error, reply);
      });
    }
  }

  private stopBatching(refusal: Error): void {
    if (!this.batching) return;
    this.batching = false;
    this.logger.warn(
      `redisware: Redis refused a batch of script calls (${refusal.message.split('\n')[0]}) that it accepts one by ` +
        'one, as a proxy in front of a Redis Cluster does: this client now sends one call per request ' +
        "(the 'batch: false' option skips the attempt)",
    );
  }
}

const batchers = new WeakMap<RedisClient, ScriptBatcher>();

/** The batcher of a standalone client (one per client; its warning goes to the first logger it is asked with). */
export function batcherFor(client: Redis, logger: Logger): ScriptBatcher {
  let batcher = batchers.get(client);
  if (!batcher) {
    batcher = new ScriptBatcher(client, logger);
    batchers.set(client, batcher);
  }
  return batcher;
}
