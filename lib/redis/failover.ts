// Following a Sentinel-managed master to its replacement as soon as a Sentinel announces the switch.
import { Redis } from 'ioredis';
import { closedByApp, endingWhenTold, endNow } from './closing.js';

/** Where the Sentinels are and which master to follow. */
export interface FailoverWatch {
  sentinels: { host: string; port: number }[];
  /** The master's name in the Sentinels' configuration. */
  name: string;
  sentinelPassword?: string;
  /** Delay before reconnection attempt `attempt` of a connection to a Sentinel. */
  retryStrategy: (attempt: number) => number;
}

/** The channel on which a Sentinel announces a new master: `<name> <old-ip> <old-port> <new-ip> <new-port>`. */
const switchChannel = '+switch-master';

/**
 * Reconnects `client` as soon as a Sentinel announces a new master for `name` while the client is connected to
 * another server, rather than writing to the demoted one until it drops the connection: what it accepts in between
 * is lost when it resyncs with the new master. A client that is connecting already is left alone: it asks the
 * Sentinels for the master, and a demoted master fails ioredis' role check.
 *
 * ioredis' own `failoverDetector` is not used: it closes the connector under an attempt in progress (a switch
 * announced while the client, reconnecting after a crash, waits for a Sentinel's answer), which rejects that
 * attempt and ends the client for good. Here each Sentinel is watched by one connection of our own, opened with
 * the client's first `ready`, resubscribed after every reconnection with its failure handled, and closed when the
 * client ends, in whatever state it is (reconnecting to a Sentinel that is down included: see `endNow`). It also
 * stops reconnecting once the app has closed the client.
 */
export function followFailovers(client: Redis, watch: FailoverWatch): void {
  let watchers: Redis[] = [];
  const onSwitch = (channel: string, message: string) => {
    const [name, , , host, port] = message.split(' ');
    if (channel !== switchChannel || name !== watch.name) return;
    if (client.status !== 'ready' && client.status !== 'connect') return;
    const stream = (client as unknown as { stream?: { remoteAddress?: string; remotePort?: number } }).stream;
    if (stream?.remoteAddress === host && String(stream?.remotePort) === port) return;
    client.disconnect(true);
  };
  client.on('ready', () => {
    if (watchers.length > 0) return;
    watchers = watch.sentinels.map(({ host, port }) => {
      const watcher = endingWhenTold(
        new Redis({
          host,
          port,
          password: watch.sentinelPassword,
          retryStrategy: (attempt) => (closedByApp(client) ? null : watch.retryStrategy(attempt)),
          autoResubscribe: false,
          maxRetriesPerRequest: null,
          enableReadyCheck: false,
        }),
      );
      watcher.on('error', () => {});
      watcher.on('ready', () => void watcher.subscribe(switchChannel).catch(() => {}));
      watcher.on('message', onSwitch);
      return watcher;
    });
  });
  client.on('end', () => {
    for (const watcher of watchers) endNow(watcher);
    watchers = [];
  });
}
