import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rateLimit } from '../../lib/index.js';
import { silentLogger, useTestRedis, watchCommands } from '../support/redis.js';
import { appWith } from './support.js';

const redis = useTestRedis('rate-limit-round-trips');
let client: Redis;
let watch: Awaited<ReturnType<typeof watchCommands>>;

beforeAll(async () => {
  client = redis.newClient();
  watch = await watchCommands(client);
});
afterAll(() => watch.stop());

const names = (commands: string[][]) => commands.map((args) => args[0].toLowerCase());

describe.each(['fixed-window', 'sliding-window', 'token-bucket'] as const)('%s Redis cost', (algorithm) => {
  it('sends exactly one command (EVALSHA) per counted request', async () => {
    const app = appWith(
      rateLimit({ redis: client, prefix: `${redis.prefix}:${algorithm}`, limit: 100, algorithm, logger: silentLogger }),
    );
    await request(app).get('/').expect(200); // the script may need loading once (NOSCRIPT → EVAL)
    await watch.settle();
    watch.reset();
    for (let i = 0; i < 10; i++) await request(app).get('/').expect(200);
    await watch.settle();
    expect(names(watch.sent)).toEqual(Array(10).fill('evalsha'));
    // Inside the script: at most 4 commands (e.g. INCRBY + PTTL for the fixed window).
    expect(watch.insideScripts.length).toBeLessThanOrEqual(40);
  });

  it('answers a blocked client from memory: zero Redis commands until its reset', async () => {
    const app = appWith(
      rateLimit({
        redis: client,
        prefix: `${redis.prefix}:blocked-${algorithm}`,
        limit: 2,
        algorithm,
        key: () => 'flood',
      }),
    );
    await request(app).get('/').expect(200);
    await request(app).get('/').expect(200);
    await request(app).get('/').expect(429);
    await watch.settle();
    watch.reset();
    for (let i = 0; i < 20; i++) {
      const response = await request(app).get('/').expect(429);
      expect(response.headers['retry-after']).toBeDefined();
      expect(response.headers.ratelimit).toMatch(/r=0;/);
    }
    await watch.settle();
    expect(watch.sent).toEqual([]);
  });
});

describe('blockCache: false', () => {
  it('asks Redis for every request, blocked or not', async () => {
    const app = appWith(
      rateLimit({ redis: client, prefix: `${redis.prefix}:nocache`, limit: 1, key: () => 'c', blockCache: false }),
    );
    await request(app).get('/').expect(200);
    await watch.settle();
    watch.reset();
    for (let i = 0; i < 5; i++) await request(app).get('/').expect(429);
    await watch.settle();
    expect(names(watch.sent)).toEqual(Array(5).fill('evalsha'));
  });
});
