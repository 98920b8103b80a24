// The session store: how a session lives in Redis, and the object that stands for it in `req.session`.
import { lazyRedis } from '../connection.js';
import { keyspace } from '../keys.js';
import { OutageReporter, resolveLogger } from '../logger.js';
import { parseOptions } from '../options.js';
import { boundedCaller } from '../redis/bounded.js';
import type { ScriptCallback } from '../redis/script.js';
import { type RedisSessionOptions, sessionSchema } from './options.js';
import { loadSessionScript, saveSessionScript, userIndexScript } from './scripts.js';
import { newSessionId } from './signature.js';

/** Prefix of the hash fields that hold session data (the others are `_c` created and `_s` last seen). */
export const dataPrefix = 'd:';

interface SessionState {
  manager: SessionManager;
  id: string | undefined;
  /** Not in Redis yet (fresh, or regenerated): saving creates it. */
  isNew: boolean;
  /** JSON of each data field as Redis holds it (after load or the last save). */
  saved: Map<string, string>;
  /** The user-index entry Redis holds for this id, as JSON (undefined: none). */
  indexedUser: string | undefined;
  destroyed: boolean;
  /** The session was read through `onRedisError: 'continue'`: never saved. */
  detached: boolean;
  /** A Set-Cookie is owed for the current id (new or regenerated and saved). */
  cookieOwed: boolean;
  cookieSent: boolean;
  /**
   * Set by the middleware: puts one of its hooks on the response (`'end'`: hold the end until the session is
   * saved; `'headers'`: add a Set-Cookie owed when the headers go out). Each is installed at most once, and only
   * once the session may change (see {@link mayChange}).
   */
  hookResponse: ((hook: 'end' | 'headers') => void) | undefined;
  endHooked: boolean;
  headersHooked: boolean;
}

interface Changes {
  set: string[];
  remove: string[];
  count: number;
  /** Fields whose value JSON cannot hold (a cycle, a BigInt), with the reason: left as Redis has them. */
  unstorable: string[];
}

type SessionManager = ReturnType<typeof createManager>;
/** The resolved configuration of one middleware. */
export type SessionConfig = ReturnType<typeof resolveConfig>;

/** The object behind `req.session`: data as own properties, methods on the prototype. */
export class RedisSession {
  // A private field: out of sight of the data (keys, spread, JSON) and cheaper to create than a symbol property
  // defined with Object.defineProperty.
  readonly #state: SessionState;

  /** The bookkeeping of `session` (for the manager and the middleware). */
  static stateOf(session: RedisSession): SessionState {
    return session.#state;
  }

  /** The session itself, given it or the Proxy user code holds (the `this` of its methods; see `tracked`). */
  static unwrap(session: RedisSession): RedisSession {
    return #state in session ? session : (session as unknown as Tracked)[trackedSession];
  }

  constructor(manager: SessionManager, id: string | undefined, fields: string[] | undefined, detached: boolean) {
    this.#state = {
      manager,
      id,
      isNew: fields === undefined,
      saved: new Map(),
      indexedUser: undefined,
      destroyed: false,
      detached,
      cookieOwed: false,
      cookieSent: false,
      hookResponse: undefined,
      endHooked: false,
      headersHooked: false,
    };
    if (fields) manager.fill(this, fields);
  }

  get id(): string {
    const s = stateOf(this);
    s.id ??= newSessionId();
    return s.id;
  }

  save(): Promise<void>;
  save(callback: SessionCallback): void;
  save(callback?: SessionCallback): Promise<void> | undefined {
    return act(this, callback, (manager, session) => manager.commit(session));
  }

  reload(): Promise<void>;
  reload(callback: SessionCallback): void;
  reload(callback?: SessionCallback): Promise<void> | undefined {
    return act(this, callback, (manager, session) => manager.reload(session));
  }

  touch(): Promise<void>;
  touch(callback: SessionCallback): void;
  touch(callback?: SessionCallback): Promise<void> | undefined {
    return act(this, callback, (manager, session) => manager.touch(session));
  }

  regenerate(options?: { keepData?: boolean }): Promise<void>;
  regenerate(callback: SessionCallback): void;
  regenerate(options?: { keepData?: boolean } | SessionCallback): Promise<void> | undefined {
    const callback = typeof options === 'function' ? options : undefined;
    const keepData = typeof options === 'object' && options?.keepData === true;
    return act(this, callback, (manager, session) => manager.regenerate(session, keepData));
  }

  destroy(): Promise<void>;
  destroy(callback: SessionCallback): void;
  destroy(callback?: SessionCallback): Promise<void> | undefined {
    return act(this, callback, (manager, session) => manager.destroy(session));
  }
}

/** A Node-style callback, for code written for express-session (passport calls `regenerate(cb)` and `save(cb)`). */
export type SessionCallback = (error?: Error) => void;

/**
 * Runs a method's `action` on the session behind `self` (the Proxy user code holds; see `tracked`) and answers as a
 * Promise, or, given a callback, through it: called outside the promise chain, so a callback that throws is an
 * uncaught exception, as with any callback API, rather than an unhandled rejection.
 */
function act(
  self: RedisSession,
  callback: SessionCallback | undefined,
  action: (manager: SessionManager, session: RedisSession) => Promise<void>,
): Promise<void> | undefined {
  const session = unwrap(self);
  const done = action(stateOf(session).manager, session);
  if (typeof callback !== 'function') return done;
  done.then(
    () => process.nextTick(callback),
    (error: Error) => process.nextTick(callback, error),
  );
  return undefined;
}

/**
 * The session may change from here on: the middleware's end hook goes on the response, and its headers hook too
 * when the session is new (saving it will owe a cookie) or `cookieToo` (regenerate(), destroy() and reload()).
 * Until then the response is left alone: a property added to an Express `res` costs it a new hidden class.
 */
export function mayChange(s: SessionState, cookieToo: boolean): void {
  if (s.hookResponse === undefined) return;
  hookOnce(s, 'end');
  if (cookieToo || s.isNew) hookOnce(s, 'headers');
}

/** Installs one of the middleware's response hooks unless it already is. */
export function hookOnce(s: SessionState, hook: 'end' | 'headers'): void {
  if (hook === 'end') {
    if (s.endHooked) return;
    s.endHooked = true;
  } else {
    if (s.headersHooked) return;
    s.headersHooked = true;
  }
  s.hookResponse?.(hook);
}

/** The key under which {@link trackChanges} hands out its target (for the methods, see `stateOf`). */
const trackedSession = Symbol('redisware session');
type Tracked = { [trackedSession]: RedisSession };

const isObject = (value: unknown): value is object => typeof value === 'object' && value !== null;

/**
 * What user code gets as `req.session`: the session behind a Proxy that calls {@link mayChange} on the first
 * operation that can change it: a write, a delete, a definition, or a read that hands out an object (which
 * could then be changed in place). A request that only reads strings, numbers and booleans never hooks its
 * response. Everything else behaves as on the session itself.
 */
const trackChanges: ProxyHandler<RedisSession> = {
  get(target, key) {
    if (key === trackedSession) return target;
    const value: unknown = Reflect.get(target, key, target);
    if (isObject(value)) mayChange(stateOf(target), false);
    return value;
  },
  getOwnPropertyDescriptor(target, key) {
    const descriptor = Reflect.getOwnPropertyDescriptor(target, key);
    if (isObject(descriptor?.value)) mayChange(stateOf(target), false);
    return descriptor;
  },
  set(target, key, value) {
    mayChange(stateOf(target), false);
    return Reflect.set(target, key, value, target);
  },
  deleteProperty(target, key) {
    mayChange(stateOf(target), false);
    return Reflect.deleteProperty(target, key);
  },
  defineProperty(target, key, descriptor) {
    mayChange(stateOf(target), false);
    return Reflect.defineProperty(target, key, descriptor);
  },
};

/**
 * `session` as user code should hold it (see {@link trackChanges}); `hookResponse` puts the middleware's hooks
 * on the response once they are needed.
 */
export function tracked(session: RedisSession, hookResponse: (hook: 'end' | 'headers') => void): RedisSession {
  stateOf(session).hookResponse = hookResponse;
  return new Proxy(session, trackChanges);
}

/** A fresh, empty change set (filled in place by changesOf). */
function noChanges(): Changes {
  return { set: [], remove: [], count: 0, unstorable: [] };
}

/** Why some fields of a session cannot be saved, naming them. */
function unstorableMessage(changes: Changes): string {
  return `redisSession: session fields cannot be stored as JSON, so they were not saved: ${changes.unstorable.join(', ')}`;
}

/** The bookkeeping of a session object. */
export const stateOf = RedisSession.stateOf;
const unwrap = RedisSession.unwrap;

function dataFields(session: RedisSession): string[] {
  return Object.keys(session);
}

/** Loads, diffs and saves sessions, and keeps the per-user index, for one `redisSession()` middleware. */
export function createManager(config: SessionConfig) {
  const { call, sessionKey, userKey } = config;
  const ttlArgs = [config.ttl, config.absoluteTimeout] as const;
  /** The load script's arguments, built once: it runs on every request that has a session. */
  const loadArgs = { rolling: [...ttlArgs, 1], still: [...ttlArgs, 0] } as const;

  /**
   * How `field` would be stored: its JSON, `undefined` when the value is not stored (undefined, a function, a
   * symbol: the field is then removed), or the reason JSON cannot hold it (a cycle, a BigInt, a throwing getter).
   */
  function storedForm(session: RedisSession, field: string): string | undefined | { unstorable: string } {
    try {
      const value = (session as unknown as Record<string, unknown>)[field];
      if (value === undefined || typeof value === 'function') return undefined;
      return JSON.stringify(value);
    } catch (error) {
      return { unstorable: (error as Error).message.split('\n')[0] };
    }
  }

  /**
   * What differs from what Redis holds, or `undefined` when nothing does: a read-only request (nothing changed,
   * nothing removed) builds no change lists, and checks for removed fields only when some stored field is missing.
   */
  function changesOf(session: RedisSession): Changes | undefined {
    const { saved } = stateOf(session);
    let changes: Changes | undefined;
    // Fields JSON cannot hold are kept as stored (the caller reports them) rather than failing the response.
    let presentSaved = 0;
    for (const field of dataFields(session)) {
      const form = storedForm(session, field);
      if (form === undefined) continue;
      const before = saved.get(field);
      if (before !== undefined) presentSaved++;
      if (form === before) continue;
      changes ??= noChanges();
      if (typeof form === 'string') changes.set.push(field, form);
      else changes.unstorable.push(`"${field}" (${form.unstorable})`);
    }
    if (presentSaved < saved.size) {
      for (const field of saved.keys()) {
        if (Object.hasOwn(session, field) && storedForm(session, field) !== undefined) continue;
        changes ??= noChanges();
        changes.remove.push(field);
      }
    }
    if (changes) changes.count = changes.set.length / 2 + changes.remove.length;
    return changes;
  }

  /** The user a session is indexed under: its `userField`, when that is a string or a finite number. */
  function userOf(session: RedisSession): string | undefined {
    let value: unknown;
    try {
      value = (session as unknown as Record<string, unknown>)[config.userField];
    } catch {
      return undefined; // a throwing getter: changesOf reports it
    }
    if (typeof value === 'string' && value !== '') return value;
    return typeof value === 'number' && Number.isFinite(value) ? String(value) : undefined;
  }

  async function updateUserIndex(id: string, from: string | undefined, to: string | undefined): Promise<void> {
    if (from === to) return;
    const updates: Promise<unknown>[] = [];
    if (from !== undefined) {
      updates.push(call.run(userIndexScript, [userKey(from)], [id, config.absoluteTimeout, 0]));
    }
    if (to !== undefined) {
      updates.push(call.run(userIndexScript, [userKey(to)], [id, config.absoluteTimeout, 1]));
    }
    await Promise.all(updates);
  }

  const manager = {
    fill(session: RedisSession, fields: string[]): void {
      const s = stateOf(session);
      const target = session as unknown as Record<string, unknown>;
      for (const field of dataFields(session)) delete target[field];
      s.saved.clear();
      for (let i = 0; i < fields.length; i += 2) {
        const field = fields[i];
        try {
          target[field] = JSON.parse(fields[i + 1]);
          s.saved.set(field, fields[i + 1]);
        } catch {
          // A field we cannot read is dropped rather than failing the request.
        }
      }
      s.indexedUser = userOf(session);
    },

    /**
     * What finishing the request now would write, or `undefined` when it would write nothing. Fields JSON cannot
     * hold are left out, and reported through `unstorable`.
     */
    pendingWrite(session: RedisSession, unstorable?: (message: string) => void): Changes | undefined {
      const s = stateOf(session);
      if (s.destroyed || s.detached) return undefined;
      const changes = changesOf(session);
      if (changes?.unstorable.length) unstorable?.(unstorableMessage(changes));
      if (changes && changes.count > 0) return changes;
      if (s.isNew && config.saveUninitialized) return changes ?? noChanges();
      return undefined;
    },

    /** Whether finishing the request now would write the session (so a cookie is owed for a new one). */
    willSave(session: RedisSession): boolean {
      return manager.pendingWrite(session) !== undefined;
    },

    async commit(session: RedisSession): Promise<void> {
      let problem: string | undefined;
      const changes = manager.pendingWrite(session, (message) => {
        problem = message;
      });
      if (problem) throw new TypeError(problem);
      if (!changes) return;
      await new Promise<void>((resolve, reject) =>
        manager.write(session, changes, (error) => (error ? reject(error) : resolve())),
      );
    },

    /**
     * Writes `changes` (from {@link pendingWrite}) in one script, plus the user index if the user changed;
     * `done` is called once both are finished (through a callback: this runs on every changing request).
     */
    write(session: RedisSession, changes: Changes, done: (error: Error | undefined) => void): void {
      const s = stateOf(session);
      const id = session.id;
      const args: (string | number)[] = [...ttlArgs, s.isNew ? 1 : 0, changes.set.length / 2];
      for (let i = 0; i < changes.set.length; i += 2) args.push(dataPrefix + changes.set[i], changes.set[i + 1]);
      for (const field of changes.remove) args.push(dataPrefix + field);
      const user = userOf(session);
      // Settles with the index update's error, if any (handled at once, so a failure is never unhandled).
      const indexUpdated =
        s.indexedUser === user
          ? undefined
          : updateUserIndex(id, s.indexedUser, user).then(
              () => undefined,
              (error: Error) => error,
            );
      call.script(saveSessionScript, [sessionKey(id)], args, (saveError, saved) => {
        const finish = (indexError: Error | undefined) => {
          const error = saveError ?? indexError;
          if (error) return done(error);
          s.indexedUser = user;
          // saved !== 1: destroyed or expired while this request ran; its changes must not bring it back.
          if (saved === 1) {
            if (s.isNew) s.cookieOwed = true;
            s.isNew = false;
            for (let i = 0; i < changes.set.length; i += 2) s.saved.set(changes.set[i], changes.set[i + 1]);
            for (const field of changes.remove) s.saved.delete(field);
          }
          done(undefined);
        };
        if (indexUpdated) indexUpdated.then(finish);
        else finish(undefined);
      });
    },

    /** Reads a session (and refreshes its idle timeout when `rolling`): its data fields, or null when gone. */
    loadThen(id: string, rolling: boolean, done: (error: Error | undefined, fields?: string[] | null) => void): void {
      call.script(
        loadSessionScript,
        [sessionKey(id)],
        rolling ? loadArgs.rolling : loadArgs.still,
        done as ScriptCallback,
      );
    },

    load(id: string, rolling: boolean): Promise<string[] | null> {
      return new Promise((resolve, reject) =>
        manager.loadThen(id, rolling, (error, fields) => (error ? reject(error) : resolve(fields ?? null))),
      );
    },

    async reload(session: RedisSession): Promise<void> {
      const s = stateOf(session);
      mayChange(s, true);
      if (s.detached || s.destroyed) return;
      const wasStored = !s.isNew;
      const fields = wasStored ? await manager.load(session.id, false) : null;
      if (fields) {
        manager.fill(session, fields);
      } else {
        manager.fill(session, []);
        s.isNew = true;
        // Gone (expired or destroyed elsewhere): like a request whose cookie names a gone session, it starts over
        // under a new id, never the old one.
        if (wasStored) s.id = undefined;
      }
    },

    async touch(session: RedisSession): Promise<void> {
      const s = stateOf(session);
      if (s.isNew || s.detached || s.destroyed) return;
      await manager.load(session.id, true);
    },

    async regenerate(session: RedisSession, keepData: boolean): Promise<void> {
      const s = stateOf(session);
      mayChange(s, true);
      if (!s.isNew && s.id !== undefined) {
        const oldId = s.id;
        await Promise.all([call((c) => c.del(sessionKey(oldId))), updateUserIndex(oldId, s.indexedUser, undefined)]);
      }
      if (!keepData)
        for (const field of dataFields(session)) delete (session as unknown as Record<string, unknown>)[field];
      s.id = newSessionId();
      s.isNew = true;
      s.destroyed = false;
      s.saved.clear();
      s.indexedUser = undefined;
      s.cookieSent = false;
    },

    async destroy(session: RedisSession): Promise<void> {
      const s = stateOf(session);
      mayChange(s, true);
      if (!s.isNew && s.id !== undefined) {
        const id = s.id;
        await Promise.all([call((c) => c.del(sessionKey(id))), updateUserIndex(id, s.indexedUser, undefined)]);
      }
      s.destroyed = true;
      s.indexedUser = undefined;
      for (const field of dataFields(session)) delete (session as unknown as Record<string, unknown>)[field];
    },
  };
  return manager;
}

/** Validates the options and derives what the store and the middleware need. */
export function resolveConfig(options: RedisSessionOptions) {
  const config = parseOptions('redisSession', sessionSchema, options);
  const logger = resolveLogger(config.logger);
  const sessionKeyOf = keyspace(config.prefix);
  const outage = new OutageReporter(logger, 'redisSession could not use Redis (down, slow or refusing)');
  return {
    ...config,
    secrets: typeof config.secret === 'string' ? [config.secret] : config.secret,
    logger,
    /** Runs a command within `timeout`, logging each outage once. */
    call: boundedCaller({
      client: lazyRedis(config.redis),
      timeoutMs: config.timeout,
      outage,
      logger,
      batch: config.batch,
    }),
    sessionKey: (id: string) => sessionKeyOf(id),
    userKey: (userId: string) => sessionKeyOf('user', userId),
  };
}
