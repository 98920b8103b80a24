// Closing an ioredis connection for good, whatever it is doing, so that nothing of it keeps the process alive.
import { type Callback, Cluster, Redis } from 'ioredis';
import type { RedisClient } from './client.js';

/**
 * The parts of an ioredis `Redis` (5 and 6 alike) used here: ioredis has no public way to end a client that waits
 * between reconnection attempts (see {@link endNow}).
 */
interface ConnectionInternals {
  status: string;
  stream?: Destroyable;
  /** Opens the socket; it holds the one it opened, which the client only takes over a moment later. */
  connector?: { stream?: Destroyable };
  /** The timer of the next reconnection attempt. */
  reconnectTimeout?: NodeJS.Timeout | null;
  /** Set by `disconnect()` and `quit()`, cleared when the connection has closed. */
  manuallyClosing?: boolean;
  setStatus?(status: string): void;
  flushQueue?(error: Error): void;
}

interface Destroyable {
  destroy(): void;
}

/** The message ioredis rejects commands with once a client has ended. */
const closedMessage = 'Connection is closed.';

/**
 * Whether the app has closed `client`: it has ended, or `disconnect()` / `quit()` was called on it. The second
 * matters for a client closed between reconnection attempts, which ioredis leaves in `reconnecting` forever without
 * a word (no `end` event): what redisware opened beside it asks this before each attempt of its own.
 */
export function closedByApp(client: RedisClient): boolean {
  return client.status === 'end' || (client as unknown as ConnectionInternals).manuallyClosing === true;
}

/**
 * Closes the standalone connection `connection` now, whatever it is doing, and leaves nothing behind: it ends (its
 * `end` event is emitted, commands still queued are rejected) and no timer or socket of it is left.
 * `disconnect` is the connection's own `disconnect()` (a subclass overriding it passes its parent's).
 *
 * ioredis' `disconnect()` falls short in two states (5.3 to 6.0 alike, redis/ioredis#1247):
 * - between reconnection attempts it cancels the next attempt but never ends the client (its status stays
 *   `reconnecting`, no `end` event), so whatever waits for `end` waits forever; and it arms a 2 s timer
 *   (`disconnectTimeout`) on the socket of the failed attempt, closed already;
 * - on a connection whose server does not answer (hung, stopped with SIGSTOP) it half-closes the socket and keeps
 *   it, and a timer, for `disconnectTimeout` (2 s).
 * - on a socket still connecting, it lets it connect, and the failure of the first commands on it arms that
 *   timer again.
 * So between attempts the client is ended here as ioredis ends a closed connection, and otherwise the socket (the
 * client's, or the one its connector is opening) is destroyed at once after `disconnect()`.
 */
export function endNow(connection: Redis, disconnect: () => void = () => connection.disconnect()): void {
  const internals = connection as unknown as ConnectionInternals;
  if (connection.status === 'end') return;
  if (connection.status === 'reconnecting' && internals.setStatus && internals.flushQueue) {
    if (internals.reconnectTimeout) clearTimeout(internals.reconnectTimeout);
    internals.reconnectTimeout = null;
    internals.setStatus('end');
    internals.flushQueue(new Error(closedMessage));
    return;
  }
  disconnect();
  internals.stream?.destroy();
  internals.connector?.stream?.destroy();
}

/** Resolves once `connection` has ended (at once if it has). */
export function ended(connection: RedisClient): Promise<void> {
  if (connection.status === 'end') return Promise.resolve();
  return new Promise((resolve) => connection.once('end', () => resolve()));
}

/**
 * `disconnect(reconnect)` of a connection that ends when told: without `reconnect`, {@link endNow}; with it,
 * ioredis' own, unless the connection has ended (ioredis asks that of an ended client whose ready check failed
 * because it was closed, which again arms a 2 s timer on its closed socket). `disconnect` is ioredis' own.
 */
export function disconnectCleanly(
  connection: Redis,
  reconnect: boolean,
  disconnect: (reconnect: boolean) => void,
): void {
  if (!reconnect) endNow(connection, () => disconnect(false));
  else if (connection.status !== 'end') disconnect(true);
}

/**
 * Makes `connection` (one redisware opened itself: a pub/sub connection, a Sentinel watcher) close as
 * {@link disconnectCleanly} says, and returns it.
 */
export function endingWhenTold<T extends Redis>(connection: T): T {
  const disconnect = connection.disconnect.bind(connection);
  connection.disconnect = (reconnect = false) => disconnectCleanly(connection, reconnect, disconnect);
  return connection;
}

/** How long `quit()` on a client of `createRedis()` waits for Redis to answer before closing the connection. */
export const quitGraceMs = 2_000;

/**
 * The standalone (and Sentinel-backed) client of `createRedis()`: an ioredis `Redis` that ends when it is told
 * to, whatever it is doing, and leaves no timer or socket behind (see `endNow`).
 * - `disconnect()` ends it at once, between reconnection attempts too (ioredis would stay `reconnecting` forever).
 * - `quit()` is ioredis' graceful QUIT when connected, bounded: a Redis that does not answer within
 *   {@link quitGraceMs} has its connection closed. Between reconnection attempts, or before any command was
 *   queued, it ends the client at once; commands still waiting for a connection are then rejected.
 */
export class EndingRedis extends Redis {
  override disconnect(reconnect = false): void {
    disconnectCleanly(this, reconnect, (again) => super.disconnect(again));
  }

  override quit(callback?: Callback<'OK'>): Promise<'OK'> {
    const closing = this.#quit();
    if (callback) closing.then((reply) => callback(null, reply), callback);
    return closing;
  }

  #quit(): Promise<'OK'> {
    const queued = (this as unknown as { offlineQueue?: { length: number } }).offlineQueue?.length ?? 0;
    const waiting = this.status === 'reconnecting' || this.status === 'wait';
    if (this.status !== 'end' && (waiting || (this.status !== 'ready' && queued === 0))) {
      endNow(this, () => super.disconnect());
      return Promise.resolve('OK');
    }
    const reply = super.quit();
    let cutShort = false;
    const grace = setTimeout(() => {
      cutShort = true;
      endNow(this, () => super.disconnect());
    }, quitGraceMs);
    grace.unref();
    void ended(this).then(() => clearTimeout(grace));
    // A reply cut short by closing the connection (the grace ran out) is still the close that was asked for.
    return reply.catch((error: Error) => {
      if (cutShort) return 'OK' as const;
      throw error;
    });
  }
}

/**
 * The Cluster client of `createRedis()`: an ioredis `Cluster` that ends when told to between reconnection attempts
 * too, where ioredis leaves it `disconnecting` forever (no node connection is left to close, so nothing says it has
 * closed). Connected, `quit()` is ioredis' own (each node's QUIT). (The connections ioredis opens for a moment to
 * read the slots of a node that is down still leave a 2 s timer each, which redisware cannot reach.)
 */
export class EndingCluster extends Cluster {
  override disconnect(reconnect = false): void {
    const between = this.status === 'reconnecting';
    super.disconnect(reconnect);
    if (between && !reconnect) endBetweenAttempts(this);
  }

  override quit(callback?: Callback<'OK'>): Promise<'OK'> {
    const between = this.status === 'reconnecting';
    const closing = super.quit(callback);
    if (between) endBetweenAttempts(this);
    return closing;
  }
}

/** Ends a Cluster closed between reconnection attempts, as ioredis ends one closed before it first connected. */
function endBetweenAttempts(cluster: Cluster): void {
  (cluster as unknown as { handleCloseEvent?(): void }).handleCloseEvent?.();
}
