import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type { RateLimitMiddleware } from '../../lib/index.js';

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
