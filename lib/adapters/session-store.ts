// `new SessionStore({ redis })`: an express-session Store on ioredis that reads and writes connect-redis' format
// (`sess:<id>`, the session as JSON, expiring with its cookie), so an app on express-session + connect-redis
// switches to ioredis without logging anyone out.
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { z } from 'zod';
import { lazyRedis } from '../connection.js';
import { type Logger, OutageReporter, resolveLogger } from '../logger.js';
import { commonMiddlewareOptions, fn, parseOptions, timerDurationMs } from '../options.js';
import { boundedCaller, type RedisCaller } from '../redis/bounded.js';
import type { RedisClient } from '../redis/client.js';
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
  /** Key prefix, as connect-redis: `sess:<id>`. @default 'sess:' */
  prefix: z.string().default('sess:'),
  /**
   * Lifetime of a session whose cookie has no expiry (a browser-session cookie): seconds, as connect-redis takes it,
   * a duration string (`'1d'`), or `(session) => seconds`. A cookie with `maxAge` always decides by itself.
   * @default 86400 (one day)
   */
  ttl: z
    .union([
      z.number().int().positive(),
      z.string().transform((value, ctx) => {
        const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(value.trim());
        const unit = { ms: 0.001, s: 1, m: 60, h: 3_600, d: 86_400 };
        const seconds = match ? Math.ceil(Number(match[1]) * unit[match[2] as keyof typeof unit]) : 0;
        if (seconds > 0) return seconds;
        ctx.addIssue({ code: 'custom', message: "expected seconds or a duration like '30m', '1d'" });
        return z.NEVER;
      }),
      fn<(session: StoredSession) => number>(),
    ])
    .default(86_400),
  /** Never extend a session's expiry on requests that do not change it (express-session's `touch`). @default false */
  disableTouch: z.boolean().default(false),
  /** How sessions are written and read. @default JSON */
  serializer: serializerSchema.optional(),
  /** SCAN's COUNT for `all()`, `ids()`, `length()` and `clear()`. @default 100 */
  scanCount: z.number().int().positive().default(100),
});

export type SessionStoreOptions = z.input<typeof sessionStoreSchema>;

/** Stores `ARGV[1]` at KEYS[1] for ARGV[2] ms, or deletes it when that is not positive. */
const setSessionScript = new RedisScript(
  'session-store set',
  `
if tonumber(ARGV[2]) <= 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`,
  { keys: 1 },
);

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

const getSessionScript = new RedisScript('session-store get', "return redis.call('GET', KEYS[1])", { keys: 1 });
const destroySessionScript = new RedisScript('session-store destroy', "return redis.call('DEL', KEYS[1])", {
  keys: 1,
});

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
function settle<T>(work: Promise<T>, callback: Callback | undefined): Promise<T> {
  if (callback) {
    work.then(
      (value) => callback(null, value),
      (error) => callback(error),
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
  private readonly redis: () => RedisClient;
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
    this.redis = lazyRedis(this.config.redis);
    this.call = boundedCaller({
      client: this.redis,
      timeoutMs: this.config.timeout,
      outage,
      logger,
      batch: this.config.batch,
    });
  }

  /** How long `session` lives, in ms: until its cookie expires, else the `ttl` option. */
  private lifetimeMs(session: StoredSession): number {
    const expires = session?.cookie?.expires;
    const at = expires ? new Date(expires).getTime() : Number.NaN;
    if (Number.isFinite(at)) return at - Date.now();
    const { ttl } = this.config;
    const seconds = typeof ttl === 'function' ? Number(ttl(session)) : ttl;
    // A ttl function that returns nonsense gets the default day, never a key without an expiry.
    return (Number.isFinite(seconds) ? seconds : 86_400) * 1000;
  }

  /** Reads a session; `null` when there is none, or when its cookie has already expired (then it is deleted). */
  get(sid: string, callback?: Callback): Promise<StoredSession | null> {
    const key = this.prefix + sid;
    const work = this.call.run(getSessionScript, [key], []).then((raw) => {
      if (raw === null || raw === undefined) return null;
      let session: StoredSession;
      try {
        session = this.serializer.parse(String(raw)) as StoredSession;
      } catch (error) {
        // Unreadable (written by something else under this prefix): no session, rather than a 500 on every request.
        this.logger.warn(`redisware SessionStore: session ${sid} is unreadable, treated as none: ${String(error)}`);
        return null;
      }
      const expires = session?.cookie?.expires;
      if (expires && new Date(expires).getTime() <= Date.now()) {
        return this.destroy(sid).then(() => null);
      }
      return session;
    });
    return settle(work, callback);
  }

  /** Writes a session, expiring with its cookie (one that has already expired is deleted instead). */
  set(sid: string, session: StoredSession, callback?: Callback): Promise<void> {
    const work = (async () => {
      const ttlMs = Math.ceil(this.lifetimeMs(session));
      const value = ttlMs > 0 ? this.serializer.stringify(session) : '';
      await this.call.run(setSessionScript, [this.prefix + sid], [value, Math.max(ttlMs, 0)]);
    })();
    return settle(work, callback);
  }

  /**
   * Extends a session's expiry to its cookie's (express-session calls it on requests that do not change the
   * session): never writes its data, never shortens it, never brings back one that was destroyed.
   */
  touch(sid: string, session: StoredSession, callback?: Callback): Promise<void> {
    if (this.config.disableTouch) return settle(Promise.resolve(), callback);
    const work = (async () => {
      const ttlMs = Math.ceil(this.lifetimeMs(session));
      if (ttlMs > 0) await this.call.run(touchSessionScript, [this.prefix + sid], [ttlMs]);
    })();
    return settle(work, callback);
  }

  /** Deletes a session. */
  destroy(sid: string, callback?: Callback): Promise<void> {
    const work = this.call.run(destroySessionScript, [this.prefix + sid], []).then(() => undefined);
    return settle(work, callback);
  }

  /** Every stored session id (SCAN under the prefix; every master on a Cluster; never KEYS). */
  ids(callback?: Callback): Promise<string[]> {
    const work = (async () => {
      const ids: string[] = [];
      for await (const { keys } of scanPrefix(this.redis(), this.prefix, this.config.scanCount)) {
        for (const key of keys) ids.push(key.slice(this.prefix.length));
      }
      return ids;
    })();
    return settle(work, callback);
  }

  /** Every stored session, each with its `id` (as connect-redis returns them). */
  all(callback?: Callback): Promise<StoredSession[]> {
    const work = (async () => {
      const sessions: StoredSession[] = [];
      for await (const { node, keys } of scanPrefix(this.redis(), this.prefix, this.config.scanCount)) {
        const values = await perKey<string>(node, keys, 'get');
        values.forEach((raw, i) => {
          if (raw === null) return; // expired between SCAN and GET
          const session = this.serializer.parse(raw) as StoredSession;
          session.id = keys[i].slice(this.prefix.length);
          sessions.push(session);
        });
      }
      return sessions;
    })();
    return settle(work, callback);
  }

  /** How many sessions are stored. */
  length(callback?: Callback): Promise<number> {
    return settle(
      this.ids().then((ids) => ids.length),
      callback,
    );
  }

  /** Deletes every session under the prefix (and nothing else: never FLUSHDB). */
  clear(callback?: Callback): Promise<void> {
    const work = (async () => {
      for await (const { node, keys } of scanPrefix(this.redis(), this.prefix, this.config.scanCount)) {
        await perKey(node, keys, 'unlink');
      }
    })();
    return settle(work, callback);
  }
}
