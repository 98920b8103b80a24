// Closing an ioredis connection for good, whatever it is doing, so that nothing of it keeps the process alive.
import type { Redis } from 'ioredis';
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
