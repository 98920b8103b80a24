// The header parsing `freshness: 'http'` rests on, rule by rule: Cache-Control (RFC 9111 §5.2), delta-seconds
// (§1.2.2), Age (§5.1), HTTP-date (RFC 9110 §5.6.7) and CDN-Cache-Control as a Structured Field (RFC 9213, 8941).
import { describe, expect, it } from 'vitest';
import {
  deltaSeconds,
  parseAge,
  parseCacheControl,
  parseHttpDate,
  parseTargetedCacheControl,
  qualifiedFields,
} from '../../lib/cache/directives.js';

const directives = (...lines: string[]) => Object.fromEntries(parseCacheControl(lines));

describe('Cache-Control', () => {
  it('reads directives without regard to case, with token and quoted arguments', () => {
    expect(directives('Public, MaX-AgE=60, no-cache="Set-Cookie, X-Foo"')).toEqual({
      public: true,
      'max-age': '60',
      'no-cache': 'set-cookie, x-foo',
    });
  });

  it('does not take a max-age inside a quoted argument for a directive, before or after the real one', () => {
    expect(directives('extension="max-age=3600", max-age=1')).toEqual({ extension: 'max-age=3600', 'max-age': '1' });
    expect(directives('max-age=1, extension="max-age=3600"')).toEqual({ 'max-age': '1', extension: 'max-age=3600' });
  });

  it('combines every line of the field, and the first occurrence of a repeated directive counts', () => {
    expect(directives('max-age=1800', 'max-age=1')).toEqual({ 'max-age': '1800' });
    expect(directives('max-age=1, max-age=1800')).toEqual({ 'max-age': '1' });
  });

  it('unescapes quoted pairs and skips empty or malformed elements', () => {
    expect(directives(' , private="a\\"b", ,', 'x y, no-store')).toEqual({ private: 'a"b', 'no-store': true });
  });

  it('lists the fields of a qualified private or no-cache, and none for the bare directive', () => {
    expect(qualifiedFields('Set-Cookie, X-Foo')).toEqual(['set-cookie', 'x-foo']);
    expect(qualifiedFields(true)).toBeUndefined();
  });
});

describe('delta-seconds', () => {
  it('accepts digits, leading zeros included, and caps them at 2^31', () => {
    expect(deltaSeconds('003600')).toBe(3600);
    expect(deltaSeconds('2147483647')).toBe(2147483647);
    expect(deltaSeconds('99999999999')).toBe(2 ** 31);
  });

  it('rejects what is not delta-seconds: negative, fractional, quoted in single quotes, with letters or spaces', () => {
    for (const value of ['-1', '3600.0', '3600.5', "'3600'", 'a3600', '3600a', ' 3600', '']) {
      expect(deltaSeconds(value), value).toBeUndefined();
    }
    expect(deltaSeconds(true)).toBeUndefined();
  });

  it('a quoted max-age is read as its content', () => {
    expect(deltaSeconds(parseCacheControl(['max-age="3600"']).get('max-age'))).toBe(3600);
  });
});

describe('Age', () => {
  it("is the first line's first value", () => {
    expect(parseAge(['7200, 0'])).toBe(7200);
    expect(parseAge(['0, 7200'])).toBe(0);
    expect(parseAge(['7200', '0'])).toBe(7200);
    expect(parseAge(['0', '7200'])).toBe(0);
  });

  it('is ignored when negative, fractional or not a number, and capped when huge', () => {
    expect(parseAge(['-7200'])).toBeUndefined();
    expect(parseAge(['7200.0'])).toBeUndefined();
    expect(parseAge(['abc'])).toBeUndefined();
    expect(parseAge([])).toBeUndefined();
    expect(parseAge(['2147483649'])).toBe(2 ** 31);
  });
});

describe('HTTP-date', () => {
  const when = Date.UTC(2050, 7, 18, 2, 1, 18);

  it('reads IMF-fixdate, and the obsolete RFC 850 and asctime formats', () => {
    expect(parseHttpDate('Thu, 18 Aug 2050 02:01:18 GMT')).toBe(when);
    expect(parseHttpDate('Thursday, 18-Aug-50 02:01:18 GMT')).toBe(when);
    expect(parseHttpDate('Thu Aug 18 02:01:18 2050')).toBe(when);
    expect(parseHttpDate('Thu Aug  8 02:01:18 2050')).toBe(Date.UTC(2050, 7, 8, 2, 1, 18));
  });

  it('compares names without regard to case', () => {
    expect(parseHttpDate('THU, 18 AUG 2050 02:01:18 gMT')).toBe(when);
  });

  it('puts an RFC 850 two-digit year more than 50 years ahead in the past century', () => {
    const year = new Date().getUTCFullYear();
    const ahead = (year + 60) % 100;
    const parsed = parseHttpDate(`Sunday, 06-Nov-${String(ahead).padStart(2, '0')} 08:49:37 GMT`) as number;
    expect(new Date(parsed).getUTCFullYear()).toBe(year + 60 - 100);
  });

  it('rejects every other form: other zones, two-digit years, missing comma, extra spaces, dashes, periods, one-digit hours', () => {
    for (const value of [
      'Thu, 18 Aug 2050 02:01:18 UTC',
      'Thu, 18 Aug 2050 02:01:18 AEST',
      'Thu, 18 Aug 50 02:01:18 GMT',
      'Thu 18 Aug 2050 02:01:18 GMT',
      'Thu, 18  Aug  2050 02:01:18 GMT',
      'Thu, 18-Aug-2050 02:01:18 GMT',
      'Thu, 18 Aug 2050 02.01.18 GMT',
      'Thu, 18 Aug 2050 2:01:18 GMT',
      'Xyz, 18 Aug 2050 02:01:18 GMT',
      'Thu, 18 Foo 2050 02:01:18 GMT',
      'Thu, 32 Aug 2050 02:01:18 GMT',
      '0',
      '',
    ]) {
      expect(parseHttpDate(value), value).toBeUndefined();
    }
    expect(parseHttpDate(undefined)).toBeUndefined();
  });
});

describe('CDN-Cache-Control', () => {
  const targeted = (...lines: string[]) => {
    const parsed = parseTargetedCacheControl(lines);
    return parsed && Object.fromEntries(parsed);
  };

  it('is a Structured Field dictionary: integers, booleans and strings, parameters ignored, lines combined', () => {
    expect(targeted('max-age=600, no-cache;foo=1', 'private=?0, x="y"')).toEqual({
      'max-age': '600',
      'no-cache': true,
      x: 'y',
    });
  });

  it('is invalid, and so ignored, when it is not a dictionary', () => {
    for (const value of ['max-age=10000, &&&&&', 'Max-Age=60', 'max-age=60,', '', 'a="unterminated']) {
      expect(targeted(value), value).toBeUndefined();
    }
  });

  it('is invalid when a numeric directive has another type: a string, a decimal, a token, none', () => {
    for (const value of ['max-age="10000"', 'max-age=1.5', 'max-age=abc', 'max-age', 's-maxage=-5']) {
      expect(targeted(value), value).toBeUndefined();
    }
  });
});
