// The demo app: one Express app showing each part of redisware. server.ts runs it; the tests drive it directly.
import express, { type Express } from 'express';
import { key, keyspace, type RedisClient } from '../../lib/index.js';

const demoKey = keyspace('demo');

/** Builds the demo app on `redis`. */
export function createDemoApp(redis: RedisClient): Express {
  const app = express();

  app.get('/', (_req, res) => {
    res.json({
      name: 'redisware demo',
      routes: {
        'GET /': 'this list',
        'GET /key/:parts': "key() on the comma-separated parts, e.g. /key/user,abc123 → 'user:abc123'",
        'GET /visits': 'a counter in Redis (INCR and EXPIRE in one MULTI: the key always has a TTL)',
        'GET /health': 'PING Redis',
      },
    });
  });

  app.get('/key/:parts', (req, res) => {
    const parts = req.params.parts.split(',');
    try {
      res.json({ parts, key: key(...parts), inDemoKeyspace: demoKey(...parts) });
    } catch (error) {
      res.status(400).json({ error: (error as Error).message });
    }
  });

  app.get('/visits', async (_req, res, next) => {
    try {
      const counter = demoKey('visits');
      const [[, visits]] = (await redis.multi().incr(counter).expire(counter, 3600).exec()) as [[null, number]];
      res.json({ key: counter, visits, ttlSeconds: 3600 });
    } catch (error) {
      next(error);
    }
  });

  app.get('/health', async (_req, res) => {
    try {
      res.json({ redis: await redis.ping() });
    } catch (error) {
      res.status(503).json({ redis: (error as Error).message });
    }
  });

  return app;
}
