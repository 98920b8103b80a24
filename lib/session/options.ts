import { serialize } from 'cookie';
import type { Request } from 'express';
import { z } from 'zod';
import { keyspace } from '../keys.js';
import { commonMiddlewareOptions, durationMs, fn, parseOptions, positiveDurationMs } from '../options.js';
import { type FactoryParts, factoryParts } from '../setup.js';

const secretSchema = z.string().min(32, 'each secret must be at least 32 characters');

/** Whether the `cookie` package accepts `attribute` as a Set-Cookie attribute (checked once, not per request). */
function validCookieAttribute(attribute: 'path' | 'domain') {
  return (value: string) => {
    try {
      serialize('a', 'b', { [attribute]: value });
      return true;
    } catch {
      return false;
    }
  };
}

/** Options of `redisSession()`. */
export const sessionSchema = z.strictObject({
  ...commonMiddlewareOptions,
  /** Signs the cookie: a string, or an array whose first entry signs and all verify (rotation). Each ≥ 32 characters. */
  secret: z.union([secretSchema, z.array(secretSchema).min(1, 'give at least one secret')]),
  /** Cookie name. @default 'sid' */
  name: z
    .string()
    .regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'must be a valid cookie name')
    .default('sid'),
  /** First part of every Redis key: `session:<id>`. @default 'session' */
  prefix: z.string().min(1).default('session'),
  /** Idle timeout, enforced on the server. @default '24h' */
  ttl: positiveDurationMs.default(24 * 3_600_000),
  /** Absolute lifetime from creation, enforced on the server. @default '7d' */
  absoluteTimeout: positiveDurationMs.default(7 * 24 * 3_600_000),
  /** Every request extends the idle timeout (and refreshes a persistent cookie); false: only writes do. @default true */
  rolling: z.boolean().default(true),
  /** Save (and send a cookie for) new sessions nobody wrote to. @default false */
  saveUninitialized: z.boolean().default(false),
  /** Session field holding the user id, indexed for `listByUser` / `destroyByUser`. @default 'userId' */
  userField: z.string().min(1).default('userId'),
  cookie: z
    .strictObject({
      /** `'auto'`: Secure when `req.secure` (honours `trust proxy`). @default 'auto' */
      secure: z.union([z.literal('auto'), z.boolean()]).default('auto'),
      /** @default true */
      httpOnly: z.boolean().default(true),
      /** @default 'lax' */
      sameSite: z.union([z.enum(['lax', 'strict', 'none']), z.boolean()]).default('lax'),
      /** @default '/' */
      path: z
        .string()
        .startsWith('/')
        .refine(validCookieAttribute('path'), 'must be a valid cookie path (no ";" or control characters)')
        .default('/'),
      domain: z.string().min(1).refine(validCookieAttribute('domain'), 'must be a valid cookie domain').optional(),
      /** Persistent cookie lifetime; unset means a browser-session cookie. `req.session.cookie` can change it. */
      maxAge: durationMs.optional(),
      /** `Partitioned` (CHIPS): the cookie is kept per top-level site; browsers require `Secure` with it. @default false */
      partitioned: z.boolean().default(false),
    })
    .default({ secure: 'auto', httpOnly: true, sameSite: 'lax', path: '/', partitioned: false }),
  /** Makes the id of a new session: 8 to 128 characters of A-Z, a-z, 0-9, `_` and `-`. @default 32 random bytes */
  genid: fn<(req: Request) => string>().optional(),
  /**
   * Also carry the signed id in this request and response header (`'x-session-id'`), for API clients that keep no
   * cookies: read before the cookie, and sent whenever a cookie is issued.
   */
  header: z
    .string()
    .regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'must be a valid header name')
    .transform((name) => name.toLowerCase())
    .optional(),
  /**
   * Redis unreachable or slower than `timeout` when a session is read: `'fail'` answers 503 once the route uses the
   * session's data (it throws a `SessionUnavailableError`), `'continue'` gives an empty, unsaved session. Either
   * way `destroy()` logs the session out (deleted once Redis answers again). @default 'fail'
   */
  onRedisError: z.enum(['fail', 'continue']).default('fail'),
});

/** Options of `redisSession()`. */
export type RedisSessionOptions = z.input<typeof sessionSchema>;

/** The resolved configuration of one `redisSession()`: its options, and what the storage and the middleware need. */
export interface SessionConfig extends Omit<z.output<typeof sessionSchema>, 'logger'>, Omit<FactoryParts, 'redis'> {
  /** The client (the `redis` option, or the shared default, created on first use). */
  client: FactoryParts['redis'];
  /** Every secret, the signing one first. */
  secrets: string[];
  /** The Redis key of session `id`. */
  sessionKey(id: string): string;
  /** The Redis key of the index of `userId`'s sessions. */
  userKey(userId: string): string;
}

/** Validates the options and derives what the storage and the middleware need. */
export function resolveConfig(options: RedisSessionOptions): SessionConfig {
  const config = parseOptions('redisSession', sessionSchema, options);
  const { logger, emit, call, redis } = factoryParts(
    config,
    'session',
    'redisSession could not use Redis (down, slow or refusing)',
  );
  const sessionKeyOf = keyspace(config.prefix);
  return {
    ...config,
    secrets: typeof config.secret === 'string' ? [config.secret] : config.secret,
    logger,
    emit,
    call,
    client: redis,
    sessionKey: (id: string) => sessionKeyOf(id),
    userKey: (userId: string) => sessionKeyOf('user', userId),
  };
}
