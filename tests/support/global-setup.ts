// Gives every test file a Redis: REDIS_URL when set (an external server the suite must not flush),
// otherwise a private redis-server started here and stopped after the run.
import { Redis } from 'ioredis';
import type { TestProject } from 'vitest/node';
import { type EmbeddedRedis, startEmbeddedRedis } from '../../support/embedded-redis.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    redisIsPrivate: boolean;
    /** The majors of Express and ioredis this project runs the suite on (see vitest.config.ts). */
    stack: { express: number; ioredis: number };
  }
}

let server: EmbeddedRedis | undefined;

export async function setup(project: TestProject): Promise<void> {
  const external = process.env.REDIS_URL;
  if (!external) server = await startEmbeddedRedis();
  const url = external ?? (server as EmbeddedRedis).url;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await probe.connect();
    await probe.ping();
  } finally {
    probe.disconnect();
  }
  project.provide('redisUrl', url);
  project.provide('redisIsPrivate', !external);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}
