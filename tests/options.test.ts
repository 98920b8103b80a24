import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { durationMs, fn, parseOptions } from '../lib/options.js';

const schema = z.strictObject({
  window: durationMs.default(60_000),
  limit: z.number().int().min(0).default(10),
  key: fn<(x: string) => string>().optional(),
});

describe('parseOptions()', () => {
  it('applies defaults and resolves durations', () => {
    expect(parseOptions('demo', schema, undefined)).toEqual({ window: 60_000, limit: 10 });
    expect(parseOptions('demo', schema, { window: '2s' })).toEqual({ window: 2_000, limit: 10 });
  });

  it('throws a TypeError naming the option and the bad value', () => {
    expect(() => parseOptions('demo', schema, { window: '15 minutes' })).toThrow(TypeError);
    expect(() => parseOptions('demo', schema, { window: '15 minutes' })).toThrow(
      /demo: option "window" is invalid: "15 minutes"/,
    );
    expect(() => parseOptions('demo', schema, { limit: -1 })).toThrow(/option "limit" is invalid: -1/);
    expect(() => parseOptions('demo', schema, { key: 'nope' })).toThrow(/option "key" is invalid: "nope"/);
  });

  it('shows non-finite numbers as they are, and rejects durations beyond 1000 years', () => {
    expect(() => parseOptions('demo', schema, { window: Number.POSITIVE_INFINITY })).toThrow(
      /option "window" is invalid: Infinity/,
    );
    expect(() => parseOptions('demo', schema, { limit: Number.NaN })).toThrow(/option "limit" is invalid: NaN/);
    expect(() => parseOptions('demo', schema, { window: '400000d' })).toThrow(
      /option "window" is invalid: "400000d" \(must be at most 1000 years\)/,
    );
    expect(parseOptions('demo', schema, { window: '365000d' }).window).toBe(365_000 * 86_400_000);
  });

  it('rejects unknown options by name', () => {
    expect(() => parseOptions('demo', schema, { windw: 5 })).toThrow(/demo: unknown option "windw"/);
  });

  it('does not mutate the caller’s options', () => {
    const input = Object.freeze({ window: '1s' });
    parseOptions('demo', schema, input);
    expect(input).toEqual({ window: '1s' });
  });
});

describe('secrets in option errors', () => {
  it('names the secret option and describes its bad value without showing it', async () => {
    const { redisSession } = await import('../lib/index.js');
    const weak = 'my-real-but-short-secret';
    const message = (options: unknown) => {
      try {
        redisSession(options as Parameters<typeof redisSession>[0]);
      } catch (error) {
        return (error as Error).message;
      }
      return 'no error';
    };
    expect(message({ secret: weak })).toMatch(/option "secret" is invalid: a string of 24 characters \(not shown\)/);
    expect(message({ secret: ['a-test-secret-that-is-long-enough-0001', weak] })).toMatch(
      /option "secret.1" is invalid/,
    );
    expect(message(weak)).toMatch(/options are invalid: a string of 24 characters/);
    // A factory without a secret shows a string given in place of its options.
    const { rateLimit } = await import('../lib/index.js');
    expect(() => rateLimit('100' as never)).toThrow(/rateLimit: options are invalid: "100"/);
    for (const options of [{ secret: weak }, { secret: ['a-test-secret-that-is-long-enough-0001', weak] }, weak]) {
      expect(message(options)).not.toContain(weak);
    }
  });
});

describe('durations waited out with a timer', () => {
  it('rejects a timeout or wait longer than a Node timer can hold (it would fire at once), naming the option', async () => {
    const { createCache, rateLimit, redisSession, withLock } = await import('../lib/index.js');
    const secret = 'a-test-secret-that-is-long-enough-0001';
    expect(() => rateLimit({ timeout: '30d' })).toThrow(/rateLimit: option "timeout" is invalid: "30d".*24\.8 days/);
    expect(() => redisSession({ secret, timeout: '30d' })).toThrow(/option "timeout" is invalid/);
    expect(() => createCache({ timeout: 3_000_000_000 })).toThrow(/option "timeout" is invalid: 3000000000/);
    expect(() => createCache().response({ lock: { wait: '25d' } })).toThrow(/option "lock.wait" is invalid/);
    await expect(withLock('r', async () => 1, { waitTimeout: '25d' })).rejects.toThrow(/option "waitTimeout"/);
    // The longest a timer holds is still accepted.
    expect(() => rateLimit({ timeout: '24d' })).not.toThrow();
  });
});
