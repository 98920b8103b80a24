// A request's async context (AsyncLocalStorage: request ids, tracing spans) survives every middleware's Redis call,
// also when the calls of many concurrent requests travel to Redis together in one batch.
import { AsyncLocalStorage } from 'node:async_hooks';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { describe, expect, it } from 'vitest';
import { createCache, rateLimit, redisSession } from '../../lib/index.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('async-context');
const secret = 'a-test-secret-that-is-long-enough-0001';

describe.each([true, false])('with batch: %s', (batch) => {
  it('every handler after rateLimit(), redisSession() and a cached route runs in its own request’s context', async () => {
    const context = new AsyncLocalStorage<string>();
    const common = { redis: redis.client(), logger: silentLogger, batch };
    const app = express();
    app.use((req, _res, next) => context.run(String(req.query.id), next));
    app.use(rateLimit({ ...common, prefix: uniquePrefix('ctx-rl'), limit: 10_000 }));
    app.use(redisSession({ ...common, secret, prefix: uniquePrefix('ctx-session') }));
    const cache = createCache({ ...common, prefix: uniquePrefix('ctx-cache') });
    app.get('/', cache.response({ key: (req) => String(req.query.id) }), (req, res) => {
      res.json({ asked: req.query.id, seen: context.getStore() });
    });
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    try {
      const ids = Array.from({ length: 100 }, (_, i) => `r${i}`);
      const answers = await Promise.all(
        ids.map(async (id) => {
          const response = await fetch(`http://127.0.0.1:${port}/?id=${id}`);
          return (await response.json()) as { asked: string; seen?: string };
        }),
      );
      expect(answers.filter((answer) => answer.asked !== answer.seen)).toEqual([]);
    } finally {
      server.close();
    }
  });
});
