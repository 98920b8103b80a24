// Two rateLimit() instances never count into the same key unless the app says they share one (a `name`, or the same
// explicit `prefix` and rules).
// Apps rarely call rateLimit() inline on every route: they make limiters in a loop or through a helper of their own.
import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { type RateLimitOptions, rateLimit } from '../../lib/index.js';
import { recordingLogger, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('limiters-made-alike');

/** Each route's own budget is 3: either the 4th request of /b after 3 of /a passes, or the app was warned. */
async function expectApartOrWarned(
  mount: (app: express.Express, logger: ReturnType<typeof recordingLogger>) => void,
  client: string,
) {
  const logger = recordingLogger();
  const app = express();
  app.set('trust proxy', 1);
  mount(app, logger);
  for (let i = 0; i < 3; i++) {
    expect((await request(app).get('/a').set('X-Forwarded-For', client)).status).toBe(200);
  }
  const b = await request(app).get('/b').set('X-Forwarded-For', client);
  if (b.status !== 200) {
    // Sharing is acceptable only if the app was told at creation.
    expect(logger.warnings.join('\n')).toMatch(/same Redis keys/);
  }
}

describe('per-route limiters made by the app’s own code', () => {
  it('made in a loop, one per route: each route has its own budget (or the app is warned)', async () => {
    await expectApartOrWarned((app, logger) => {
      for (const path of ['/a', '/b']) {
        app.get(
          path,
          rateLimit({ redis: redis.client(), limit: 3, window: '1m', logger }),
          (_q, r) => void r.send('ok'),
        );
      }
    }, '198.51.100.21');
  });

  it('made by a helper of the app: each route has its own budget (or the app is warned)', async () => {
    await expectApartOrWarned((app, logger) => {
      const limiter = (options: RateLimitOptions) => rateLimit({ redis: redis.client(), logger, ...options });
      // (a window no other test of this file uses: the registry of namespaces is process-wide)
      app.get('/a', limiter({ limit: 3, window: '2m' }), (_q, r) => void r.send('ok'));
      app.get('/b', limiter({ limit: 3, window: '2m' }), (_q, r) => void r.send('ok'));
    }, '198.51.100.22');
  });
});

describe('a route limiter with a higher cost behind a global limiter of the same rules', () => {
  it('still charges its cost: an export costing 5 of 10 lets at most 2 through', async () => {
    const logger = recordingLogger();
    const app = express();
    app.set('trust proxy', 1);
    // (a window no other test of this file uses: the registry of namespaces is process-wide)
    app.use(rateLimit({ redis: redis.client(), limit: 10, window: '3m', logger }));
    app.get(
      '/export',
      rateLimit({ redis: redis.client(), limit: 10, window: '3m', cost: 5, logger }),
      (_q, r) => void r.send('ok'),
    );
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      statuses.push((await request(app).get('/export').set('X-Forwarded-For', '198.51.100.23')).status);
    }
    expect(statuses.filter((status) => status === 200).length).toBeLessThanOrEqual(2);
  });
});
