import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const script = join(import.meta.dirname, 'memory.child.ts');

describe('memory while Redis is down', () => {
  it('stays flat: 20,000 failed requests through rateLimit, redisSession, cacheResponse and cache.get retain under 5 MB', async () => {
    // In a process of its own, with --expose-gc: the heap is measured after full collections.
    const { stdout } = await run(process.execPath, ['--expose-gc', '--import', 'tsx', script, '5000'], {
      cwd: join(import.meta.dirname, '..', '..'),
      timeout: 60_000,
    });
    const result = JSON.parse(stdout.trim().split('\n').at(-1) as string) as { retainedBytes: number; status: string };
    expect(result.status).not.toBe('ready'); // Redis really was down throughout
    expect(result.retainedBytes).toBeLessThan(5 * 1024 * 1024);
  }, 90_000);
});
