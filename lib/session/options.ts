import { serialize } from 'cookie';
import { z } from 'zod';
import { commonMiddlewareOptions, durationMs, positiveDurationMs } from '../options.js';

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
      /** Persistent cookie lifetime; unset means a browser-session cookie. */
      maxAge: durationMs.optional(),
    })
    .default({ secure: 'auto', httpOnly: true, sameSite: 'lax', path: '/' }),
  /** Redis unreachable or slower than `timeout`: `'fail'` answers 503, `'continue'` gives an empty, unsaved session. @default 'fail' */
  onRedisError: z.enum(['fail', 'continue']).default('fail'),
});

/** Options of `redisSession()`. */
export type RedisSessionOptions = z.input<typeof sessionSchema>;
/** The resolved configuration. */
export type SessionConfig = z.output<typeof sessionSchema>;
