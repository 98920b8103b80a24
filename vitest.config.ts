import { defineConfig } from 'vitest/config';

/** Files that run a middleware inside Express: they run on Express 4 as well. */
const expressTests = [
  'tests/rate-limit/**/*.test.ts',
  'tests/session/**/*.test.ts',
  'tests/cache/**/*.test.ts',
  'tests/cluster*.test.ts',
  'tests/redis/cross-slot.test.ts',
  'tests/redis/user-client.test.ts',
  'tests/stack.test.ts',
  'tests/http/**/*.test.ts',
  'tests/adapters/**/*.test.ts',
  'tests/events.test.ts',
  'tests/metrics/**/*.test.ts',
  'tests/readiness.test.ts',
];

/** Files that talk to Redis: they run on ioredis 6 as well. */
const redisTests = [
  ...expressTests,
  'tests/lock/**/*.test.ts',
  'tests/redis/**/*.test.ts',
  'tests/connection.test.ts',
  'tests/connection-ends.test.ts',
  'tests/sentinel.test.ts',
];

/**
 * The whole suite runs on Express 5 and ioredis 5; the files above run again on Express 4 and on ioredis 6, with the
 * package aliased, so that lib/ and the tests both get the other major. Files run one at a time (vitest's default
 * on two cores): several count the commands a Redis server sees, which a concurrent file would add to.
 */
export default defineConfig({
  test: {
    globalSetup: ['tests/support/global-setup.ts'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'express5-ioredis5',
          include: ['tests/**/*.test.ts'],
          provide: { stack: { express: 5, ioredis: 5 } },
        },
      },
      {
        extends: true,
        resolve: { alias: { express: 'express4' } },
        test: {
          name: 'express4',
          include: expressTests,
          // What a Cluster node's failure does is the client's business, not Express's: those run on Express 5 only.
          exclude: ['tests/cluster-outage.test.ts', 'tests/cache/cluster-*.test.ts', 'tests/session/cluster-*.test.ts'],
          provide: { stack: { express: 4, ioredis: 5 } },
        },
      },
      {
        extends: true,
        resolve: { alias: { ioredis: 'ioredis6' } },
        test: { name: 'ioredis6', include: redisTests, provide: { stack: { express: 5, ioredis: 6 } } },
      },
    ],
  },
});
