// A response whose end redisware holds (a session saved, a cache invalidated, first) ends as it would without
// redisware, also when the handler's own end() is wrong: the same 500, never a hung request or a crashed process.

import express from 'express';
import onHeaders from 'on-headers';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { createCache, redisSession } from '../../lib/index.js';
import { secret } from '../session/support.js';
import { silentLogger, uniquePrefix, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('held-end');

const unhandled: unknown[] = [];
process.on('unhandledRejection', (reason) => void unhandled.push(reason));
afterEach(() => {
  unhandled.length = 0;
});

/** The same routes behind `middleware`, each ending its response wrongly after changing the session. */
function appBehind(middleware: express.RequestHandler) {
  const app = express();
  app.use(middleware);
  const session = (req: express.Request) => req.session as unknown as Record<string, unknown> | undefined;
  const change = (req: express.Request) => {
    const s = session(req);
    if (s) s.cart = 1;
  };
  app.all('/bad-chunk', (req, res) => {
    change(req);
    (res.end as (chunk: unknown) => void)(123);
  });
  app.all('/bad-status', (req, res) => {
    change(req);
    res.statusCode = 1000;
    res.end('x');
  });
  app.all('/login', (req, res) => {
    const s = session(req);
    if (s) s.userId = 'u1';
    (res.end as (chunk: unknown) => void)(123);
  });
  // What Node accepts, odd as it is: a status code that truncates to one, an end() with a falsy chunk.
  app.all('/string-status', (req, res) => {
    change(req);
    (res as unknown as { statusCode: unknown }).statusCode = '201';
    res.end('created');
  });
  app.all('/fractional-status', (req, res) => {
    change(req);
    res.statusCode = 200.7;
    res.end('fine');
  });
  app.all('/end-zero', (req, res) => {
    change(req);
    (res.end as (chunk: unknown) => void)(0);
  });
  app.use((error: Error, _req: express.Request, res: express.Response, next: express.NextFunction) => {
    if (res.headersSent) return next(error);
    res.status(500).send(`failed: ${error.name}`);
  });
  return app;
}

const stacks: [string, () => express.RequestHandler][] = [
  ['plain Express', () => (_req, _res, next) => next()],
  [
    'redisSession()',
    () => redisSession({ secret, redis: redis.client(), prefix: uniquePrefix('held'), logger: silentLogger }),
  ],
  [
    "the cache's invalidation of an unsafe request",
    () => createCache({ redis: redis.client(), prefix: uniquePrefix('held'), logger: silentLogger }).response(),
  ],
];

describe.each(stacks)('a handler that ends its response wrongly, behind %s', (_name, middleware) => {
  it.each([
    ['GET', '/bad-chunk'],
    ['POST', '/bad-chunk'],
    ['GET', '/bad-status'],
    ['POST', '/bad-status'],
    ['GET', '/login'],
  ])('%s %s answers 500 through the error handler, as plain Express does', async (method, path) => {
    const app = appBehind(middleware());
    const response = await request(app)[method.toLowerCase() as 'get' | 'post'](path).timeout(3_000);
    expect(response.status).toBe(500);
    expect(response.text).toMatch(/^failed: (TypeError|RangeError)/);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(unhandled).toEqual([]);
  });
});

describe.each(stacks)('what Node accepts of res.end, behind %s', (_name, middleware) => {
  it.each([
    ['GET', '/string-status', 201, 'created'],
    ['POST', '/string-status', 201, 'created'],
    ['GET', '/fractional-status', 200, 'fine'],
    ['GET', '/end-zero', 200, ''],
    ['POST', '/end-zero', 200, ''],
  ])('%s %s answers %i as without redisware', async (method, path, status, body) => {
    const app = appBehind(middleware());
    const response = await request(app)[method.toLowerCase() as 'get' | 'post'](path).timeout(3_000);
    expect([response.status, response.text ?? '']).toEqual([status, body]);
  });
});

describe('a failure as a held end goes out', () => {
  it('closes the connection instead of leaving the request unanswered, and reports it', async () => {
    const app = express();
    // Middleware in front whose header listener throws: it runs as the held end goes out, after the handler's turn.
    app.use((_req, res, next) => {
      onHeaders(res, () => {
        throw new Error('a header listener failed');
      });
      next();
    });
    app.use(redisSession({ secret, redis: redis.client(), prefix: uniquePrefix('held'), logger: silentLogger }));
    app.get('/', (req, res) => {
      (req.session as unknown as Record<string, unknown>).cart = 1;
      res.send('ok');
    });
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      await expect(request(app).get('/').timeout(3_000)).rejects.toThrow(/socket hang up|ECONNRESET/);
      expect(warnings.map((w) => w.message)).toContain('a header listener failed');
      expect(unhandled).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });
});
