// A strict limiter on the login route beside a loose one for everything: 5 failed logins per 15 minutes per
// client and username (a success does not count), and 300 requests per 15 minutes per client overall.
//   npx tsx examples/login-limiter.ts
import express from 'express';
import { type RedisClient, rateLimit } from '../lib/index.js';
import { isMain, runExample } from './run.js';

export function createApp(redis: RedisClient, options: { prefix?: string } = {}) {
  const prefix = options.prefix ?? 'rate';
  const app = express();
  app.use(express.json());
  app.use(rateLimit({ redis, prefix: `${prefix}:all`, limit: 300, window: '15m' }));

  const loginLimiter = rateLimit({
    redis,
    prefix: `${prefix}:login`,
    limit: 5,
    window: '15m',
    // Per client and per username: one attacker cannot lock everyone out of one account from many addresses
    // unnoticed, nor try many accounts from one address.
    key: (req) => `${req.ip}:${String(req.body?.username ?? '').toLowerCase()}`,
    skipSuccessfulRequests: true,
  });

  app.post('/login', loginLimiter, (req, res) => {
    if (req.body?.username === 'ada' && req.body?.password === 'lovelace') return void res.json({ ok: true });
    res.status(401).json({ error: 'wrong username or password' });
  });
  app.get('/', (_req, res) => {
    res.json({ hello: 'world' });
  });
  return app;
}

if (isMain(import.meta.url)) await runExample((redis) => createApp(redis));
