import { Cluster, Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { backoffDelay } from '../lib/connection.js';
import { closeDefaultRedis, createRedis, defaultRedis, type RediswareEvent } from '../lib/index.js';
import { eventCount, privateRedis, unusedPort } from './support/private-redis.js';
import { recordingLogger, redisUrl, silentLogger } from './support/redis.js';

const opened: Array<Redis | Cluster> = [];
function track<T extends Redis | Cluster>(client: T): T {
  opened.push(client);
  return client;
}
afterEach(() => {
  for (const client of opened.splice(0)) client.disconnect();
});

describe('createRedis() options', () => {
  it('parses a URL into host, port, credentials and database', () => {
    const client = track(
      createRedis({ url: 'redis://alice:s3cret@127.0.0.1:6390/4', lazyConnect: true, logger: silentLogger }) as Redis,
    );
    expect(client).toBeInstanceOf(Redis);
    expect(client.options).toMatchObject({
      host: '127.0.0.1',
      port: 6390,
      username: 'alice',
      password: 's3cret',
      db: 4,
    });
  });

  it('uses TLS for rediss:// URLs', () => {
    const client = track(createRedis({ url: 'rediss://127.0.0.1:6390', lazyConnect: true }) as Redis);
    expect(client.options.tls).toBeDefined();
    const plain = track(createRedis({ url: 'redis://127.0.0.1:6390', lazyConnect: true }) as Redis);
    expect(plain.options.tls).toBeUndefined();
  });

  it('defaults to REDIS_URL, then redis://127.0.0.1:6379', () => {
    const saved = process.env.REDIS_URL;
    try {
      process.env.REDIS_URL = 'redis://127.0.0.1:6391/2';
      const fromEnv = track(createRedis({ lazyConnect: true }) as Redis);
      expect(fromEnv.options).toMatchObject({ port: 6391, db: 2 });
      delete process.env.REDIS_URL;
      const fallback = track(createRedis({ lazyConnect: true }) as Redis);
      expect(fallback.options).toMatchObject({ host: '127.0.0.1', port: 6379 });
    } finally {
      if (saved === undefined) delete process.env.REDIS_URL;
      else process.env.REDIS_URL = saved;
    }
  });

  it('defaults to maxRetriesPerRequest 3 and auto-pipelining, and passes commandTimeout', () => {
    const client = track(createRedis({ url: redisUrl(), lazyConnect: true, commandTimeout: '2s' }) as Redis);
    expect(client.options.maxRetriesPerRequest).toBe(3);
    expect(client.options.enableAutoPipelining).toBe(true);
    expect(client.options.commandTimeout).toBe(2_000);
    // A reply lost with a dropped connection is never re-sent: a non-idempotent command must not run twice.
    expect(client.options.autoResendUnfulfilledCommands).toBe(false);
  });

  it('wires the retry option into ioredis’ retryStrategy', () => {
    const client = track(
      createRedis({
        url: redisUrl(),
        lazyConnect: true,
        retry: { baseDelay: 100, maxDelay: '400ms', maxAttempts: 3 },
      }) as Redis,
    );
    const strategy = client.options.retryStrategy as (attempt: number) => number | null;
    expect(strategy(1)).toBeGreaterThanOrEqual(50);
    expect(strategy(1)).toBeLessThanOrEqual(100);
    expect(strategy(3)).toBeLessThanOrEqual(400);
    expect(strategy(4)).toBeNull();
  });

  it('builds an ioredis Cluster from `cluster.nodes` given as URLs or host/port objects', () => {
    const client = track(
      createRedis({
        cluster: {
          nodes: ['redis://127.0.0.1:7000', { host: '127.0.0.1', port: 7001 }],
          options: { lazyConnect: true },
        },
      }),
    );
    expect(client).toBeInstanceOf(Cluster);
    const cluster = client as Cluster;
    expect((cluster as unknown as { startupNodes: unknown }).startupNodes).toEqual([
      { host: '127.0.0.1', port: 7000 },
      { host: '127.0.0.1', port: 7001 },
    ]);
    expect(cluster.options.enableAutoPipelining).toBe(true);
  });

  it('passes Sentinel options through', () => {
    const client = track(
      createRedis({
        sentinel: { sentinels: [{ host: '127.0.0.1', port: 26379 }], name: 'mymaster' },
        lazyConnect: true,
      }),
    ) as Redis;
    expect(client.options.sentinels).toEqual([{ host: '127.0.0.1', port: 26379 }]);
    expect(client.options.name).toBe('mymaster');
  });

  it('rejects unknown and invalid options with a TypeError naming them', () => {
    expect(() => createRedis({ bogus: true } as never)).toThrow(/createRedis: unknown option "bogus"/);
    expect(() => createRedis({ url: 'http://x' })).toThrow(/option "url" is invalid: "http:\/\/x"/);
    expect(() => createRedis({ retry: { maxDelay: 'soon' } })).toThrow(/option "retry.maxDelay" is invalid: "soon"/);
    expect(() => createRedis({ cluster: { nodes: [] } })).toThrow(/option "cluster.nodes" is invalid/);
    expect(() => createRedis({ connectionName: 'my app' })).toThrow(/option "connectionName" is invalid: "my app"/);
  });

  it('rejects a redis:// URL that does not parse, naming the option and never showing its password', () => {
    const invalid = [
      () => createRedis('redis://:hunter2@host:notaport'),
      () => createRedis({ url: 'redis://user:hunter2@host:99999' }),
      () => createRedis({ url: 'http://:hunter2@host' }),
      () => createRedis({ cluster: { nodes: ['redis://:hunter2@host:x'] } }),
    ];
    for (const attempt of invalid) {
      let message = '';
      try {
        attempt();
      } catch (error) {
        expect(error).toBeInstanceOf(TypeError);
        message = (error as Error).message;
      }
      expect(message).toMatch(/option "(url|cluster\.nodes\.0)" is invalid: "\w+:\/\/\*\*\*@host/);
      expect(message).not.toContain('hunter2');
    }
  });
});

describe('backoffDelay()', () => {
  const retry = { baseDelay: 50, maxDelay: 1_000, maxAttempts: Number.POSITIVE_INFINITY };

  it('grows exponentially with jitter between half and all of the step', () => {
    expect(backoffDelay(1, retry, () => 0)).toBe(25);
    expect(backoffDelay(1, retry, () => 1)).toBe(50);
    expect(backoffDelay(2, retry, () => 1)).toBe(100);
    expect(backoffDelay(4, retry, () => 1)).toBe(400);
    expect(backoffDelay(4, retry, () => 0)).toBe(200);
  });

  it('never exceeds maxDelay, even after very many attempts', () => {
    for (const attempt of [6, 10, 100, 10_000]) {
      expect(backoffDelay(attempt, retry, () => 1)).toBe(1_000);
      expect(backoffDelay(attempt, retry, () => 0.5)).toBeLessThanOrEqual(1_000);
    }
  });

  it('gives up after maxAttempts, and never when unset', () => {
    expect(backoffDelay(3, { ...retry, maxAttempts: 3 })).not.toBeNull();
    expect(backoffDelay(4, { ...retry, maxAttempts: 3 })).toBeNull();
    expect(backoffDelay(1_000_000, retry)).not.toBeNull();
  });
});

describe('connection failures', () => {
  it('survives a refused connection: no unhandled error event, one warning for the outage', async () => {
    const logger = recordingLogger();
    const port = await unusedPort();
    const client = track(createRedis({ url: `redis://127.0.0.1:${port}`, logger, retry: { maxDelay: 20 } }) as Redis);
    await eventCount(client, 'reconnecting', 4);
    expect(logger.warnings).toHaveLength(1);
    expect(logger.warnings[0]).toContain(`127.0.0.1:${port}`);
    expect(logger.warnings[0]).toMatch(/ECONNREFUSED/);
  });

  it('survives a logger that throws (pino methods passed unbound): the warning goes to the console instead', async () => {
    const throwing = {
      warn() {
        throw new TypeError('unbound logger');
      },
      error() {
        throw new TypeError('unbound logger');
      },
    };
    const consoleWarn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const port = await unusedPort();
      const url = `redis://127.0.0.1:${port}`;
      const client = track(createRedis({ url, logger: throwing, retry: { maxDelay: 20 } }) as Redis);
      await eventCount(client, 'reconnecting', 3);
      expect(consoleWarn).toHaveBeenCalledTimes(1);
      expect(String(consoleWarn.mock.calls[0][0])).toMatch(/ECONNREFUSED/);
    } finally {
      consoleWarn.mockRestore();
    }
  });

  it('never logs a password from the URL', async () => {
    const logger = recordingLogger();
    const port = await unusedPort();
    const client = track(
      createRedis({ url: `redis://bob:hunter2@127.0.0.1:${port}`, logger, retry: { maxDelay: 20 } }),
    );
    await eventCount(client, 'reconnecting', 1);
    expect(logger.warnings.join('\n')).not.toContain('hunter2');
  });

  it('warns once per outage, says once that the connection is back when Redis returns, and warns again for the next outage', async () => {
    const server = await privateRedis();
    const logger = recordingLogger();
    const client = track(createRedis({ url: server.url, logger, retry: { baseDelay: 10, maxDelay: 50 } }) as Redis);
    await client.ping();

    await server.stop();
    await eventCount(client, 'reconnecting', 3);
    expect(logger.warnings).toHaveLength(1);

    const ready = eventCount(client, 'ready', 1);
    await server.restart();
    await ready;
    expect(await client.ping()).toBe('PONG');
    expect(logger.warnings).toHaveLength(2);
    expect(logger.warnings[1]).toMatch(
      new RegExp(`^redisware: Redis connection to ${server.url.replace(/[.]/g, '\\.')} is back after \\d+ ms$`),
    );

    await server.stop();
    await eventCount(client, 'reconnecting', 3);
    expect(logger.warnings).toHaveLength(3);
    expect(logger.warnings[2]).toMatch(/failed: .*ECONNREFUSED/);
  });

  it('reports the end of an outage as a redis.recovered event (source connection) with how long it lasted', async () => {
    const server = await privateRedis();
    const events: RediswareEvent[] = [];
    const client = track(
      createRedis({
        url: server.url,
        logger: silentLogger,
        retry: { baseDelay: 10, maxDelay: 50 },
        onEvent: (event) => events.push(event),
      }) as Redis,
    );
    await client.ping();
    expect(events.filter((event) => event.type === 'redis.recovered')).toEqual([]);

    const lost = Date.now();
    await server.stop();
    await eventCount(client, 'reconnecting', 3);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const ready = eventCount(client, 'ready', 1);
    await server.restart();
    await ready;
    const outage = Date.now() - lost;

    const recovered = events.filter((event) => event.type === 'redis.recovered');
    expect(recovered).toEqual([{ type: 'redis.recovered', source: 'connection', downMs: expect.any(Number) }]);
    const { downMs } = recovered[0] as { downMs: number };
    expect(downMs).toBeGreaterThanOrEqual(200);
    expect(downMs).toBeLessThanOrEqual(outage);

    // A reconnection without an outage (nothing failed) is no recovery.
    const end = eventCount(client, 'end', 1);
    await client.quit();
    await end;
    await client.connect();
    expect(events.filter((event) => event.type === 'redis.recovered')).toHaveLength(1);
  });
});

describe('defaultRedis()', () => {
  it('creates one shared client on first use and closeDefaultRedis() quits it', async () => {
    const saved = process.env.REDIS_URL;
    process.env.REDIS_URL = redisUrl();
    try {
      const first = defaultRedis();
      expect(defaultRedis()).toBe(first);
      expect(await first.ping()).toBe('PONG');
      await closeDefaultRedis();
      expect(first.status).toBe('end');
      const second = defaultRedis();
      expect(second).not.toBe(first);
      await closeDefaultRedis();
    } finally {
      if (saved === undefined) delete process.env.REDIS_URL;
      else process.env.REDIS_URL = saved;
    }
  });
});

describe('a connection dropped while a command is in flight', () => {
  it('rejects the command instead of re-sending it, and the client keeps working (auto-pipelining included)', async () => {
    const server = await privateRedis();
    const admin = track(new Redis(server.url));
    const client = track(createRedis({ url: server.url, logger: silentLogger, retry: { baseDelay: 10 } }) as Redis);
    const id = await client.client('ID');
    await admin.call('CLIENT', 'PAUSE', '5000', 'WRITE');
    // The expectation is attached at once: the rejection can come before the reply to KILL does.
    const inFlightRejected = expect(client.incr('dropped-counter')).rejects.toThrow(/not re-sent/);
    const ready = eventCount(client, 'ready', 1);
    try {
      await admin.client('KILL', 'ID', String(id));
      await inFlightRejected;
      await ready;
    } finally {
      await admin.call('CLIENT', 'UNPAUSE');
    }
    expect(await client.get('dropped-counter')).toBeNull();
    expect(await client.incr('after-reconnect')).toBe(1);
  });
});
