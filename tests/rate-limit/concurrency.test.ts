import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { rateLimit } from '../../lib/index.js';
import { silentLogger, useTestRedis } from '../support/redis.js';
import { appWith, counterKey } from './support.js';

const redis = useTestRedis('rate-limit-concurrency');

describe.each(['fixed-window', 'sliding-window', 'token-bucket'] as const)('%s under concurrency', (algorithm) => {
  it('lets exactly `limit` of many concurrent requests through two apps with separate connections', async () => {
    const limit = 25;
    const prefix = `${redis.prefix}:${algorithm}`;
    const options = { prefix, limit, window: '1m', algorithm, key: () => 'shared-client', logger: silentLogger };
    const apps = [
      appWith(rateLimit({ ...options, redis: redis.newClient() })),
      appWith(rateLimit({ ...options, redis: redis.newClient() })),
    ];
    const responses = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        request(apps[i % 2])
          .get('/')
          .then((r) => r.status),
      ),
    );
    expect(responses.filter((status) => status === 200)).toHaveLength(limit);
    expect(responses.filter((status) => status === 429)).toHaveLength(200 - limit);
    expect(await redis.client().pttl(counterKey(options, 'shared-client'))).toBeGreaterThan(0);
  });
});
