// Pub/sub on a connection of its own: a subscribed connection can run nothing else, so it is never the one that
// runs a middleware's commands.
import type { RedisClient } from './client.js';

type Listener = (message: string) => void;

interface Subscriber {
  connection: RedisClient;
  listeners: Map<string, Set<Listener>>;
}

const subscribers = new WeakMap<RedisClient, Subscriber>();

/**
 * Calls `listener` with every message published on `channel`, through one dedicated connection per client (a
 * `duplicate()` of it, made on first use, which ioredis resubscribes after every reconnection) and closed when the
 * client ends. A message published while that connection is down is missed: subscribers must treat messages as a
 * speed-up, never as the only way something becomes true.
 */
export function subscribe(client: RedisClient, channel: string, listener: Listener): void {
  let subscriber = subscribers.get(client);
  if (!subscriber) {
    const connection = client.duplicate() as RedisClient;
    // Its errors are those of the client's own connection, which the middleware already reports once per outage;
    // a listener is still needed, or ioredis would print each one.
    connection.on('error', () => {});
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
    client.once('end', () => connection.disconnect());
    subscriber = created;
    subscribers.set(client, subscriber);
  }
  let listeners = subscriber.listeners.get(channel);
  if (!listeners) {
    listeners = new Set();
    subscriber.listeners.set(channel, listeners);
    // Refused (not connected, no offline queue): asked again once the connection is ready.
    const connection = subscriber.connection;
    const request = () => void connection.subscribe(channel).catch(() => connection.once('ready', request));
    request();
  }
  listeners.add(listener);
}
