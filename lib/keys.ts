import { createHash } from 'node:crypto';

/** One part of a Redis key: a non-empty string or a finite number. */
export type KeyPart = string | number;

/** Characters that would make two different part lists produce the same key. */
const reservedInPart = /[%:]/g;
const reservedInHashTag = /[%{}]/g;

function percentEncode(char: string): string {
  return `%${char.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`;
}

/**
 * Checks an argument that names something stored in Redis (a cache key, a client, a user id, a lock resource):
 * a non-empty string, or a finite number when `numbers` allows it. Throws a `TypeError` naming `what`.
 */
export function nameArgument(value: unknown, what: string, numbers = false): string {
  if (typeof value === 'string' && value !== '') return value;
  if (numbers && typeof value === 'number' && Number.isFinite(value)) return String(value);
  const shown = typeof value === 'string' ? '""' : typeof value === 'number' ? String(value) : typeof value;
  throw new TypeError(`${what} is invalid: ${shown} (expected a non-empty string${numbers ? ' or a number' : ''})`);
}

/** Escapes one part so that `:` only ever separates parts; parts without `:` or `%` stay verbatim. */
function escapePart(part: unknown, position: number): string {
  const text = nameArgument(part, `key part ${position}`, true);
  return text.includes(':') || text.includes('%') ? text.replace(reservedInPart, percentEncode) : text;
}

/**
 * Joins parts into a Redis key: `key('user', 'abc123') === 'user:abc123'`.
 * Distinct part lists always give distinct keys (`:` and `%` inside a part are percent-encoded).
 */
export function key(...parts: KeyPart[]): string {
  if (parts.length === 0) throw new TypeError('key() needs at least one part');
  let out = escapePart(parts[0], 0);
  for (let i = 1; i < parts.length; i++) out += `:${escapePart(parts[i], i)}`;
  return out;
}

/** A `key`-like function whose keys all start with `prefix:` (the prefix itself is used verbatim). */
export type Keyspace = (...parts: KeyPart[]) => string;

/** Returns a {@link key} function whose keys start `prefix:`: `keyspace('myapp')('user', 1) === 'myapp:user:1'`. */
export function keyspace(prefix: string): Keyspace {
  nameArgument(prefix, 'keyspace prefix');
  const head = `${prefix}:`;
  return function keyInSpace(...parts: KeyPart[]): string {
    return head + key(...parts);
  };
}

/**
 * Wraps a part in `{…}` so that every key containing it hashes to the same Redis Cluster slot.
 * `{`, `}` and `%` inside the part are percent-encoded so the tag cannot end early.
 */
export function hashTag(part: KeyPart): string {
  const text = nameArgument(part, 'hashTag part', true);
  return `{${/[%{}]/.test(text) ? text.replace(reservedInHashTag, percentEncode) : text}}`;
}

/** Parts longer than this are written as their SHA-256, so a key stays short whatever a request sends. */
const maxPartLength = 128;

/** The characters the encoder uses as separators (`:`), hash-tag delimiters (`{`, `}`) and its escape (`%`). */
const reserved = /[%:{}]/g;
const hasReserved = /[%:{}]/;

const escapeReserved = (char: string) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`;

/**
 * One part of a key a request (or an app function) supplies, written so that it holds no `:`, `{` or `}` of its
 * own: `%`, `:`, `{` and `}` become `%25`, `%3A`, `%7B`, `%7D`, so a `%` in an escaped part is always followed by two
 * hex digits. A part longer than {@link maxPartLength} becomes `%#` and its SHA-256 in base64url, a form no
 * escaped part can take. So distinct parts give distinct strings, and one may sit inside a hash tag as it is.
 */
export function encodePart(part: string): string {
  if (part.length > maxPartLength) return `%#${createHash('sha256').update(part).digest('base64url')}`;
  return hasReserved.test(part) ? part.replace(reserved, escapeReserved) : part;
}
