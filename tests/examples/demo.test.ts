import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import request from 'supertest';
import { afterAll, describe, expect, it } from 'vitest';
import { createDemoApp } from '../../examples/demo/app.js';
import { redisUrl, useTestRedis } from '../support/redis.js';

const repoRoot = join(import.meta.dirname, '..', '..');

describe('demo app', () => {
  const redis = useTestRedis('demo');

  it('serves the live page on GET /, and lists its routes to a client asking for JSON', async () => {
    const app = createDemoApp(redis.client(), { prefix: redis.prefix });
    const page = await request(app).get('/').expect(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.text).toContain('<script src="/demo.js" defer></script>');
    expect((await request(app).get('/demo.js').expect(200)).headers['content-type']).toMatch(/javascript/);
    const list = await request(app).get('/').set('Accept', 'application/json').expect(200);
    expect(list.body.routes).toHaveProperty('GET /visits');
  });

  it('counts visits in a key that has a TTL', async () => {
    const app = createDemoApp(redis.client(), { prefix: redis.prefix });
    const first = await request(app).get('/visits').expect(200);
    const second = await request(app).get('/visits').expect(200);
    expect(second.body.visits).toBe(first.body.visits + 1);
    expect(first.body.key).toBe(`${redis.prefix}:visits`);
    expect(await redis.client().ttl(first.body.key)).toBeGreaterThan(0);
  });

  it('rate limits GET /limited to 5 requests per minute', async () => {
    const app = createDemoApp(redis.client(), { prefix: redis.prefix });
    for (let i = 0; i < 5; i++) await request(app).get('/limited').expect(200);
    const limited = await request(app).get('/limited').expect(429);
    expect(limited.headers['retry-after']).toBeDefined();
  });

  it('logs in (new session id), says who I am, and logs out', async () => {
    const agent = request.agent(createDemoApp(redis.client(), { prefix: redis.prefix }));
    expect((await agent.get('/me').expect(200)).body.loggedIn).toBe(false);
    await agent.post('/login').send({ user: 'ada', password: 'lovelace' }).expect(303);
    const me = (await agent.get('/me').expect(200)).body;
    expect(me).toMatchObject({ loggedIn: true, userId: 'ada' });
    expect(me.sessionsOfThisUser).toHaveLength(1);
    await agent.post('/logout').expect(303);
    expect((await agent.get('/me').expect(200)).body.loggedIn).toBe(false);
  });

  it('caches GET /cached (slow handler) and invalidates it on POST /cached/invalidate', async () => {
    const app = createDemoApp(redis.client(), { prefix: redis.prefix });
    const miss = await request(app).get('/cached').expect(200);
    expect(miss.headers['x-cache']).toBe('MISS');
    const hit = await request(app).get('/cached').expect(200);
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(hit.body.generatedAt).toBe(miss.body.generatedAt);
    expect((await request(app).post('/cached/invalidate').expect(200)).body).toEqual({ invalidated: 1 });
    expect((await request(app).get('/cached')).headers['x-cache']).toBe('MISS');
  });

  it('shows key() and rejects empty parts with a 400', async () => {
    const app = createDemoApp(redis.client(), { prefix: redis.prefix });
    expect((await request(app).get('/key/user,abc123').expect(200)).body.key).toBe('user:abc123');
    await request(app).get('/key/user,,x').expect(400);
  });
});

describe('npm run demo (server.ts)', () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    child?.kill('SIGKILL');
  });

  /** Runs server.ts with `env` (and PORT=0); resolves to the URL it says it listens on, and what it printed. */
  async function startDemo(env: NodeJS.ProcessEnv): Promise<{ url: string; output: () => string }> {
    child = spawn(process.execPath, ['--import', 'tsx', 'examples/demo/server.ts'], {
      cwd: repoRoot,
      env: { ...env, PORT: '0' },
    });
    let output = '';
    const url = await new Promise<string>((resolve, reject) => {
      child?.stdout?.on('data', (chunk: Buffer) => {
        output += chunk;
        const match = /listening on (http:\/\/\S+?)\/? /.exec(output);
        if (match) resolve(match[1]);
      });
      child?.once('exit', (code) => reject(new Error(`demo exited early (${code}): ${output}`)));
    });
    return { url, output: () => output };
  }

  async function stopDemo(): Promise<void> {
    const exited = once(child as ChildProcess, 'exit');
    child?.kill('SIGINT');
    const [code] = await exited;
    expect(code).toBe(0);
    child = undefined;
  }

  it('starts an embedded Redis without REDIS_URL, answers on PORT, and exits cleanly on SIGINT', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.REDIS_URL;
    delete env.HOST;
    const { url, output } = await startDemo(env);
    expect(output()).toMatch(/embedded redis-server/);

    const response = await fetch(`${url}/health`);
    expect(await response.json()).toEqual({ redis: 'PONG' });

    // Only on 127.0.0.1 unless told otherwise: another address of this machine is not answered.
    const { hostname, port } = new URL(url);
    expect(hostname).toBe('127.0.0.1');
    await expect(fetch(`http://127.0.0.2:${port}/health`)).rejects.toThrow();

    await stopDemo();
  });

  it('listens where HOST says, and says where', async () => {
    const { url, output } = await startDemo({ ...process.env, REDIS_URL: redisUrl(), HOST: '127.0.0.2' });
    expect(new URL(url).hostname).toBe('127.0.0.2');
    expect(output()).toMatch(/listening on http:\/\/127\.0\.0\.2:\d+\//);
    expect(await (await fetch(`${url}/health`)).json()).toEqual({ redis: 'PONG' });
    await expect(fetch(url.replace('127.0.0.2', '127.0.0.1'))).rejects.toThrow();
    await stopDemo();
  });
});
