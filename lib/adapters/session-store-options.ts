// The options of `new SessionStore()` (connect-redis' names), and what a refused `redis` option is called.
import { z } from 'zod';
import { tryParseDuration } from '../duration.js';
import { commonMiddlewareOptions, fn, parseOptions, redisSchema, timerDurationMs } from '../options.js';

/**
 * A session as express-session hands it over: its data and its `cookie` (`expires`, `originalMaxAge`, …). Loosely
 * typed, so that express-session's own `SessionData` fits without this package depending on its types.
 */
// biome-ignore lint/suspicious/noExplicitAny: express-session's SessionData, whatever the app declared in it
export type StoredSession = Record<string, any>;

/** How sessions are written and read (connect-redis' `serializer`): `JSON` by default. */
export interface SessionSerializer {
  parse(text: string): unknown;
  stringify(value: unknown): string;
}

const serializerSchema = z.custom<SessionSerializer>(
  (value) =>
    typeof value === 'object' &&
    value !== null &&
    typeof (value as JSON).parse === 'function' &&
    typeof (value as JSON).stringify === 'function',
  { message: 'expected an object with parse() and stringify() (like JSON)' },
);

/** Options of `new SessionStore()`. */
export const sessionStoreSchema = z.strictObject({
  ...commonMiddlewareOptions,
  /** The longest a store call waits on Redis before it fails (express-session then answers with the error). */
  timeout: timerDurationMs.default(1_000),
  /** Key prefix, as connect-redis: `sess:<id>` (not empty: `clear()` deletes everything under it). @default 'sess:' */
  prefix: z.string().min(1).default('sess:'),
  /**
   * How long a session lives in Redis, as connect-redis takes it: `(session) => seconds` always decides; seconds (or
   * a duration string, `'1d'`) only for a session whose cookie has no expiry (a browser-session cookie), the cookie's
   * expiry deciding otherwise. @default 86400 (one day)
   */
  ttl: z
    .union([
      z.number().positive(),
      z.string().transform((value, ctx) => {
        const seconds = Math.ceil((tryParseDuration(value) ?? 0) / 1000);
        if (seconds > 0) return seconds;
        ctx.addIssue({ code: 'custom', message: "expected seconds or a duration like '30m', '1d'" });
        return z.NEVER;
      }),
      fn<(session: StoredSession) => number>(),
    ])
    .default(86_400),
  /** Never extend a session's expiry on requests that do not change it (express-session's `touch`). @default false */
  disableTouch: z.boolean().default(false),
  /** connect-redis' `disableTTL` is not offered: every key redisware writes expires. */
  disableTTL: z
    .custom<never>(() => false, { message: 'not supported: every key redisware writes expires (give a long ttl)' })
    .optional(),
  /** How sessions are written and read. @default JSON */
  serializer: serializerSchema.optional(),
  /** SCAN's COUNT for `all()`, `ids()`, `length()` and `clear()`. @default 100 */
  scanCount: z.number().int().positive().default(100),
});

/** Options of `new SessionStore()`. */
export type SessionStoreOptions = z.input<typeof sessionStoreSchema>;

/** The resolved options of one store. */
export type SessionStoreConfig = z.output<typeof sessionStoreSchema>;

/** The options a store takes again after it is made (`store.ttl = …`): validated as the constructor does. */
type ChangeableOption = 'ttl' | 'scanCount' | 'disableTouch';

/** `value` validated as the `name` option, or a `TypeError` naming it (as the constructor throws). */
export function validOption<Name extends ChangeableOption>(name: Name, value: unknown): SessionStoreConfig[Name] {
  const schema = sessionStoreSchema.pick({ [name]: true } as Record<ChangeableOption, true>);
  return (parseOptions('SessionStore', schema, { [name]: value }) as SessionStoreConfig)[name];
}

/** The options, validated; a `redis` option that is no ioredis client is refused naming what it is (never `{}`). */
export function resolveStoreOptions(options: SessionStoreOptions): SessionStoreConfig {
  const client: unknown = (options as { redis?: unknown } | undefined)?.redis;
  if (client !== undefined && !redisSchema.safeParse(client).success) {
    const nodeRedis = isNodeRedis(client);
    throw new TypeError(
      `SessionStore: option "redis" is invalid: ${describeClient(client)} (expected an ioredis Redis or Cluster client${nodeRedis ? '; node-redis clients are not supported: give an ioredis client' : ''})`,
    );
  }
  return parseOptions('SessionStore', sessionStoreSchema, options);
}

/** Whether `value` looks like a node-redis client (connect-redis' `client`). */
function isNodeRedis(value: unknown): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { sendCommand?: unknown }).sendCommand === 'function' &&
    'isOpen' in value
  );
}

/** What a refused client is: `a node-redis client`, `an object of class Foo`, `a plain object`, `a string`, … */
function describeClient(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value === 'function' ? `a function ${value.name}` : `a ${typeof value}`;
  if (isNodeRedis(value)) return 'a node-redis client';
  const name = (Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null)?.constructor?.name;
  if (!name || name === 'Object') return 'a plain object';
  return `an object of class ${name}`;
}
