// A daily job that every instance schedules and exactly one runs: `withLock` keeps two from running it at once,
// and a marker written when it is done (with an expiry) keeps a later one from running it again.
//   npx tsx examples/job-lock.ts   (three "instances" start the job at the same moment)
import { createRedis, key, LockTimeoutError, type RedisClient, withLock } from '../lib/index.js';
import { exampleRedisUrl, isMain } from './run.js';

export type JobOutcome = 'ran' | 'already done' | 'running elsewhere';

/** Runs `job` for `day` unless it ran already or another instance is running it now. */
export async function runDailyJob(
  redis: RedisClient,
  job: () => Promise<void>,
  day = new Date().toISOString().slice(0, 10),
  prefix = 'jobs',
): Promise<JobOutcome> {
  const done = key(prefix, 'daily-report', 'done', day);
  try {
    return await withLock(
      key(prefix, 'daily-report', day),
      async (): Promise<JobOutcome> => {
        if (await redis.exists(done)) return 'already done';
        await job();
        await redis.set(done, new Date().toISOString(), 'EX', 2 * 86_400);
        return 'ran';
      },
      { redis, ttl: '30s', waitTimeout: '100ms' },
    );
  } catch (error) {
    if (error instanceof LockTimeoutError) return 'running elsewhere';
    throw error;
  }
}

async function main() {
  const { url, stop } = await exampleRedisUrl();
  const redis = createRedis(url);
  const report = async () => {
    await new Promise((resolve) => setTimeout(resolve, 500)); // building the report
  };
  const outcomes = await Promise.all([1, 2, 3].map(() => runDailyJob(redis, report)));
  console.log('three instances at once:', outcomes);
  console.log('one more, later:', await runDailyJob(redis, report));
  await redis.quit();
  await stop();
}

if (isMain(import.meta.url)) await main();
