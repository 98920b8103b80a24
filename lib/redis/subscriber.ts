// Pub/sub on a connection of its own: a subscribed connection can run nothing else, so it is never the one that
// runs a middleware's commands.
import type { Redis } from 'ioredis';
import { isCluster, type RedisClient } from './client.js';
import { closedByApp, ended, endingWhenTold, endNow } from './closing.js';

type Listener = (message: string) => void;

interface Subscriber {
  connection: RedisClient;
  listeners: Map<string, Set<Listener>>;
  /** Asks the server for `channel`'s messages. */
  request(channel: string): void;
}

const subscribers = new WeakMap<RedisClient, Subscriber>();

/** Whether `error` is the server refusing the subscription (an ACL user without channel rights). */
const isRefusal = (error: Error) => error.name === 'ReplyError';

/**
 * Calls `listener` with every message published on `channel`, through one dedicated connection per client: a
 * `duplicate()` of a standalone client, made on first use (resubscribed by us after every reconnection) and
 * closed when the client ends; a Cluster's own subscriber connection, which ioredis keeps apart from the ones that
 * run commands. A message published while that connection is down is missed: subscribers must treat messages as a
 * speed-up, never as the only way something becomes true. `refused` hears of a subscription the server refused (an
 * ACL user without channel rights), once. Nothing is opened for a client that has ended or that the app closed.
 */
export function subscribe(
  client: RedisClient,
  channel: string,
  listener: Listener,
  refused?: (error: Error) => void,
): void {
  if (closedByApp(client)) return;
  let subscriber = subscribers.get(client);
  if (!subscriber) {
    subscriber = isCluster(client) ? clusterSubscriber(client) : duplicateSubscriber(client);
    const { connection, listeners } = subscriber;
    connection.on('message', (name: string, message: string) => {
      const each = listeners.get(name);
      if (!each) return;
      for (const listen of each) {
        try {
          listen(message);
        } catch (thrown) {
          process.emitWarning(thrown as Error);
        }
      }
    });
    subscribers.set(client, subscriber);
  }
  let listeners = subscriber.listeners.get(channel);
  if (!listeners) {
    listeners = new Set();
    subscriber.listeners.set(channel, listeners);
    if (refused) refusals.set(listeners, refused);
    subscriber.request(channel);
  }
  listeners.add(listener);
}

/** Who hears that a channel's subscription was refused (until it has been told once). */
const refusals = new WeakMap<Set<Listener>, (error: Error) => void>();

function reportRefusal(subscriber: Subscriber, channel: string, error: Error): void {
  const listeners = subscriber.listeners.get(channel);
  const refused = listeners && refusals.get(listeners);
  if (!refused) return;
  refusals.delete(listeners);
  refused(error);
}

/**
 * A connection of our own beside a standalone client. ioredis' own resubscription after a reconnection sends
 * SUBSCRIBE without handling its failure: should the connection close before the reply (the app closing its client,
 * a retry strategy giving up), that is an unhandled rejection, which ends a Node process. So it is turned off, and
 * every subscription is asked again, with its failure handled, each time the connection is ready.
 *
 * It lives as long as its client: it ends with the client's `end`, and, since ioredis says nothing of a client
 * closed between reconnection attempts (it stays `reconnecting`, with no `end`), it also stops reconnecting once the
 * app has closed its client. It reconnects on the client's schedule (its `retryStrategy`).
 */
function duplicateSubscriber(client: RedisClient): Subscriber {
  const { retryStrategy } = (client as Redis).options;
  const connection = endingWhenTold(
    (client as Redis).duplicate({
      autoResubscribe: false,
      retryStrategy(attempt) {
        if (closedByApp(client) || typeof retryStrategy !== 'function') return null;
        return retryStrategy.call(this, attempt);
      },
    }),
  );
  // Its errors are those of the client's own connection, which the middleware already reports once per outage;
  // a listener is still needed, or ioredis would print each one.
  connection.on('error', () => {});
  const subscriber: Subscriber = {
    connection,
    listeners: new Map(),
    request(channel) {
      // Not ready yet: asked on 'ready' below. Failed otherwise than refused: asked again on the next 'ready'.
      if (connection.status !== 'ready') return;
      connection.subscribe(channel).catch((error: Error) => {
        if (isRefusal(error)) reportRefusal(subscriber, channel, error);
      });
    },
  };
  connection.on('ready', () => {
    for (const channel of subscriber.listeners.keys()) subscriber.request(channel);
  });
  // A duplicate of a lazyConnect client waits for a command, and none is sent before it is ready.
  if (connection.status === 'wait') connection.connect().catch(() => {});
  // The app closing its client (quit, or closeDefaultRedis()) closes this one too; connecting it again (connect()
  // after quit()) opens this one again, which then asks for every subscription on 'ready'.
  client.on('end', () => endNow(connection));
  client.on('ready', () => {
    if (connection.status === 'end') connection.connect().catch(() => {});
  });
  return subscriber;
}

/** A Cluster subscribes on its own subscriber connection, and resubscribes it itself (handling its failures). */
function clusterSubscriber(cluster: RedisClient): Subscriber {
  const subscriber: Subscriber = {
    connection: cluster,
    listeners: new Map(),
    request(channel) {
      cluster.subscribe(channel).catch((error: Error) => {
        if (isRefusal(error)) reportRefusal(subscriber, channel, error);
        else cluster.once('ready', () => subscriber.request(channel));
      });
    },
  };
  return subscriber;
}

/**
 * Closes the pub/sub connection redisware opened beside `client` (if any; a Cluster's is its own) and resolves once
 * it has ended. It closes with its client anyway; this is for waiting until it has.
 */
export function closeSubscriber(client: RedisClient): Promise<void> {
  const subscriber = subscribers.get(client);
  if (!subscriber || subscriber.connection === client) return Promise.resolve();
  endNow(subscriber.connection as Redis);
  return ended(subscriber.connection);
}
