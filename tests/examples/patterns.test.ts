// Every example in examples/ does what its header says, so that none of them can rot: each app through supertest on
// the suite's Redis, and the two-process ones (pub/sub, graceful shutdown) as real processes.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { get } from 'node:http';
import { join } from 'node:path';
import request from 'supertest';
import { afterAll, describe, expect, it } from 'vitest';
import { createApp as cacheAsideApp, fakeUsersTable } from '../../examples/cache-aside.js';
import { runDailyJob } from '../../examples/job-lock.js';
import { createApp as loginApp } from '../../examples/login.js';
import { createApp as loginLimiterApp } from '../../examples/login-limiter.js';
import { channel, publish, subscribe } from '../../examples/pubsub.js';
import { createApp as sessionsAndCacheApp } from '../../examples/sessions-and-cache.js';
import { createRedis, key } from '../../lib/index.js';
import { privateRedis } from '../support/private-redis.js';
import { redisUrl, silentLogger, subscribers, uniquePrefix, useTestRedis } from '../support/redis.js';

const redis = useTestRedis('examples');
const repoRoot = join(import.meta.dirname, '..', '..');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
});

/** Runs an example file with tsx; resolves once its output matches `ready`. */
function runFile(file: string, args: string[], env: NodeJS.ProcessEnv, ready: RegExp) {
  const child = spawn(process.execPath, ['--import', 'tsx', file, ...args], { cwd: repoRoot, env });
  children.push(child);
  let output = '';
  const started = new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk;
      if (ready.test(output)) resolve();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk;
    });
    child.once('exit', (code) => reject(new Error(`${file} exited early (${code}): ${output}`)));
  });
  return { child, started, output: () => output };
}

describe('examples/cache-aside.ts', () => {
  it('loads a user once, serves it from the cache, and shows the update right after a PUT', async () => {
    const users = fakeUsersTable();
    const app = cacheAsideApp(redis.client(), { prefix: uniquePrefix('aside'), users });
    expect((await request(app).get('/users/1').expect(200)).body).toEqual({ id: '1', name: 'Ada' });
    await request(app).get('/users/1').expect(200);
    expect(users.reads).toBe(1);
    await request(app).put('/users/1').send({ name: 'Ada L.' }).expect(200);
    expect((await request(app).get('/users/1').expect(200)).body.name).toBe('Ada L.');
    expect(users.reads).toBe(2);
    await request(app).get('/users/9').expect(404);
  });
});

describe('examples/login.ts', () => {
  it('logs in under a new session id, says who is logged in, and logs out', async () => {
    const agent = request.agent(loginApp(redis.client(), { prefix: uniquePrefix('login') }));
    await agent.post('/login').send({ username: 'ada', password: 'wrong' }).expect(401);
    const login = await agent.post('/login').send({ username: 'ada', password: 'lovelace' }).expect(200);
    expect(String(login.headers['set-cookie'])).toMatch(/sid=/);
    expect((await agent.get('/me').expect(200)).body).toEqual({ userId: 'u1' });
    await agent.post('/logout').expect(200);
    await agent.get('/me').expect(401);
  });

  it('logs a user out of every session at once', async () => {
    const app = loginApp(redis.client(), { prefix: uniquePrefix('login') });
    const laptop = request.agent(app);
    const phone = request.agent(app);
    for (const device of [laptop, phone]) {
      await device.post('/login').send({ username: 'grace', password: 'hopper' }).expect(200);
    }
    expect((await phone.post('/logout-everywhere').expect(200)).body.ended).toBe(2);
    await laptop.get('/me').expect(401);
  });
});

describe('examples/login-limiter.ts', () => {
  const login = (app: ReturnType<typeof loginLimiterApp>, username: string, password: string, address = '10.0.0.1') =>
    request(app).post('/login').set('X-Forwarded-For', address).send({ username, password });

  it('blocks a sixth failed login to one account, from any address; a success and other routes are not counted', async () => {
    const app = loginLimiterApp(redis.client(), { prefix: uniquePrefix('limiter') });
    app.set('trust proxy', true);
    await login(app, 'ada', 'lovelace').expect(200);
    for (let i = 0; i < 5; i++) await login(app, 'ada', 'x', `10.0.1.${i}`).expect(401);
    const blocked = await login(app, 'ada', 'x', '10.0.2.1').expect(429);
    expect(blocked.headers['retry-after']).toBeDefined();
    await login(app, 'grace', 'x', '10.0.2.1').expect(401); // another account
    await request(app).get('/').expect(200);
  });

  it('blocks one address that tries many accounts', async () => {
    const app = loginLimiterApp(redis.client(), { prefix: uniquePrefix('limiter') });
    app.set('trust proxy', true);
    for (let i = 0; i < 20; i++) await login(app, `user${i}`, 'x').expect(401);
    await login(app, 'user99', 'x').expect(429);
    await login(app, 'user99', 'x', '10.9.9.9').expect(401); // another address
  });
});

describe('examples/sessions-and-cache.ts', () => {
  it('caches public pages for everyone, never shares a page made from a session, and caches one per session', async () => {
    const app = sessionsAndCacheApp(redis.client(), { prefix: uniquePrefix('both') });
    const ada = request.agent(app);
    const bob = request.agent(app);
    await ada.post('/login/ada').expect(200);
    await bob.post('/login/bob').expect(200);

    const news = (await ada.get('/news')).body;
    expect((await bob.get('/news')).body).toEqual(news); // one copy for everyone

    expect((await ada.get('/hello')).body.hello).toBe('ada');
    expect((await bob.get('/hello')).body.hello).toBe('bob');
    expect((await bob.get('/hello')).headers['x-cache']).not.toBe('HIT');

    const dashboard = await ada.get('/dashboard');
    const again = await ada.get('/dashboard');
    expect(again.headers['x-cache']).toBe('HIT');
    expect(again.body).toEqual(dashboard.body);
    expect((await bob.get('/dashboard')).body.dashboardOf).toBe('bob');
  });
});

describe('examples/pubsub.ts', () => {
  it('delivers to a subscriber on its own connection, which resubscribes after Redis restarts', async () => {
    const server = await privateRedis();
    const client = createRedis({ url: server.url, logger: silentLogger });
    const received: string[] = [];
    const subscription = await subscribe(client, (message) => received.push(message));
    await publish(client, 'one');
    await server.restart();
    // ioredis reconnects both connections and subscribes the subscriber again by itself.
    for (let i = 0; i < 100 && (await publish(client, 'ping').catch(() => 0)) === 0; i++) await sleep(50);
    await publish(client, 'two');
    for (let i = 0; i < 50 && !received.includes('two'); i++) await sleep(20);
    expect(received[0]).toBe('one');
    expect(received).toContain('two');
    await subscription.close();
    client.disconnect();
  });

  it('runs as two processes: a subscriber process receives what this one publishes', async () => {
    const url = redisUrl();
    const subscriber = runFile('examples/pubsub.ts', ['subscriber'], { ...process.env, REDIS_URL: url }, /subscribed/);
    await subscriber.started;
    const publisher = createRedis({ url, logger: silentLogger });
    await subscribers([publisher as never], channel, 1);
    await publish(publisher, JSON.stringify({ order: 42 }));
    for (let i = 0; i < 100 && !subscriber.output().includes('order'); i++) await sleep(20);
    expect(subscriber.output()).toContain('received: {"order":42}');
    subscriber.child.kill();
    await publisher.quit();
  });
});

describe('examples/job-lock.ts', () => {
  it('of instances starting the daily job at once, exactly one runs it, and a later one finds it done', async () => {
    let runs = 0;
    let running = 0;
    let overlapped = false;
    const job = async () => {
      runs++;
      running++;
      if (running > 1) overlapped = true;
      await sleep(300);
      running--;
    };
    const prefix = uniquePrefix('jobs');
    const outcomes = await Promise.all([1, 2, 3].map(() => runDailyJob(redis.client(), job, '2026-12-01', prefix)));
    expect(outcomes.sort()).toEqual(['ran', 'running elsewhere', 'running elsewhere']);
    expect(await runDailyJob(redis.client(), job, '2026-12-01', prefix)).toBe('already done');
    expect(runs).toBe(1);
    expect(overlapped).toBe(false);
    expect(await redis.client().ttl(key(prefix, 'daily-report', 'done', '2026-12-01'))).toBeGreaterThan(0);
  });
});

describe('examples/graceful-shutdown.ts', () => {
  it('on SIGTERM finishes the request in flight, refuses new ones, closes Redis and exits by itself', async () => {
    const run = runFile(
      'examples/graceful-shutdown.ts',
      [],
      { ...process.env, REDIS_URL: redisUrl(), PORT: '0' },
      /listening on http:\/\/127\.0\.0\.1:\d+/,
    );
    await run.started;
    const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(run.output())?.[1]);
    const inFlight = fetch(`http://127.0.0.1:${port}/slow`).then((response) => response.json());
    await sleep(100);
    const exited = once(run.child, 'exit');
    run.child.kill('SIGTERM');
    await sleep(50);
    // A new connection is refused at once.
    await expect(
      new Promise((resolve, reject) =>
        get({ host: '127.0.0.1', port, path: '/slow', agent: false }, resolve).on('error', reject),
      ),
    ).rejects.toThrow(/ECONNREFUSED/);
    expect(await inFlight).toEqual({ done: true });
    const [code] = await exited;
    expect(code).toBe(0);
    expect(run.output()).toMatch(/draining[\s\S]*closed/);
  });
});
