// Strict limits on the login route beside a loose one for everything. Failed logins are limited twice: per client
// address (one address cannot try many accounts) and per account (many addresses cannot try one account). A
// successful login is not counted. The per-account limit lets anyone lock an account out for the window by
// failing on purpose; keep it loose enough, or answer with a captcha instead of a 429 (`handler`).
//   npx tsx examples/login-limiter.ts
import express from 'express';
import { type RedisClient, rateLimit } from '../lib/index.js';
import { isMain, runExample } from './run.js';

export function createApp(redis: RedisClient, options: { prefix?: string } = {}) {
  const prefix = options.prefix ?? 'rate';
  const app = express();
  app.use(express.json());
  app.use(rateLimit({ redis, prefix: `${prefix}:all`, limit: 300, window: '15m' }));

  // 20 failed logins per 15 minutes per client address, whatever the accounts.
  const perAddress = rateLimit({
    redis,
    prefix: `${prefix}:login-address`,
    limit: 20,
    window: '15m',
    skipSuccessfulRequests: true,
  });
  // 5 failed logins per 15 minutes per account, whatever the addresses.
  const perAccount = rateLimit({
    redis,
    prefix: `${prefix}:login-account`,
    limit: 5,
    window: '15m',
    key: (req) => `user:${String(req.body?.username ?? '').toLowerCase()}`,
    skipSuccessfulRequests: true,
  });

  app.post('/login', perAddress, perAccount, (req, res) => {
    if (req.body?.username === 'ada' && req.body?.password === 'lovelace') return void res.json({ ok: true });
    res.status(401).json({ error: 'wrong username or password' });
  });
  app.get('/', (_req, res) => {
    res.json({ hello: 'world' });
  });
  return app;
}

if (isMain(import.meta.url)) await runExample((redis) => createApp(redis));
