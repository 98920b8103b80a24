// A session Redis could not give (onRedisError 'fail', Redis down), used where a throw would reach no error handler:
// Express 4 (which drops a rejected route), a callback after the route returned, a 'finish' listener. Nothing ends
// the process, and no response that used it goes out as if complete. (Express 4 and 5 are both imported here, so
// this file runs in the default project only.)
import { spawn } from 'node:child_process';
import express5 from 'express';
import express4 from 'express4';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { redisSession } from '../../lib/index.js';
import { cookiePair, secret } from '../session/support.js';
import { privateRedisWithAdmin } from '../support/private-redis.js';
import { silentLogger } from '../support/redis.js';
import { redisLink } from '../support/redis-link.js';

let link: Awaited<ReturnType<typeof redisLink>>;
beforeAll(async () => {
  const { server } = await privateRedisWithAdmin();
  link = await redisLink(server.port);
});
afterEach(() => link.restore());

type AnyExpress = typeof express5 | typeof express4;

/** An app of `express` with a login, a CSRF-checked transfer (recording its side effect) and a streamed page. */
function app(express: AnyExpress, redis: Redis, effects: string[]) {
  const session = redisSession({
    secret,
    redis,
    prefix: `unread-${Math.random()}`,
    timeout: '150ms',
    onRedisError: 'fail',
    logger: silentLogger,
  });
  // biome-ignore lint/suspicious/noExplicitAny: one app built on either major
  const a: any = (express as any)();
  // biome-ignore lint/suspicious/noExplicitAny: one app built on either major
  a.use((express as any).urlencoded({ extended: false }));
  a.use(session);
  // biome-ignore lint/suspicious/noExplicitAny: one app built on either major
  a.get('/login', (req: any, res: any) => {
    req.session.userId = 'ada';
    req.session.csrf = 'secret-token';
    res.send('ok');
  });
  // biome-ignore lint/suspicious/noExplicitAny: one app built on either major
  a.post('/transfer', (req: any, res: any) => {
    if (req.body.token !== req.session.csrf) return res.status(403).send('bad token');
    effects.push(`transfer by ${String(req.session.userId)}`);
    res.send('done');
  });
  // biome-ignore lint/suspicious/noExplicitAny: one app built on either major
  a.get('/stream', (req: any, res: any) => {
    res.write('hello ');
    res.end(String(req.session.userId ?? 'guest'));
  });
  return a;
}

describe('Express 5: a use inside the router', () => {
  it('throws before the route acts: a CSRF-checked transfer without a token answers 503 and does nothing', async () => {
    const redis = link.client();
    const effects: string[] = [];
    const a = app(express5, redis, effects);
    const cookie = cookiePair(await request(a).get('/login').expect(200));
    await link.down(redis);
    await request(a).post('/transfer').set('Cookie', cookie).type('form').send({}).expect(503);
    expect(effects).toEqual([]);
    redis.disconnect();
  });
});

describe('Express 4: no throw (it would end the process)', () => {
  it('a response that used the unread session after its head went out is cut off, never completed as a 200', async () => {
    const redis = link.client();
    const a = app(express4, redis, []);
    const cookie = cookiePair(await request(a).get('/login').expect(200));
    await link.down(redis);
    const outcome = await request(a)
      .get('/stream')
      .set('Cookie', cookie)
      .then(
        (res) => ({ completed: true, status: res.status }),
        () => ({ completed: false }),
      );
    expect(outcome).toEqual({ completed: false });
    redis.disconnect();
  });
});

async function crashes(setup: string): Promise<{ code: number | null; survived: boolean; err: string | undefined }> {
  const script = `
      import express from 'express';
      import { redisSession } from './lib/index.js';
      import { createRedis } from './lib/connection.js';
      import request from 'supertest';
      const quiet = { info(){}, warn(){}, error(){} };
      const redis = createRedis({ url: '${link.url}', retry: { baseDelay: 10, maxDelay: 50 }, logger: quiet });
      const app = express();
      app.use(redisSession({ secret: '${secret}', redis, timeout: '150ms', onRedisError: 'fail', logger: quiet }));
      ${setup}
      app.get('/login', (req, res) => { req.session.userId = 'ada'; res.send('ok'); });
      const login = await request(app).get('/login');
      const cookie = login.headers['set-cookie'][0].split(';')[0];
      console.log('LOGGED-IN');
      process.stdin.once('data', async () => {
        await request(app).get('/me').set('Cookie', cookie).timeout(2000).catch(() => {});
        console.log('SURVIVED');
        process.exit(0);
      });
    `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: process.cwd(),
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no login: ${out} ${err}`)), 15_000);
    child.stdout.on('data', () => {
      if (!out.includes('LOGGED-IN')) return;
      clearTimeout(t);
      resolve();
    });
  });
  const probe = link.client();
  await new Promise((r) => setTimeout(r, 100));
  await link.down(probe);
  await new Promise((r) => setTimeout(r, 300));
  child.stdin.write('go\n');
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  await link.restore();
  probe.disconnect();
  return { code, survived: out.includes('SURVIVED'), err: err.split('\n').find((l) => l.includes('Error')) };
}

const survives = { code: 0, survived: true, err: undefined };

describe('Express 5: a use outside the router never ends the process', () => {
  it('a read in a callback after the route returned (setImmediate, a callback-style driver)', async () => {
    expect(
      await crashes(
        `app.get('/me', (req, res) => { setImmediate(() => res.send('user ' + (req.session.userId ?? 'none'))); });`,
      ),
    ).toEqual(survives);
  }, 30_000);

  it("an access logger reading the session on res 'finish' (as a morgan token does)", async () => {
    expect(
      await crashes(`app.use((req, res, next) => { res.on('finish', () => void String(req.session.userId)); next(); });
        app.get('/me', (req, res) => res.send('hello'));`),
    ).toEqual(survives);
  }, 30_000);
});
