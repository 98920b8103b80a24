// Parsing of the header fields HTTP caching depends on, exactly as RFC 9111 and RFC 9110 have them: Cache-Control
// (§5.2), CDN-Cache-Control (RFC 9213, a Structured Field dictionary, RFC 8941), HTTP-date (RFC 9110 §5.6.7) and
// delta-seconds (RFC 9111 §1.2.2). Everything here is pure and runs once per stored response, never per HIT.

/** Directives of a Cache-Control value: lower-case name → its argument (unquoted), or `true` when it has none. */
export type Directives = Map<string, string | true>;

/** The largest delta-seconds a cache needs to represent (RFC 9111 §1.2.2): larger values mean the same. */
export const maxDeltaSeconds = 2 ** 31;

const tokenChar = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Parses Cache-Control field values (all lines of it, in order): comma-separated directives, each a token with an
 * optional `=token` or `="quoted string"` argument. A quoted argument may hold commas and `=`: they are not
 * directives (`extension="max-age=3600"` says nothing about max-age); a quoted string left open ends at the next
 * comma, so it never hides the directives after it (`ext="a, private` is `private`). When a directive repeats, its
 * first occurrence counts (RFC 9111 §4.2.1) — except `private` and `no-cache`, where the safer reading wins: the
 * bare directive (or a malformed argument) over any qualified form, and the fields of qualified forms combined. An
 * element that is not a directive is skipped; a malformed argument of another directive is an invalid one (`''`).
 */
export function parseCacheControl(values: readonly string[]): Directives {
  const directives: Directives = new Map();
  for (const value of values) {
    let i = 0;
    while (i < value.length) {
      // One list element: up to the next comma outside a quoted string.
      const nameEnd = scanUntil(value, i, ',=');
      const name = nameEnd === i ? '' : value.slice(i, nameEnd).trim().toLowerCase();
      let argument: string | true | undefined = true;
      i = nameEnd;
      if (value[i] === '=') {
        i++;
        const quoted = value[i] === '"' ? quotedString(value, i) : undefined;
        if (quoted) {
          argument = quoted.text;
          const rest = scanUntil(value, quoted.end, ',');
          // Anything after the closing quote before the comma makes the element malformed.
          if (value.slice(quoted.end, rest).trim() !== '') argument = undefined;
          i = rest;
        } else {
          const end = scanUntil(value, i, ',');
          argument = value[i] === '"' ? undefined : value.slice(i, end).trimEnd();
          i = end;
        }
      }
      i++; // the comma
      if (name !== '' && tokenChar.test(name)) addDirective(directives, name, argument);
    }
  }
  return directives;
}

/** Adds one occurrence of a directive (`argument` `undefined`: malformed) as {@link parseCacheControl} reads them. */
function addDirective(directives: Directives, name: string, argument: string | true | undefined): void {
  if (name === 'private' || name === 'no-cache') {
    const previous = directives.get(name);
    const fields = argument === undefined ? undefined : qualifiedFields(argument);
    if (previous === true || !fields) directives.set(name, true);
    else directives.set(name, previous === undefined ? fields.join(', ') : `${previous}, ${fields.join(', ')}`);
    return;
  }
  if (!directives.has(name)) directives.set(name, argument ?? '');
}

/** The quoted string opening at `start` (RFC 9110 §5.6.4), unescaped, and where it ends; `undefined` if left open. */
function quotedString(text: string, start: number): { text: string; end: number } | undefined {
  let unquoted = '';
  let i = start + 1;
  while (i < text.length && text[i] !== '"') {
    if (text[i] === '\\' && i + 1 < text.length) i++;
    unquoted += text[i];
    i++;
  }
  return i < text.length ? { text: unquoted, end: i + 1 } : undefined;
}

/** The index of the first of `stops` (one or two characters) in `text` from `from`, or its length. */
function scanUntil(text: string, from: number, stops: string): number {
  const first = stops.charCodeAt(0);
  const second = stops.length > 1 ? stops.charCodeAt(1) : first;
  let i = from;
  while (i < text.length) {
    const code = text.charCodeAt(i);
    if (code === first || code === second) break;
    i++;
  }
  return i;
}

/**
 * A delta-seconds argument (RFC 9111 §1.2.2): one or more digits (leading zeros allowed), capped at 2^31.
 * `undefined` for anything else — negative, fractional, `'3600'` in single quotes, spaces around it — which a cache
 * must treat as an invalid freshness, i.e. stale (§4.2.1).
 */
export function deltaSeconds(argument: string | true | undefined): number | undefined {
  if (typeof argument !== 'string' || !/^\d+$/.test(argument)) return undefined;
  return Math.min(Number(argument), maxDeltaSeconds);
}

/**
 * The value of an `Age` header (RFC 9111 §5.1): the first line's first value, when it is delta-seconds; else
 * `undefined` (a negative, fractional or non-numeric Age is ignored).
 */
export function parseAge(lines: readonly string[]): number | undefined {
  if (lines.length === 0) return undefined;
  return deltaSeconds(lines[0].split(',')[0].trim());
}

const weekdays = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const longWeekdays = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];
const months = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

const imfFixdate = /^([a-z]{3}), (\d{2}) ([a-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) gmt$/;
const rfc850Date = /^([a-z]{6,9}), (\d{2})-([a-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) gmt$/;
const asctimeDate = /^([a-z]{3}) ([a-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/;

/**
 * An HTTP-date (RFC 9110 §5.6.7) in ms since the epoch: IMF-fixdate, or the obsolete RFC 850 and asctime formats
 * every recipient must accept, compared without regard to case. `undefined` for anything else: another time zone,
 * a two-digit year outside RFC 850's format, missing comma, extra spaces, one-digit hours, and so on.
 */
export function parseHttpDate(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = text.toLowerCase();
  let match = imfFixdate.exec(value);
  if (match) {
    if (!weekdays.includes(match[1])) return undefined;
    return utc(Number(match[4]), match[3], match[2], match[5], match[6], match[7]);
  }
  match = rfc850Date.exec(value);
  if (match) {
    if (!longWeekdays.includes(match[1])) return undefined;
    // A two-digit year more than 50 years in the future is in the past century (RFC 9110 §5.6.7).
    const thisYear = new Date().getUTCFullYear();
    let year = Math.floor(thisYear / 100) * 100 + Number(match[4]);
    if (year > thisYear + 50) year -= 100;
    return utc(year, match[3], match[2], match[5], match[6], match[7]);
  }
  match = asctimeDate.exec(value);
  if (match) {
    if (!weekdays.includes(match[1])) return undefined;
    return utc(Number(match[7]), match[2], match[3].trim(), match[4], match[5], match[6]);
  }
  return undefined;
}

function utc(year: number, month: string, day: string, hours: string, minutes: string, seconds: string) {
  const monthIndex = months.indexOf(month);
  if (monthIndex === -1) return undefined;
  const [d, h, m, s] = [Number(day), Number(hours), Number(minutes), Number(seconds)];
  if (d < 1 || d > 31 || h > 23 || m > 59 || s > 60) return undefined;
  const time = Date.UTC(year, monthIndex, d, h, m, s);
  return Number.isNaN(time) ? undefined : time;
}

/**
 * Parses a CDN-Cache-Control value (RFC 9213: a Structured Field dictionary, RFC 8941 §3.2) into directives, or
 * `undefined` when it is not a valid dictionary — then it is ignored, as if absent (RFC 9213 §2.1). Integer members
 * become their digits, booleans `true` (a `?0` member is left out), strings their text; any other type (a token, a
 * decimal, an inner list) is kept as written, which makes a numeric directive invalid.
 */
export function parseTargetedCacheControl(values: readonly string[]): Directives | undefined {
  const text = values.join(',');
  const directives: Directives = new Map();
  let i = 0;
  const skipSpaces = () => {
    while (text[i] === ' ' || text[i] === '\t') i++;
  };
  skipSpaces();
  if (i === text.length) return undefined;
  while (i < text.length) {
    const key = /^[a-z*][a-z0-9_\-.*]*/.exec(text.slice(i))?.[0];
    if (!key) return undefined;
    i += key.length;
    let value: string | true | false = true;
    if (text[i] === '=') {
      i++;
      const item = parseBareItem(text, i);
      if (!item) return undefined;
      // A directive whose argument is a number must have an integer one: anything else (`max-age="10000"`, a
      // decimal) makes the whole field invalid, to be ignored.
      if (numericDirectives.has(key) && !(item.integer && /^\d+$/.test(String(item.value)))) return undefined;
      value = item.value;
      i = item.end;
    } else if (numericDirectives.has(key)) {
      return undefined;
    }
    // Parameters are allowed and ignored.
    while (text[i] === ';') {
      i++;
      skipSpaces();
      const name = /^[a-z*][a-z0-9_\-.*]*/.exec(text.slice(i))?.[0];
      if (!name) return undefined;
      i += name.length;
      if (text[i] === '=') {
        const item = parseBareItem(text, i + 1);
        if (!item) return undefined;
        i = item.end;
      }
    }
    // The last occurrence of a dictionary key wins (RFC 8941 §3.2).
    directives.delete(key);
    if (value !== false) directives.set(key, value);
    skipSpaces();
    if (i === text.length) break;
    if (text[i] !== ',') return undefined;
    i++;
    skipSpaces();
    if (i === text.length) return undefined; // a trailing comma
  }
  return directives;
}

const numericDirectives = new Set(['max-age', 's-maxage', 'stale-while-revalidate', 'stale-if-error']);

/** One RFC 8941 bare item at `start`: its value as a directive argument, whether it is an integer, its end. */
function parseBareItem(
  text: string,
  start: number,
): { value: string | true | false; end: number; integer?: boolean } | undefined {
  const rest = text.slice(start);
  const number = /^-?\d{1,15}(\.\d{1,3})?/.exec(rest);
  if (number) return { value: number[0], end: start + number[0].length, integer: number[1] === undefined };
  if (rest.startsWith('?1')) return { value: true, end: start + 2 };
  if (rest.startsWith('?0')) return { value: false, end: start + 2 };
  if (rest[0] === '"') {
    let value = '';
    let i = 1;
    while (i < rest.length && rest[i] !== '"') {
      if (rest[i] === '\\') {
        if (rest[i + 1] !== '"' && rest[i + 1] !== '\\') return undefined;
        i++;
      } else if (rest.charCodeAt(i) < 0x20 || rest.charCodeAt(i) > 0x7e) return undefined;
      value += rest[i];
      i++;
    }
    if (rest[i] !== '"') return undefined;
    return { value, end: start + i + 1 };
  }
  const token = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/.exec(rest);
  if (token) return { value: `token:${token[0]}`, end: start + token[0].length };
  const binary = /^:[A-Za-z0-9+/=]*:/.exec(rest);
  if (binary) return { value: `binary:${binary[0]}`, end: start + binary[0].length };
  return undefined;
}

/**
 * The field names listed by a qualified `private="…"` or `no-cache="…"` (RFC 9111 §5.2.2.4, §5.2.2.7), lower
 * case; `undefined` for the unqualified directive (and for a qualified one that names no field).
 */
export function qualifiedFields(argument: string | true | undefined): string[] | undefined {
  if (typeof argument !== 'string') return undefined;
  const fields = argument
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== '');
  // `private=` or `no-cache=""` names nothing: read as the bare directive, the safe side.
  return fields.length ? fields : undefined;
}

/** What a request's own Cache-Control asks of a cache (RFC 9111 §5.2.1; `requestCacheControl`). */
export interface RequestDirectives {
  noCache: boolean;
  noStore: boolean;
  onlyIfCached: boolean;
  /** Seconds; `undefined` when not asked. */
  maxAge?: number;
  minFresh?: number;
  /** Seconds of staleness accepted (Infinity for a bare `max-stale`). */
  maxStale?: number;
}

/** Request directives a cache acts on (RFC 9111 §5.2.1); a request with none of them is a plain request. */
const requestDirectiveNames = ['no-cache', 'no-store', 'only-if-cached', 'max-age', 'min-fresh', 'max-stale'];

export function requestDirectives(value: string | string[] | undefined): RequestDirectives | undefined {
  if (value === undefined) return undefined;
  const directives = parseCacheControl(Array.isArray(value) ? value : [value]);
  if (!requestDirectiveNames.some((name) => directives.has(name))) return undefined;
  const seconds = (name: string) => (directives.has(name) ? (deltaSeconds(directives.get(name)) ?? 0) : undefined);
  const maxStale = directives.get('max-stale');
  return {
    noCache: directives.has('no-cache'),
    noStore: directives.has('no-store'),
    onlyIfCached: directives.has('only-if-cached'),
    maxAge: seconds('max-age'),
    minFresh: seconds('min-fresh'),
    maxStale:
      maxStale === undefined ? undefined : maxStale === true ? Number.POSITIVE_INFINITY : (deltaSeconds(maxStale) ?? 0),
  };
}
