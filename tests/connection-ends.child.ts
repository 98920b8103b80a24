// A process of its own for tests/connection-ends.test.ts: it opens a client the way an app does (createRedis(), the
// shared default client, or the app's own ioredis client handed to redisware), lets redisware open what it opens
// beside it (the pub/sub connection of the cache and rateLimit, the client's health), brings the client to the state
// asked for (with Sentinel watchers beside it if asked), closes it as asked, and prints the process's active resources before and after. The test then checks
// that the process exits by itself.
//
// Argument: a JSON Scenario. Run with `node --import tsx` (and, for ioredis 6, with `ioredis` resolved to it).
import { Redis as Redis5 } from 'ioredis5';
import { Redis as Redis6 } from 'ioredis6';
import { closeDefaultRedis, createRedis, defaultRedis } from '../lib/connection.js';
import type { RedisClient } from '../lib/redis/client.js';
import { followFailovers } from '../lib/redis/failover.js';
import { healthOf } from '../lib/redis/health.js';
import { subscribe } from '../lib/redis/subscriber.js';

export interface Scenario {
  /** Whose client: made by createRedis(), the shared default one, or the app's own ioredis client. */
  client: 'createRedis' | 'cluster' | 'default' | 'own';
  /** The ioredis major of the app's own client. */
  major: 5 | 6;
  url: string;
  /** When it is closed: before connecting (lazyConnect), while connecting, ready, between reconnection attempts, or connected to a server that never answers. */
  state: 'wait' | 'connecting' | 'ready' | 'reconnecting' | 'stalled';
  close: 'disconnect' | 'quit' | 'closeDefaultRedis';
  /** Watch this address as a Sentinel beside the client, as a Sentinel-backed client of createRedis() does. */
  sentinel?: { host: string; port: number };
}

/** What the child prints on its last line. */
export interface Report {
  before: string[];
  after: string[];
  status: string;
}

const scenario = JSON.parse(process.argv[2] as string) as Scenario;
const before = process.getActiveResourcesInfo();
const silent = { warn() {}, error() {} };
const url = scenario.state === 'wait' ? `${scenario.url}?lazyConnect=true` : scenario.url;

function open(): RedisClient {
  if (scenario.client === 'default') {
    process.env.REDIS_URL = url;
    return defaultRedis();
  }
  if (scenario.client === 'cluster') {
    return createRedis({ cluster: { nodes: [scenario.url] }, logger: silent, retry: { baseDelay: 20, maxDelay: 100 } });
  }
  if (scenario.client === 'createRedis') {
    return createRedis({ url, logger: silent, retry: { baseDelay: 20, maxDelay: 100 } });
  }
  const own = (scenario.major === 6 ? new Redis6(url) : new Redis5(url)) as unknown as RedisClient;
  own.on('error', () => {});
  return own;
}

const client = open();
subscribe(client, 'redisware-test:ends', () => {});
healthOf(client);
if (scenario.sentinel) {
  followFailovers(client as Redis5, { sentinels: [scenario.sentinel], name: 'ends', retryStrategy: () => 20 });
}

async function reached(): Promise<void> {
  const { state } = scenario;
  if (state === 'wait' || state === 'connecting') return;
  const event = state === 'ready' ? 'ready' : state === 'stalled' ? 'connect' : 'reconnecting';
  await new Promise((resolve) => client.once(event, resolve));
  // Let the pub/sub connection get there too (it connects on its own, a moment later).
  await new Promise((resolve) => setTimeout(resolve, 150));
}

async function close(): Promise<void> {
  if (scenario.close === 'closeDefaultRedis') await closeDefaultRedis();
  else if (scenario.close === 'quit') await client.quit().catch(() => {});
  else client.disconnect();
}

await reached();
await close();
// Whatever a close still has to do takes a few ticks (a socket's 'close'); nothing of it is a timer. (A timer is
// listed while its callback runs, hence the setImmediate.)
setTimeout(() => setImmediate(report), 200);

function report(): void {
  const report: Report = {
    before,
    after: process.getActiveResourcesInfo(),
    status: client.status,
  };
  console.log(JSON.stringify(report));
}
