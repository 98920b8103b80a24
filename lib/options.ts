import { z } from 'zod';
import { type Duration, durationExpectation, tryParseDuration } from './duration.js';
import type { EventHook } from './events.js';
import type { Logger } from './logger.js';
import type { AnyRedisClient, RedisClient } from './redis/client.js';

/** Query parameters a Redis client reads credentials from (ioredis takes `password` and `username` there). */
const credentialParameters = /^(password|pass|pwd|username|user|auth|token|secret)$/i;

/**
 * Text with the credentials of every URL in it replaced by `***`: `redis://user:pass@host:6379/0` becomes
 * `redis://***@host:6379/0`, and `?password=…` `?password=***`, so a log line or an error message never carries
 * them. A URL is read as Redis clients read it, wherever it stands in the text (quoted, after a space or a line
 * break): the scheme, then credentials up to an `@`, then the address, then a query whose parameters are read one
 * by one. A password may hold any character, escaped or not (`@`, `:`, `/`, `%40`), so everything between the
 * scheme and the last `@` counts as credentials: nothing of a password is ever shown, at worst a little of the
 * address is hidden too.
 */
export function withoutCredentials(text: string): string {
  const scheme = /[a-z][a-z0-9+.-]*:\/\//i.exec(text);
  if (!scheme) return text;
  const head = text.slice(0, scheme.index + scheme[0].length);
  let rest = text.slice(head.length);
  const at = rest.lastIndexOf('@');
  if (at !== -1) rest = `***@${rest.slice(at + 1)}`;
  const query = rest.indexOf('?');
  if (query === -1) return head + rest;
  const fragment = rest.indexOf('#', query);
  const end = fragment === -1 ? rest.length : fragment;
  const parameters = rest
    .slice(query + 1, end)
    .split('&')
    .map((parameter) => {
      const [name] = parameter.split('=', 1);
      return credentialParameters.test(decodeURIComponentSafely(name)) ? `${name}=***` : parameter;
    });
  return `${head}${rest.slice(0, query + 1)}${parameters.join('&')}${rest.slice(end)}`;
}

function decodeURIComponentSafely(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Shows a bad option value in an error message without dumping clients, huge objects or URL passwords. */
function describeValue(value: unknown): string {
  if (typeof value === 'function') return `[function ${value.name || 'anonymous'}]`;
  if (typeof value === 'string') {
    const text = withoutCredentials(value);
    return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
  }
  if (typeof value === 'bigint' || typeof value === 'symbol' || typeof value === 'number') return String(value);
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    // An instance is named by its kind: its fields (a client's connection state) say nothing to the reader.
    const sendsCommands = typeof (value as { sendCommand?: unknown }).sendCommand === 'function';
    if (sendsCommands && typeof (value as { evalsha?: unknown }).evalsha !== 'function') return 'a node-redis client';
    const kind = Object.getPrototypeOf(value)?.constructor?.name;
    if (kind && kind !== 'Object') return `a ${kind} object`;
  }
  try {
    // Connection options given where a client was expected hold passwords: their values are never shown.
    const json = JSON.stringify(value, (key, field) =>
      sensitiveField.test(key) ? '***' : typeof field === 'string' ? withoutCredentials(field) : field,
    );
    if (json === undefined) return String(value);
    return json.length > 120 ? `${json.slice(0, 120)}…` : json;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** Fields of an object shown in an error message whose values are never shown. */
const sensitiveField = /secret|password|pass$|pwd|token|auth|credential|key$/i;

/** Options whose values must never reach an error message (it may end up in logs). */
const sensitiveOption = /secret|password|token/i;

/** A secret's shape, not its content: `a string of 5 characters (not shown)`. */
function describeSecret(value: unknown): string {
  if (typeof value === 'string') return `a string of ${value.length} characters (not shown)`;
  if (Array.isArray(value)) return `an array of ${value.length} values (not shown)`;
  return value === null ? 'null' : typeof value;
}

/** Whether an options schema has a sensitive option (see {@link sensitiveOption}). */
function takesSecret(schema: z.ZodType): boolean {
  const shape = (schema as { shape?: Record<string, unknown> }).shape;
  return shape !== undefined && Object.keys(shape).some((option) => sensitiveOption.test(option));
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let current = input;
  for (const segment of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[segment];
  }
  return current;
}

/**
 * Validates a factory's options against its schema and returns the resolved configuration.
 * Throws a `TypeError` naming the factory, the option and the bad value:
 * `rateLimit: option "window" is invalid: "15 minutes" (…)`; a secret's value is described, never shown.
 * The input is never mutated.
 */
export function parseOptions<Schema extends z.ZodType>(
  factory: string,
  schema: Schema,
  input: unknown,
): z.output<Schema> {
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0] as z.core.$ZodIssue;
  if (issue.code === 'unrecognized_keys') {
    const path = [...issue.path, issue.keys[0] as string].join('.');
    throw new TypeError(`${factory}: unknown option "${path}"`);
  }
  if (issue.path.length === 0) {
    // A string in place of the options of a factory that takes a secret may well be that secret, passed directly.
    const shown = typeof input === 'string' && takesSecret(schema) ? describeSecret(input) : describeValue(input);
    throw new TypeError(`${factory}: options are invalid: ${shown} (${issue.message})`);
  }
  const path = issue.path.map(String).join('.');
  const value = valueAt(input, issue.path);
  const shown = issue.path.some((part) => sensitiveOption.test(String(part)))
    ? describeSecret(value)
    : describeValue(value);
  throw new TypeError(`${factory}: option "${path}" is invalid: ${shown} (${issue.message})`);
}

/** The longest duration an option takes: 1000 years, far inside what Redis expiries and Lua's numbers hold exactly. */
export const maxDurationMs = 1_000 * 365 * 86_400_000;

/** A {@link Duration}, resolved to milliseconds. */
export const durationMs = z.union([z.number(), z.string()]).transform((value: Duration, ctx): number => {
  const ms = tryParseDuration(value);
  if (ms !== undefined && ms <= maxDurationMs) return ms;
  ctx.addIssue({ code: 'custom', message: ms === undefined ? durationExpectation : 'must be at most 1000 years' });
  return z.NEVER;
});

/** A duration that must be longer than zero. */
export const positiveDurationMs = durationMs.refine((ms) => ms > 0, { message: 'must be longer than 0 ms' });

/** The longest delay a Node timer holds; a longer one fires at once (with a TimeoutOverflowWarning). */
export const maxTimerMs = 2_147_483_647;

/** A positive duration that is waited out with a timer, so at most {@link maxTimerMs} (about 24.8 days). */
export const timerDurationMs = positiveDurationMs.refine((ms) => ms <= maxTimerMs, {
  message: `must be at most ${maxTimerMs} ms (about 24.8 days)`,
});

/** A function option (zod 4 has no function schema that keeps the signature). */
export function fn<F extends (...args: never[]) => unknown>() {
  return z.custom<F>((value) => typeof value === 'function', { message: 'expected a function' });
}

/** A logger with `warn` and `error` methods (console, pino, …). */
export const loggerSchema = z.custom<Logger>(
  (value) =>
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Logger).warn === 'function' &&
    typeof (value as Logger).error === 'function',
  { message: 'expected an object with warn() and error() methods' },
);

/**
 * The `onEvent` option of every factory: called with each event (`rateLimit.blocked`, `cache.hit`, …; see
 * `RediswareEvent`). A hook that throws is logged once and never breaks a request. Unset, events cost nothing.
 */
export const onEventOption = fn<EventHook>().optional();

/** An ioredis `Redis` or `Cluster`, from any copy of ioredis 5 or 6 (see `AnyRedisClient`). */
export const redisSchema = z
  .custom<AnyRedisClient>(
    (value) =>
      typeof value === 'object' &&
      value !== null &&
      typeof (value as RedisClient).evalsha === 'function' &&
      typeof (value as RedisClient).on === 'function',
    { message: 'expected an ioredis 5 or 6 Redis or Cluster client, such as new Redis(url) or createRedis()' },
  )
  .transform((client) => client as unknown as RedisClient);

/** Options every middleware factory takes. */
export const commonMiddlewareOptions = {
  /** An ioredis client; defaults to the shared `defaultRedis()`. */
  redis: redisSchema.optional(),
  /** The longest a request waits on Redis before the Redis-error behaviour applies. */
  timeout: timerDurationMs.default(250),
  /** Receives warnings (outages, suspicious configuration). */
  logger: loggerSchema.optional(),
  /**
   * Send the script calls of one event-loop turn as one command on a standalone client. A server that refuses such
   * a batch (CROSSSLOT from a proxy in front of a Cluster) turns it off by itself, after one warning. @default true
   */
  batch: z.boolean().default(true),
  /** Receives the factory's events (see "Events and metrics" in the README) and `redis.error`. */
  onEvent: onEventOption,
};
