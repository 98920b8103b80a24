// Pub/sub on a connection of its own: a subscribed connection can run nothing else, so it is never the one that
// runs a middleware's commands.
import { isCluster, type RedisClient } from './client.js';

type Listener = (message: string) => void;

interface Subscriber {
  connection: RedisClient;
  listeners: Map<string, Set<Listener>>;
}

const subscribers = new WeakMap<RedisClient, Subscriber>();

/**
 * Calls `listener` with every message published on `channel`, through one dedicated connection per client: a
 * `duplicate()` of a standalone client, made on first use (ioredis resubscribes it after every reconnection) and
 * closed when the client ends; a Cluster's own subscriber connection, which ioredis keeps apart from the ones that
 * run commands. A message published while that connection is down is missed: subscribers must treat messages as a
 * speed-up, never as the only way something becomes true. `refused` hears of a subscription the server refused (an
 * ACL user without channel rights). Nothing is opened for a client that has ended.
 */
export function subscribe(
  client: RedisClient,
  channel: string,
  listener: Listener,
  refused?: (error: Error) => void,
): void {
  if (client.status === 'end') return;
  let subscriber = subscribers.get(client);
  if (!subscriber) {
    const connection = isCluster(client) ? client : (client.duplicate() as RedisClient);
    // Its errors are those of the client's own connection, which the middleware already reports once per outage;
    // a listener is still needed, or ioredis would print each one.
    if (connection !== client) connection.on('error', () => {});
    const created: Subscriber = { connection, listeners: new Map() };
    connection.on('message', (name: string, message: string) => {
      const listeners = created.listeners.get(name);
      if (!listeners) return;
      for (const each of listeners) {
        try {
          each(message);
        } catch (thrown) {
          process.emitWarning(thrown as Error);
        }
      }
    });
    // The app closing its client (quit, or closeDefaultRedis()) closes this one too.
    if (connection !== client) client.once('end', () => connection.disconnect());
    subscriber = created;
    subscribers.set(client, subscriber);
  }
  let listeners = subscriber.listeners.get(channel);
  if (!listeners) {
    listeners = new Set();
    subscriber.listeners.set(channel, listeners);
    // Not sent (not connected, no offline queue): asked again once the connection is ready. Refused: reported.
    const connection = subscriber.connection;
    const request = () =>
      void connection.subscribe(channel).catch((error: Error) => {
        if (error.name === 'ReplyError') refused?.(error);
        else connection.once('ready', request);
      });
    request();
  }
  listeners.add(listener);
}
