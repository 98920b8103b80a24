// What redisware needs of the ioredis client it is given, whichever copy (ioredis 5 or 6) the client comes from.
import type { Cluster, Redis } from 'ioredis';
import { RedisUnavailableError } from '../errors.js';

/**
 * The client every middleware accepts: an ioredis `Redis` or `Cluster`, from ioredis 5 or 6.
 * Only commands both share are used, and every script passes its keys as KEYS[] so Cluster can route it.
 */
export type RedisClient = Redis | Cluster;

/**
 * What the `redis` option of every middleware takes: an ioredis `Redis` or `Cluster` from whichever copy of ioredis
 * the app has (5 or 6, the one redisware resolved or another), checked by shape rather than by class, since two
 * copies' classes are different types to TypeScript.
 */
export interface AnyRedisClient {
  readonly status: string;
  evalsha(...args: never[]): unknown;
  on(...args: never[]): unknown;
}

/** Whether `client` is an ioredis `Cluster` (which routes each key to its own node). */
export function isCluster(client: RedisClient): boolean {
  return (client as { isCluster?: boolean }).isCluster === true;
}

/** An error Redis answered with (as opposed to a dropped connection or a timeout): the command did not apply. */
export function isReplyError(error: unknown): boolean {
  return (error as Error | undefined)?.name === 'ReplyError';
}

/** A CROSSSLOT reply: the server (a Cluster node, or a proxy in front of one) refuses keys of several slots at once. */
export function isCrossSlot(error: unknown): boolean {
  return isReplyError(error) && /^CROSSSLOT\b/.test((error as Error).message);
}

/** The standalone clients known to refuse multi-slot scripts (a proxy in front of a Cluster, see `isCrossSlot`). */
const refusingCrossSlot = new WeakSet<RedisClient>();

/** Whether every script sent to `client` must keep its keys in one slot: a Cluster, or a client behind a proxy. */
export function needsOneSlot(client: RedisClient): boolean {
  return isCluster(client) || refusingCrossSlot.has(client);
}

/** Remembers that `client` answered CROSSSLOT to keys of several slots. */
export function markRefusesCrossSlot(client: RedisClient): void {
  refusingCrossSlot.add(client);
}

/** The part of an ioredis `Command` redisware uses. */
export interface ClientCommand {
  promise: Promise<unknown>;
  reject(error: Error): void;
}

/** Builds a command the way the client's own copy of ioredis does. */
export type CommandFactory = (name: string, args: (string | number | Buffer)[], binary: boolean) => ClientCommand;

type CommandClass = new (
  name: string,
  args: (string | number | Buffer)[],
  options: { keyPrefix?: string; replyEncoding?: BufferEncoding | null },
) => ClientCommand;

const commandClasses = new WeakMap<object, CommandClass | null>();

/**
 * The `Command` class of the ioredis copy `client` comes from, or `null` when it cannot be found (a client that is
 * not ioredis'). The user's client may come from another major than the ioredis redisware imports, and a command
 * built by one copy breaks in the other (ioredis 6 calls `command.setReplyContext()`, which 5's commands lack), so
 * it is taken from the client: a pipeline of the client builds one for each command queued on it. That probe is
 * never sent, and is made once per client class.
 */
function commandClassOf(client: Redis): CommandClass | null {
  const prototype = Object.getPrototypeOf(client) as object;
  let found = commandClasses.get(prototype);
  if (found !== undefined) return found;
  found = null;
  try {
    const pipeline = client.pipeline() as unknown as {
      sendCommand(command: ClientCommand): unknown;
      echo(message: string): unknown;
    };
    pipeline.sendCommand = (command: ClientCommand) => {
      found = command.constructor as CommandClass;
      command.promise.catch(() => {});
      return command.promise;
    };
    pipeline.echo('');
  } catch {
    found = null;
  }
  commandClasses.set(prototype, found);
  return found;
}

/**
 * A factory of commands in the client's own ioredis (with its `keyPrefix` applied, as its own commands have it),
 * or `undefined` when the client's `Command` class cannot be found (then only its public methods are used).
 */
export function commandFactory(client: Redis): CommandFactory | undefined {
  const Command = commandClassOf(client);
  if (!Command) return undefined;
  const keyPrefix = client.options.keyPrefix;
  return (name, args, binary) => new Command(name, args, { keyPrefix, replyEncoding: binary ? null : 'utf8' });
}

/** The commands redisware handed to a standalone client (see `neverResent`). */
const sentByUs = new WeakSet<ClientCommand>();
const guardedClients = new WeakSet<Redis>();

/** An entry of ioredis' queue of commands awaiting their reply. */
interface QueuedCommand {
  command: ClientCommand;
}

/** The part of ioredis' internals that holds the commands a dropped connection left unanswered. */
interface CommandQueue {
  length: number;
  toArray(): QueuedCommand[];
  clear(): void;
  push(item: QueuedCommand): void;
}

/**
 * Marks `command`, about to be sent on `client`, as one that must never be sent twice. ioredis re-sends the commands
 * a dropped connection left unanswered once it reconnects (`autoResendUnfulfilledCommands`, on by default), long
 * after their caller gave up, and a re-sent increment counts twice. So when the connection of a client redisware was
 * given closes, redisware takes its own unanswered commands out of that queue and fails them; the app's commands
 * are left as its client's options say. (`createRedis()` clients re-send nothing at all.)
 */
export function neverResent(client: Redis, command: ClientCommand): void {
  sentByUs.add(command); // weakly: an answered command is no longer queued, and is collected as usual
  if (guardedClients.has(client)) return;
  guardedClients.add(client);
  // 'close' is emitted on the tick after ioredis moved the unanswered commands aside for re-sending.
  client.on('close', () => {
    const queue = (client as unknown as { commandQueue?: CommandQueue }).commandQueue;
    if (!queue?.length || typeof queue.toArray !== 'function') return;
    const items = queue.toArray();
    if (!items.some((item) => sentByUs.has(item.command))) return;
    queue.clear();
    const error = new RedisUnavailableError('the connection closed before Redis replied; the command is not re-sent');
    for (const item of items) {
      if (sentByUs.has(item.command)) item.command.reject(error);
      else queue.push(item);
    }
  });
}
