import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type { RateLimitMiddleware, RateLimitOptions } from '../../lib/index.js';
import { parseOptions } from '../../lib/options.js';
import { limiterKeys, limiterNamespace } from '../../lib/rate-limit/namespace.js';
import { rateLimitSchema } from '../../lib/rate-limit/options.js';

/** An app with `limiter` in front of a few routes, and an error handler that reports errors as JSON. */
export function appWith(limiter: RateLimitMiddleware, configure?: (app: Express) => void): Express {
  const app = express();
  configure?.(app);
  app.use(limiter);
  app.get('/', (req, res) => {
    res.json({ rateLimit: req.rateLimit ?? null });
  });
  app.get('/fail', (_req, res) => {
    res.status(500).send('failed');
  });
  app.get('/not-found', (_req, res) => {
    res.status(404).send('nope');
  });
  app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).json({ error: error.message });
  });
  return app;
}

/**
 * The Redis keys under which a limiter made with `options` counts `client` (one per rule), as the limiter builds
 * them: for tests that read or plant what lies in Redis.
 */
export function counterKeys(options: RateLimitOptions, client: string): string[] {
  const config = parseOptions('rateLimit', rateLimitSchema, options);
  const rules = Array.isArray(config.limit) ? config.limit.map((rule) => rule.name) : undefined;
  return limiterKeys(config.prefix, limiterNamespace(config), rules).of(client);
}

/** The one key of a one-rule limiter made with `options` for `client`. */
export const counterKey = (options: RateLimitOptions, client: string): string => counterKeys(options, client)[0];
