import { defineConfig } from 'vitest/config';

/**
 * Test files that exercise a middleware through Express and Redis: they run once per supported major of Express and
 * of ioredis (the packages are aliased, so lib/ and the tests both see the other major).
 */
const behaviourTests = [
  'tests/rate-limit/**/*.test.ts',
  'tests/session/**/*.test.ts',
  'tests/cache/**/*.test.ts',
  'tests/lock/**/*.test.ts',
  'tests/cluster*.test.ts',
  'tests/connection.test.ts',
  'tests/redis/**/*.test.ts',
  'tests/stack.test.ts',
];

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
        test: { name: 'express4', include: behaviourTests, provide: { stack: { express: 4, ioredis: 5 } } },
      },
      {
        extends: true,
        resolve: { alias: { ioredis: 'ioredis6' } },
        test: { name: 'ioredis6', include: behaviourTests, provide: { stack: { express: 5, ioredis: 6 } } },
      },
    ],
  },
});
