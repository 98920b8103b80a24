// `new SessionStore({ redis })`: an express-session Store on ioredis that reads and writes connect-redis' format
// (`sess:<id>`, the session as JSON, expiring with its cookie), so an app on express-session + connect-redis
// switches to ioredis without logging anyone out.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import type { Emit } from '../events.js';
import type { Logger } from '../logger.js';
import { maxDurationMs } from '../options.js';
import type { RedisCaller } from '../redis/bounded.js';
import type { RedisClient } from '../redis/client.js';
import { isOutage } from '../redis/health.js';
import { holdSessionDelete, sessionDeleteHeld } from '../session/ending.js';
import { factoryParts } from '../setup.js';
import { perKey, scanPrefix } from './scan.js';
import {
  resolveStoreOptions,
  type SessionSerializer,
  type SessionStoreConfig,
  type SessionStoreOptions,
  type StoredSession,
  validOption,
} from './session-store-options.js';
import { getSessionScript, touchSessionScript } from './session-store-scripts.js';

export type { SessionSerializer, SessionStoreOptions, StoredSession } from './session-store-options.js';

/** A Node-style callback, as express-session passes them (loosely typed for the same reason as StoredSession). */
// biome-ignore lint/suspicious/noExplicitAny: express-session's callback types
type Callback = (error?: any, value?: any) => void;

/** express-session's `Store` as this class uses it: its prototype, and `createSession` on it. */
interface ExpressSessionStore {
  // biome-ignore lint/suspicious/noExplicitAny: express-session's Request, SessionData and Session types
  prototype: { createSession(req: any, data: any): any };
}

/** express-session's own `Store`, resolved from the app (it is an optional peer dependency). */
function expressSessionStore(): ExpressSessionStore {
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

/** A short, stable name for a session id in a log line: the id itself would let a log reader take the session over. */
function logName(sid: string): string {
  return `sha256:${createHash('sha256').update(sid).digest('hex').slice(0, 12)}`;
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * What keeps a parsed value from being a session express-session can load (it builds the session's cookie from
 * `cookie`, and throws on anything else), or `''`: an object whose `cookie` is an object, with an `expires` that is a
 * date string or null and an `originalMaxAge` that is a number or null, when present.
 */
function shapeProblem(session: unknown): string {
  if (!isPlainObject(session)) return 'not an object';
  const { cookie } = session;
  if (!isPlainObject(cookie)) return 'no cookie object';
  const { expires, originalMaxAge } = cookie;
  if (expires !== undefined && expires !== null && (typeof expires !== 'string' || Number.isNaN(Date.parse(expires)))) {
    return 'a cookie expiry that is no date';
  }
  if (originalMaxAge !== undefined && originalMaxAge !== null && typeof originalMaxAge !== 'number') {
    return 'a cookie max age that is no number';
  }
  return '';
}

/**
 * An express-session `Store` on ioredis (5 or 6, single node, Sentinel or Cluster), in connect-redis' key and value
 * format: `app.use(session({ store: new SessionStore({ redis }), secret, resave: false, saveUninitialized: false }))`.
 * Every call is one round trip, bounded by `timeout`; every key it writes expires with its session's cookie.
 */
export class SessionStore extends EventEmitter {
  // express-session's own, inherited from its Store (see the constructor); typed loosely so that a SessionStore is
  // an express-session Store for @types/express-session without this package depending on it.
  // biome-ignore lint/suspicious/noExplicitAny: express-session's Request and Session types
  declare regenerate: (req: any, callback: (error?: any) => any) => void;
  // biome-ignore lint/suspicious/noExplicitAny: express-session's SessionData
  declare load: (sid: string, callback: (error: any, session?: any) => any) => void;
  readonly #Store: ExpressSessionStore;
  readonly #config: SessionStoreConfig;
  readonly #client: () => RedisClient;
  readonly #call: RedisCaller;
  readonly #logger: Logger;
  readonly #emit: Emit | undefined;
  /**
   * The session objects known to be stored, with the id they are stored under: loaded (express-session builds each
   * session it read through `createSession`) or written by `set()`. Their `set()` only updates, never creates, so a
   * request still in flight cannot bring back a session destroyed meanwhile; any other session (express-session's
   * new and regenerated ones) is created.
   */
  readonly #stored = new WeakMap<object, string>();

  constructor(options: SessionStoreOptions = {}) {
    super();
    // Inherit express-session's regenerate(), load() and createSession(), which build its own Session and Cookie
    // objects (and make `store instanceof session.Store` true).
    this.#Store = expressSessionStore();
    if (Object.getPrototypeOf(SessionStore.prototype) !== this.#Store.prototype) {
      Object.setPrototypeOf(SessionStore.prototype, this.#Store.prototype);
    }
    this.#config = resolveStoreOptions(options);
    const parts = factoryParts(this.#config, 'session', 'SessionStore could not use Redis (down, slow or refusing)');
    this.#logger = parts.logger;
    this.#emit = parts.emit;
    this.#client = parts.redis;
    this.#call = parts.call;
  }

  /** The ioredis client (the `redis` option, or the shared default). Read-only: the store's calls are bound to it. */
  get client(): RedisClient {
    return this.#client();
  }

  /** The key prefix (`'sess:'`). Read-only: another prefix would lose every stored session, and aim `clear()` elsewhere. */
  get prefix(): string {
    return this.#config.prefix;
  }

  /** How sessions are written and read (`JSON`). Read-only: another one could not read the stored sessions. */
  get serializer(): SessionSerializer {
    return this.#config.serializer ?? JSON;
  }

  /** Always false, read-only: every key redisware writes expires (connect-redis' `disableTTL` is refused). */
  get disableTTL(): false {
    return false;
  }

  /** The `ttl` option: seconds, or `(session) => seconds`. Changeable; validated as the constructor does. */
  get ttl(): SessionStoreConfig['ttl'] {
    return this.#config.ttl;
  }

  set ttl(value: SessionStoreConfig['ttl'] | string) {
    this.#config.ttl = validOption('ttl', value);
  }

  /** SCAN's COUNT for `all()`, `ids()`, `length()` and `clear()`. Changeable; validated. */
  get scanCount(): number {
    return this.#config.scanCount;
  }

  set scanCount(value: number) {
    this.#config.scanCount = validOption('scanCount', value);
  }

  /** Whether `touch()` does nothing. Changeable; validated. */
  get disableTouch(): boolean {
    return this.#config.disableTouch;
  }

  set disableTouch(value: boolean) {
    this.#config.disableTouch = validOption('disableTouch', value);
  }

  /**
   * express-session's `createSession` (it builds `req.session` from what `get()` read), noting the session as stored
   * (see {@link SessionStore.set}).
   */
  // biome-ignore lint/suspicious/noExplicitAny: express-session's Request, SessionData and Session types
  createSession(req: any, data: any): any {
    const session = this.#Store.prototype.createSession.call(this, req, data);
    this.#stored.set(session, req.sessionID);
    return session;
  }

  /**
   * How long `session` lives, in whole ms (as connect-redis decides): the `ttl` function's answer, else until its
   * cookie expires, else the `ttl` option. At most 1000 years; 0 or less means it is already over.
   */
  #lifetimeMs(session: StoredSession): number {
    const { ttl } = this.#config;
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
   * session, rather than a 500 on every request. The warning names the session by a hash of its id, and the problem
   * by its kind (a parser's message may quote the value).
   */
  async #parse(sid: string, raw: string): Promise<StoredSession | null> {
    let problem: string;
    try {
      const session = (await this.serializer.parse(raw)) as unknown;
      problem = shapeProblem(session);
      if (problem === '') return session as StoredSession;
    } catch (error) {
      problem = `${(error as Error)?.name ?? 'Error'} from the serializer`;
    }
    this.#logger.warn(`redisware SessionStore: session ${logName(sid)} is unreadable (${problem}), treated as none`);
    return null;
  }

  /**
   * Reads a session; `null` when there is none (a key of another type under the prefix is none either), or when its
   * delete is held (see {@link SessionStore.destroy}). Its expiry is the key's: as with connect-redis, the stored
   * `cookie.expires` is the one of its last write (`touch` extends the key, not the stored value).
   */
  get(sid: string, callback?: Callback): Promise<StoredSession | null> {
    const key = this.prefix + sid;
    if (sessionDeleteHeld(this.#client(), key)) return settle(Promise.resolve(null), callback, this.#logger);
    const work = this.#call
      .run(getSessionScript, [key], [])
      .then((raw) => (typeof raw === 'string' ? this.#parse(sid, raw) : null));
    return settle(work, callback, this.#logger);
  }

  /**
   * Writes a session, expiring with its cookie (one that has already expired is deleted instead). A session this
   * store loaded or wrote under `sid` is only updated (`SET … XX`): one destroyed (or expired) meanwhile stays gone,
   * whatever request still holds it. Any other session is created.
   */
  set(sid: string, session: StoredSession, callback?: Callback): Promise<void> {
    const work = (async () => {
      const ttlMs = this.#lifetimeMs(session);
      const key = this.prefix + sid;
      if (ttlMs <= 0) {
        await this.#call((redis) => redis.del(key)); // a lifetime that is already over ends the session
        return;
      }
      const value = this.serializer.stringify(session);
      if (this.#stored.get(session) === sid) {
        await this.#call((redis) => redis.set(key, value, 'PX', ttlMs, 'XX'));
        return;
      }
      await this.#call((redis) => redis.set(key, value, 'PX', ttlMs));
      if (typeof session === 'object' && session !== null) this.#stored.set(session, sid);
    })();
    return settle(work, callback, this.#logger);
  }

  /**
   * Extends a session's expiry to its cookie's (express-session calls it on requests that do not change the
   * session): never writes its data, never shortens it, never brings back one that was destroyed.
   */
  touch(sid: string, session: StoredSession, callback?: Callback): Promise<void> {
    if (this.#config.disableTouch) return settle(Promise.resolve(), callback, this.#logger);
    const work = (async () => {
      const ttlMs = this.#lifetimeMs(session);
      // A lifetime that is already over ends the session, as connect-redis' EXPIRE 0 does.
      const key = this.prefix + sid;
      if (ttlMs > 0) await this.#call.run(touchSessionScript, [key], [ttlMs]);
      else await this.#call((redis) => redis.del(key));
    })();
    return settle(work, callback, this.#logger);
  }

  /**
   * Deletes a session (express-session's `destroy()` and `regenerate()`). When Redis cannot be reached (down, or
   * slower than `timeout`) the delete is held until it answers again, applied before anything else, and this store
   * reads the session as none meanwhile: it resolves all the same (event `redis.deferred`). It rejects when the
   * queue of held writes is full (`redis.dropped`), or the client was closed.
   */
  destroy(sid: string, callback?: Callback): Promise<void> {
    const key = this.prefix + sid;
    const remove = (redis: RedisClient) => redis.del(key);
    const work = this.#call(remove).then(
      () => undefined,
      (error: unknown) => {
        if (!isOutage(error)) throw error;
        const held = { client: this.#client(), key, remove, cause: error, emit: this.#emit, logger: this.#logger };
        holdSessionDelete(held);
      },
    );
    return settle(work, callback, this.#logger);
  }

  /** Every stored session id (SCAN under the prefix; every master on a Cluster; never KEYS). */
  ids(callback?: Callback): Promise<string[]> {
    const work = (async () => {
      const ids: string[] = [];
      for await (const { names } of scanPrefix(this.#call, this.prefix, this.#config.scanCount)) {
        for (const name of names) ids.push(name.slice(this.prefix.length));
      }
      return ids;
    })();
    return settle(work, callback, this.#logger);
  }

  /** Every stored session, each with its `id` (as connect-redis returns them). */
  all(callback?: Callback): Promise<StoredSession[]> {
    const work = (async () => {
      const sessions: StoredSession[] = [];
      for await (const { node, keys, names } of scanPrefix(this.#call, this.prefix, this.#config.scanCount)) {
        const values = await perKey<string>(this.#call, node, keys, 'get');
        for (let i = 0; i < values.length; i++) {
          const raw = values[i];
          if (raw === null) continue; // expired between SCAN and GET
          const id = names[i].slice(this.prefix.length);
          const session = await this.#parse(id, raw);
          if (!session) continue;
          session.id = id;
          sessions.push(session);
        }
      }
      return sessions;
    })();
    return settle(work, callback, this.#logger);
  }

  /** How many sessions are stored. */
  length(callback?: Callback): Promise<number> {
    return settle(
      this.ids().then((ids) => ids.length),
      callback,
      this.#logger,
    );
  }

  /** Deletes every session under the prefix (and nothing else: never FLUSHDB). */
  clear(callback?: Callback): Promise<void> {
    const work = (async () => {
      for await (const { node, keys } of scanPrefix(this.#call, this.prefix, this.#config.scanCount)) {
        await perKey(this.#call, node, keys, 'unlink');
      }
    })();
    return settle(work, callback, this.#logger);
  }
}
