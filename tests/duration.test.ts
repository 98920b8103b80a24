import { describe, expect, it } from 'vitest';
import { parseDuration } from '../lib/index.js';

describe('parseDuration()', () => {
  it.each([
    [250, 250],
    [0, 0],
    ['250ms', 250],
    ['30s', 30_000],
    ['15m', 900_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    ['1.5s', 1_500],
    [' 2 s ', 2_000],
  ])('reads %j as %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each([['15 minutes'], ['-1s'], [-5], [Number.NaN], [Number.POSITIVE_INFINITY], [''], ['10'], ['1w'], ['s']])(
    'rejects %j with a TypeError naming the value',
    (input) => {
      expect(() => parseDuration(input)).toThrow(TypeError);
      expect(() => parseDuration(input)).toThrow(/duration is invalid/);
    },
  );
});
