// Packs the package as npm would publish it, installs the tarball elsewhere and uses it as ESM, CJS and TypeScript.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repoRoot = join(import.meta.dirname, '..');
const consumer = mkdtempSync(join(tmpdir(), 'redisware-consumer-'));
const run = (file: string, args: string[]) =>
  execFileSync(file, args, { cwd: consumer, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

beforeAll(() => {
  if (!existsSync(join(repoRoot, 'dist', 'index.js'))) {
    execFileSync('npm', ['run', 'build'], { cwd: repoRoot, stdio: 'ignore' });
  }
  execFileSync('npm', ['pack', '--silent', '--pack-destination', consumer], { cwd: repoRoot, stdio: 'ignore' });
  const tarball = readdirSync(consumer).find((file) => file.endsWith('.tgz')) as string;
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--silent', `./${tarball}`]);
}, 120_000);

afterAll(() => rmSync(consumer, { recursive: true, force: true }));

// SessionStore needs express-session, an optional peer the consumer did not install: it says so.
const probe =
  "JSON.stringify({ key: m.key('user', 'a:b'), createRedis: typeof m.createRedis, rateLimitStore: typeof new m.RateLimitStore().increment, sessionStore: (() => { try { new m.SessionStore(); return 'constructed'; } catch (error) { return error.message; } })() })";
const expected = {
  key: 'user:a%3Ab',
  createRedis: 'function',
  rateLimitStore: 'function',
  sessionStore: 'SessionStore: express-session is not installed (npm install express-session)',
};

describe('the packed package', () => {
  it('ships only the build output, README and package.json', () => {
    const listing = run('tar', ['-tzf', readdirSync(consumer).find((f) => f.endsWith('.tgz')) as string]);
    const files = listing.trim().split('\n');
    expect(files).toContain('package/dist/index.js');
    expect(files).toContain('package/dist/index.d.ts');
    expect(files.filter((f) => /\/(lib|tests|examples)\//.test(f))).toEqual([]);
  });

  it('can be imported as ESM', () => {
    const output = run(process.execPath, [
      '--input-type=module',
      '-e',
      `import * as m from 'redisware'; console.log(${probe})`,
    ]);
    expect(JSON.parse(output)).toEqual(expected);
  });

  it('can be required as CommonJS', () => {
    const output = run(process.execPath, [
      '--no-warnings',
      '-e',
      `const m = require('redisware'); console.log(${probe})`,
    ]);
    expect(JSON.parse(output)).toEqual(expected);
  });

  it('exports redisware/metrics (ESM and CommonJS), which names the optional peer it needs when it is missing', () => {
    const probeMetrics = (load: string) =>
      `${load}; console.log(JSON.stringify({ prometheus: typeof m.prometheusMetrics, error: (() => { try { m.prometheusMetrics(); return 'none'; } catch (error) { return error.message; } })() }))`;
    const expectedMetrics = {
      prometheus: 'function',
      error: "redisware prometheusMetrics() needs the package 'prom-client': npm install prom-client",
    };
    const esm = run(process.execPath, [
      '--input-type=module',
      '-e',
      probeMetrics("const m = await import('redisware/metrics')"),
    ]);
    expect(JSON.parse(esm)).toEqual(expectedMetrics);
    const cjs = run(process.execPath, ['--no-warnings', '-e', probeMetrics("const m = require('redisware/metrics')")]);
    expect(JSON.parse(cjs)).toEqual(expectedMetrics);
  });

  it.each([
    ['5', 'express'],
    ['4', 'express4'],
  ])(
    'type-checks a TypeScript consumer on @types/express %s (with @types/node and its own ioredis)',
    (_major, types) => {
      // The consumer's @types: the repository's, with @types/express of the major under test.
      const typesDir = join(consumer, 'node_modules', '@types');
      rmSync(typesDir, { recursive: true, force: true });
      mkdirSync(typesDir, { recursive: true });
      for (const entry of readdirSync(join(repoRoot, 'node_modules', '@types'))) {
        if (entry === 'express' || entry === 'express4') continue;
        symlinkSync(join(repoRoot, 'node_modules', '@types', entry), join(typesDir, entry), 'dir');
      }
      symlinkSync(join(repoRoot, 'node_modules', '@types', types), join(typesDir, 'express'), 'dir');
      writeFileSync(
        join(consumer, 'consumer.ts'),
        [
          "import express, { type Request, type Response } from 'express';",
          "import { Redis } from 'ioredis';",
          'import {',
          '  cacheResponse,',
          '  createCache,',
          '  createRedis,',
          '  key,',
          '  keyspace,',
          '  rateLimit,',
          '  redisSession,',
          '  type RedisClient,',
          '  type Session,',
          '  withLock,',
          "} from 'redisware';",
          "declare module 'redisware' { interface SessionData { userId: string } }",
          'const app = express();',
          "const own = new Redis('redis://127.0.0.1:6379', { lazyConnect: true });",
          "app.use(rateLimit({ limit: 5, redis: own }), redisSession({ secret: 'x'.repeat(32), redis: own }));",
          "app.get('/', (req, res) => { const user: string | undefined = req.session.userId; res.json({ user, rl: req.rateLimit?.remaining }); });",
          "app.get('/cached', cacheResponse({ ttl: '1m' }), (_req: Request, res: Response) => { res.send('ok'); });",
          "app.post('/login', async (req, res) => { await req.session.regenerate(); req.session.userId = 'u1'; res.redirect('/'); });",
          'const cache = createCache({ redis: own, batch: false });',
          "app.get('/data', async (_req, res) => { res.json(await cache.wrap('k', () => ({ a: 1 }))); });",
          'const session: Session = {} as Session; void session.id;',
          '// @ts-expect-error: SessionData says userId is a string',
          "app.get('/bad', (req) => { req.session.userId = 42; });",
          "const client: RedisClient = createRedis({ url: 'redis://127.0.0.1:6379', lazyConnect: true });",
          "const k: string = key('user', 1);",
          "const appKey: string = keyspace('app')('x');",
          "void withLock('job', () => 1, { redis: own, onEvent: (event) => { if (event.type === 'lock.timeout') console.log(event.resource); } });",
          "app.use(rateLimit({ onEvent: (event) => { if (event.type === 'rateLimit.blocked') console.log(event.retryAfter); } }));",
          'void client; void k; void appKey;',
          '// @ts-expect-error: unknown options are a type error too',
          'createRedis({ bogus: true });',
        ].join('\n'),
      );
      writeFileSync(
        join(consumer, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            module: 'nodenext',
            moduleResolution: 'nodenext',
            strict: true,
            noEmit: true,
            skipLibCheck: true,
            types: ['node'],
          },
          files: ['consumer.ts'],
        }),
      );
      try {
        run(process.execPath, [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.']);
      } catch (error) {
        throw new Error(`tsc failed:\n${(error as { stdout: string }).stdout}`);
      }
    },
  );
});
