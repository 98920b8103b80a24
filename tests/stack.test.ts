// The suite runs once per supported major of Express and ioredis (vitest.config.ts aliases the packages): this
// checks that each run really has the majors it is named after, in the tests and in lib/ alike.
import express from 'express';
import { Redis } from 'ioredis';
import { describe, expect, inject, it } from 'vitest';
import { createRedis } from '../lib/index.js';

describe('the stack this run tests', () => {
  it('has the Express and ioredis majors the project names', async () => {
    const stack = inject('stack');
    const { default: expressPackage } = await import('express/package.json', { with: { type: 'json' } });
    const { default: ioredisPackage } = await import('ioredis/package.json', { with: { type: 'json' } });
    expect(Number(expressPackage.version.split('.')[0])).toBe(stack.express);
    expect(Number(ioredisPackage.version.split('.')[0])).toBe(stack.ioredis);
    // Express 5 dropped app.del; ioredis 6 speaks RESP3 by default.
    expect(typeof (express.application as unknown as { del?: unknown }).del === 'function').toBe(stack.express === 4);
    const client = createRedis({ lazyConnect: true });
    try {
      expect(client).toBeInstanceOf(Redis);
      expect((client.options as { protocol?: number }).protocol === 3).toBe(stack.ioredis === 6);
    } finally {
      client.disconnect();
    }
  });
});
