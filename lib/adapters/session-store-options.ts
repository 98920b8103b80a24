// The options of `new SessionStore()`, under connect-redis' names.
import { z } from 'zod';
import { tryParseDuration } from '../duration.js';
import { commonMiddlewareOptions, fn, parseOptions, timerDurationMs } from '../options.js';

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

/** The options, validated (a refused value is named by what it is: `a node-redis client`; see `parseOptions`). */
export function resolveStoreOptions(options: SessionStoreOptions): SessionStoreConfig {
  return parseOptions('SessionStore', sessionStoreSchema, options);
}
