// `new SessionStore({ redis })`: an express-session Store on ioredis that reads and writes connect-redis' format
// (`sess:<id>`, the session as JSON, expiring with its cookie), so an app on express-session + connect-redis
// switches to ioredis without logging anyone out.
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { z } from 'zod';
import { lazyRedis } from '../connection.js';
import { tryParseDuration } from '../duration.js';
import { type Logger, OutageReporter, resolveLogger } from '../logger.js';
import { commonMiddlewareOptions, fn, maxDurationMs, parseOptions, timerDurationMs } from '../options.js';
import { boundedCaller, type RedisCaller } from '../redis/bounded.js';
import { RedisScript } from '../redis/script.js';
import { perKey, scanPrefix } from './scan.js';

/**
 * A session as express-session hands it over: its data and its `cookie` (`expires`, `originalMaxAge`, …). Loosely
 * typed, so that express-session's own `SessionData` fits without this package depending on its types.
 */
// biome-ignore lint/suspicious/noExplicitAny: express-session's SessionData, whatever the app declared in it
export type StoredSession = Record<string, any>;

/** A Node-style callback, as express-session passes them (loosely typed for the same reason). */
// biome-ignore lint/suspicious/noExplicitAny: express-session's callback types
type Callback = (error?: any, value?: any) => void;

const serializerSchema = z.custom<{ parse(text: string): unknown; stringify(value: unknown): string }>(
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

export type SessionStoreOptions = z.input<typeof sessionStoreSchema>;

/** Extends KEYS[1]'s expiry to ARGV[1] ms, never shortening it and never creating the key. */
const touchSessionScript = new RedisScript(
  'session-store touch',
  `
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return 0 end
if ttl < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
`,
  { keys: 1 },
);

/** express-session's own `Store`, resolved from the app (it is an optional peer dependency). */
function expressSessionStore(): { prototype: object } {
  try {
    return createRequire(import.meta.url)('express-session').Store;
  } catch {
    throw new Error('SessionStore: express-session is not installed (npm install express-session)');
  }
}

/**
 * Settles `callback` (when given) and returns a promise of the same outcome. The promise's rejection is always
 * handled here, so a caller that neither passes a callback nor awaits (as express-session's own calls do) never
 * causes an unhandled rejection; one that awaits still gets it.
 */
function settle<T>(work: Promise<T>, callback: Callback | undefined, logger: Logger): Promise<T> {
  if (callback) {
    // A callback that throws is the app's bug: logged, never an unhandled rejection.
    const invoke = (error: unknown, value?: T) => {
      try {
        callback(error, value);
      } catch (thrown) {
        logger.error(`redisware SessionStore: a callback threw: ${String(thrown)}`);
      }
    };
    work.then(
      (value) => invoke(null, value),
      (error) => invoke(error),
    );
  }
  work.catch(() => {});
  return work;
}

/**
 * An express-session `Store` on ioredis (5 or 6, single node, Sentinel or Cluster), in connect-redis' key and value
 * format: `app.use(session({ store: new SessionStore({ redis }), secret, resave: false, saveUninitialized: false }))`.
 * Every call is one round trip, bounded by `timeout`; every key it writes expires with its session's cookie.
 */
export class SessionStore extends EventEmitter {
  readonly prefix: string;
  // express-session's own, inherited from its Store (see the constructor); typed loosely so that a SessionStore is
  // an express-session Store for @types/express-session without this package depending on it.
  // biome-ignore lint/suspicious/noExplicitAny: express-session's Request and Session types
  declare regenerate: (req: any, callback: (error?: any) => any) => void;
  // biome-ignore lint/suspicious/noExplicitAny: express-session's SessionData
  declare load: (sid: string, callback: (error: any, session?: any) => any) => void;
  // biome-ignore lint/suspicious/noExplicitAny: express-session's Request, SessionData and Session types
  declare createSession: (req: any, session: any) => any;
  private readonly config: z.output<typeof sessionStoreSchema>;
  private readonly call: RedisCaller;
  private readonly serializer: { parse(text: string): unknown; stringify(value: unknown): string };
  private readonly logger: Logger;

  constructor(options: SessionStoreOptions = {}) {
    super();
    // Inherit express-session's regenerate(), load() and createSession(), which build its own Session and Cookie
    // objects (and make `store instanceof session.Store` true).
    const Store = expressSessionStore();
    if (Object.getPrototypeOf(SessionStore.prototype) !== Store.prototype) {
      Object.setPrototypeOf(SessionStore.prototype, Store.prototype);
    }
    this.config = parseOptions('SessionStore', sessionStoreSchema, options);
    this.prefix = this.config.prefix;
    this.serializer = this.config.serializer ?? JSON;
    const logger = resolveLogger(this.config.logger);
    this.logger = logger;
    const outage = new OutageReporter(logger, 'SessionStore could not use Redis (down, slow or refusing)');
    this.call = boundedCaller({
      client: lazyRedis(this.config.redis),
      timeoutMs: this.config.timeout,
      outage,
      logger,
      batch: this.config.batch,
    });
  }

  /**
   * How long `session` lives, in whole ms (as connect-redis decides): the `ttl` function's answer, else until its
   * cookie expires, else the `ttl` option. At most 1000 years; 0 or less means it is already over.
   */
  private lifetimeMs(session: StoredSession): number {
    const { ttl } = this.config;
    let ms: number;
    if (typeof ttl === 'function') {
      const seconds = Number(ttl(session));
      // A ttl function that returns nonsense gets the default day, never a key without an expiry.
      ms = (Number.isFinite(seconds) ? seconds : 86_400) * 1000;
    } else {
      const expires = session?.cookie?.expires;
      const at = expires ? new Date(expires).getTime() : Number.NaN;
      ms = Number.isFinite(at) ? at - Date.now() : ttl * 1000;
    }
    return Math.ceil(Math.min(ms, maxDurationMs));
  }

  /**
   * A stored value as a session, or `null` when it is not one (written by something else under this prefix): no
   * session, rather than a 500 on every request.
   */
  private async parse(sid: string, raw: string): Promise<StoredSession | null> {
    try {
      const session = (await this.serializer.parse(raw)) as unknown;
      if (typeof session === 'object' && session !== null && !Array.isArray(session)) return session as StoredSession;
      throw new Error('not an object');
    } catch (error) {
      this.logger.warn(`redisware SessionStore: session ${sid} is unreadable, treated as none: ${String(error)}`);
      return null;
    }
  }

  /**
   * Reads a session; `null` when there is none. Its expiry is the key's: as with connect-redis, the stored
   * `cookie.expires` is the one of its last write (`touch` extends the key, not the stored value).
   */
  get(sid: string, callback?: Callback): Promise<StoredSession | null> {
    const key = this.prefix + sid;
    const work = this.call((redis) => redis.get(key)).then((raw) => (raw === null ? null : this.parse(sid, raw)));
    return settle(work, callback, this.logger);
  }

  /** Writes a session, expiring with its cookie (one that has already expired is deleted instead). */
  set(sid: string, session: StoredSession, callback?: Callback): Promise<void> {
    const work = (async () => {
      const ttlMs = this.lifetimeMs(session);
      const key = this.prefix + sid;
      if (ttlMs > 0) {
        const value = this.serializer.stringify(session);
        await this.call((redis) => redis.set(key, value, 'PX', ttlMs));
      } else {
        await this.call((redis) => redis.del(key)); // a lifetime that is already over ends the session
      }
    })();
    return settle(work, callback, this.logger);
  }

  /**
   * Extends a session's expiry to its cookie's (express-session calls it on requests that do not change the
   * session): never writes its data, never shortens it, never brings back one that was destroyed.
   */
  touch(sid: string, session: StoredSession, callback?: Callback): Promise<void> {
    if (this.config.disableTouch) return settle(Promise.resolve(), callback, this.logger);
    const work = (async () => {
      const ttlMs = this.lifetimeMs(session);
      // A lifetime that is already over ends the session, as connect-redis' EXPIRE 0 does.
      const key = this.prefix + sid;
      if (ttlMs > 0) await this.call.run(touchSessionScript, [key], [ttlMs]);
      else await this.call((redis) => redis.del(key));
    })();
    return settle(work, callback, this.logger);
  }

  /** Deletes a session. */
  destroy(sid: string, callback?: Callback): Promise<void> {
    const key = this.prefix + sid;
    const work = this.call((redis) => redis.del(key)).then(() => undefined);
    return settle(work, callback, this.logger);
  }

  /** Every stored session id (SCAN under the prefix; every master on a Cluster; never KEYS). */
  ids(callback?: Callback): Promise<string[]> {
    const work = (async () => {
      const ids: string[] = [];
      for await (const { names } of scanPrefix(this.call, this.prefix, this.config.scanCount)) {
        for (const name of names) ids.push(name.slice(this.prefix.length));
      }
      return ids;
    })();
    return settle(work, callback, this.logger);
  }

  /** Every stored session, each with its `id` (as connect-redis returns them). */
  all(callback?: Callback): Promise<StoredSession[]> {
    const work = (async () => {
      const sessions: StoredSession[] = [];
      for await (const { node, keys, names } of scanPrefix(this.call, this.prefix, this.config.scanCount)) {
        const values = await perKey<string>(this.call, node, keys, 'get');
        for (let i = 0; i < values.length; i++) {
          const raw = values[i];
          if (raw === null) continue; // expired between SCAN and GET
          const id = names[i].slice(this.prefix.length);
          const session = await this.parse(id, raw);
          if (!session) continue;
          session.id = id;
          sessions.push(session);
        }
      }
      return sessions;
    })();
    return settle(work, callback, this.logger);
  }

  /** How many sessions are stored. */
  length(callback?: Callback): Promise<number> {
    return settle(
      this.ids().then((ids) => ids.length),
      callback,
      this.logger,
    );
  }

  /** Deletes every session under the prefix (and nothing else: never FLUSHDB). */
  clear(callback?: Callback): Promise<void> {
    const work = (async () => {
      for await (const { node, keys } of scanPrefix(this.call, this.prefix, this.config.scanCount)) {
        await perKey(this.call, node, keys, 'unlink');
      }
    })();
    return settle(work, callback, this.logger);
  }
}
