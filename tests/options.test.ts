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

  it('rejects unknown options by name', () => {
    expect(() => parseOptions('demo', schema, { windw: 5 })).toThrow(/demo: unknown option "windw"/);
  });

  it('does not mutate the caller’s options', () => {
    const input = Object.freeze({ window: '1s' });
    parseOptions('demo', schema, input);
    expect(input).toEqual({ window: '1s' });
  });
});
