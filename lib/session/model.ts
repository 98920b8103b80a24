// The object behind `req.session`: data as own properties, methods and `cookie` on its prototype, the bookkeeping
// in a private field, and what differs from what Redis holds.
import type { Request } from 'express';
import { markPersonal, markSessionIssued } from '../http/marks.js';
import type { Logger } from '../logger.js';
import type { SessionStorage } from './storage.js';
import type { LoadedSession } from './stored.js';

/** A Node-style callback, for code written for express-session (passport calls `regenerate(cb)` and `save(cb)`). */
export type SessionCallback = (error?: Error) => void;

/**
 * This session's own cookie lifetime, set through `req.session.cookie`: milliseconds of a persistent cookie (which
 * the idle timeout then follows), `null` for a browser-session cookie, `undefined` for the configured one.
 */
export type Lifetime = number | null | undefined;

export interface SessionState {
  storage: SessionStorage;
  /** The request, for `genid(req)`. */
  req: Request;
  id: string | undefined;
  /** Not in Redis yet (fresh, or regenerated): saving creates it. */
  isNew: boolean;
  /** JSON of each data field as Redis holds it (after load or the last save). */
  saved: Map<string, string>;
  /** The user-index entry Redis holds for this id, canonical (undefined: none). */
  indexedUser: string | undefined;
  lifetime: Lifetime;
  /** `lifetime` differs from what Redis holds. */
  lifetimeChanged: boolean;
  destroyed: boolean;
  /** The session was read through `onRedisError: 'continue'`: never saved. */
  detached: boolean;
  /** A Set-Cookie is owed for the current id (new or regenerated and saved, or a new lifetime). */
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
  cookie: SessionCookie | undefined;
}

/** What a request changed, for the save script. */
export interface Changes {
  /** Field, JSON, field, JSON, … */
  set: string[];
  remove: string[];
  count: number;
  /** Fields whose value JSON cannot hold (a cycle, a BigInt), with the reason: left as Redis has them. */
  unstorable: string[];
}

/**
 * Names user code can never write into a session: they would replace its prototype (`__proto__`; the others are the
 * usual companions of prototype pollution) or shadow what every session has. `Object.assign(req.session, req.body)`
 * with any of them in the body changes nothing.
 */
const reserved = new Set([
  '__proto__',
  'constructor',
  'prototype',
  // What every object has from Object.prototype: shadowing it breaks code that calls it on the session.
  'hasOwnProperty',
  'isPrototypeOf',
  'propertyIsEnumerable',
  'toString',
  'toLocaleString',
  'valueOf',
  '__defineGetter__',
  '__defineSetter__',
  '__lookupGetter__',
  '__lookupSetter__',
  'id',
  'cookie',
  'save',
  'reload',
  'touch',
  'regenerate',
  'destroy',
]);

/** Whether `field` is a name no data field may have (see {@link reserved}). */
export function isReservedField(field: string): boolean {
  return reserved.has(field);
}

/** The object behind `req.session`: data as own properties, methods on the prototype. */
export class RedisSession {
  // A private field: out of sight of the data (keys, spread, JSON) and cheaper to create than a symbol property
  // defined with Object.defineProperty.
  readonly #state: SessionState;

  /** The bookkeeping of `session` (for the storage and the middleware). */
  static stateOf(session: RedisSession): SessionState {
    return session.#state;
  }

  /** The session itself, given it or the Proxy user code holds (the `this` of its methods; see `tracked`). */
  static unwrap(session: RedisSession): RedisSession {
    return #state in session ? session : (session as unknown as Tracked)[trackedSession];
  }

  constructor(
    storage: SessionStorage,
    req: Request,
    id: string | undefined,
    loaded: LoadedSession | undefined,
    detached: boolean,
  ) {
    this.#state = {
      storage,
      req,
      id,
      isNew: loaded === undefined,
      saved: new Map(),
      indexedUser: undefined,
      lifetime: undefined,
      lifetimeChanged: false,
      destroyed: false,
      detached,
      cookieOwed: false,
      cookieSent: false,
      hookResponse: undefined,
      endHooked: false,
      headersHooked: false,
      cookie: undefined,
    };
    if (loaded) storage.fill(this, loaded);
  }

  get id(): string {
    const s = stateOf(this);
    s.id ??= s.storage.newId(s.req);
    return s.id;
  }

  /** The session cookie's attributes; `maxAge` / `expires` give this session a lifetime of its own. */
  get cookie(): SessionCookie {
    const s = stateOf(this);
    s.cookie ??= new SessionCookie(s);
    return s.cookie;
  }

  save(): Promise<void>;
  save(callback: SessionCallback): void;
  save(callback?: SessionCallback): Promise<void> | undefined {
    return act(this, 'save', callback, (storage, session) => storage.commit(session));
  }

  reload(): Promise<void>;
  reload(callback: SessionCallback): void;
  reload(callback?: SessionCallback): Promise<void> | undefined {
    return act(this, 'reload', callback, (storage, session) => storage.reload(session));
  }

  touch(): Promise<void>;
  touch(callback: SessionCallback): void;
  touch(callback?: SessionCallback): Promise<void> | undefined {
    return act(this, 'touch', callback, (storage, session) => storage.touch(session));
  }

  regenerate(options?: { keepData?: boolean }): Promise<void>;
  regenerate(callback: SessionCallback): void;
  regenerate(options?: { keepData?: boolean } | SessionCallback): Promise<void> | undefined {
    const callback = typeof options === 'function' ? options : undefined;
    const keepData = typeof options === 'object' && options?.keepData === true;
    return act(this, 'regenerate', callback, (storage, session) => storage.regenerate(session, keepData));
  }

  destroy(): Promise<void>;
  destroy(callback: SessionCallback): void;
  destroy(callback?: SessionCallback): Promise<void> | undefined {
    return act(this, 'destroy', callback, (storage, session) => storage.destroy(session));
  }
}

/** The longest lifetime a cookie can be given: what Redis expiries and `Date` both hold comfortably. */
const maxLifetimeMs = 1_000 * 365 * 86_400_000;

/**
 * `req.session.cookie`, as express-session has it: `maxAge` (milliseconds; `null` for a browser-session cookie) and
 * `expires` (a `Date`, or `null` / `false`) give this session a lifetime of its own — "remember me" — which its
 * cookie and its idle timeout on the server then follow (the absolute timeout still caps it). The other attributes
 * are the middleware's, read-only.
 */
export class SessionCookie {
  readonly #state: SessionState;

  constructor(state: SessionState) {
    this.#state = state;
  }

  /** This session's cookie lifetime in milliseconds, or `null` for a browser-session cookie. */
  get maxAge(): number | null {
    const s = this.#state;
    return s.lifetime !== undefined ? s.lifetime : (s.storage.config.cookie.maxAge ?? null);
  }

  set maxAge(value: number | null | undefined) {
    if (value === undefined) value = null; // express-session takes undefined for a browser-session cookie too
    if (
      value !== null &&
      !(typeof value === 'number' && Number.isFinite(value) && value > 0 && value <= maxLifetimeMs)
    ) {
      throw new TypeError(
        `req.session.cookie.maxAge is invalid: ${String(value)} (expected milliseconds > 0, or null for a browser-session cookie)`,
      );
    }
    const s = this.#state;
    const lifetime = value === null ? null : Math.round(value);
    if (lifetime === this.maxAge && s.lifetime !== undefined) return;
    mayChange(s, true);
    s.lifetime = lifetime;
    s.lifetimeChanged = true;
    s.cookieOwed = true;
    s.cookieSent = false;
  }

  /** When the cookie expires (from now), or `null` for a browser-session cookie. */
  get expires(): Date | null {
    const maxAge = this.maxAge;
    return maxAge === null ? null : new Date(Date.now() + maxAge);
  }

  set expires(value: Date | null | false | undefined) {
    if (value === null || value === false || value === undefined) {
      this.maxAge = null;
      return;
    }
    if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
      throw new TypeError(
        `req.session.cookie.expires is invalid: ${String(value)} (expected a Date, or null for a browser-session cookie)`,
      );
    }
    this.maxAge = Math.max(1, value.getTime() - Date.now());
  }

  /** The lifetime the session was given, as express-session names it. */
  get originalMaxAge(): number | null {
    return this.maxAge;
  }

  get httpOnly(): boolean {
    return this.#state.storage.config.cookie.httpOnly;
  }

  get secure(): boolean {
    const secure = this.#state.storage.config.cookie.secure;
    return secure === 'auto' ? this.#state.req.secure : secure;
  }

  get sameSite(): 'lax' | 'strict' | 'none' | boolean {
    return this.#state.storage.config.cookie.sameSite;
  }

  get path(): string {
    return this.#state.storage.config.cookie.path;
  }

  get domain(): string | undefined {
    return this.#state.storage.config.cookie.domain;
  }

  get partitioned(): boolean {
    return this.#state.storage.config.cookie.partitioned;
  }

  toJSON() {
    const { maxAge, expires, httpOnly, secure, sameSite, path, domain, partitioned } = this;
    return { maxAge, expires, httpOnly, secure, sameSite, path, domain, partitioned };
  }
}

/** The bookkeeping of a session object. */
export const stateOf = RedisSession.stateOf;
const unwrap = RedisSession.unwrap;

/**
 * Runs a method's `action` on the session behind `self` (the Proxy user code holds; see `tracked`) and answers as a
 * Promise, or, given a callback, through it. The Promise is never an unhandled rejection: code written for
 * express-session calls `req.session.destroy()` and moves on, neither awaiting it nor passing a callback, and a
 * failure is then logged instead of ending the process (awaiting it still throws). A callback is called outside the
 * promise chain, so a callback that throws is an uncaught exception, as with any callback API.
 */
function act(
  self: RedisSession,
  method: string,
  callback: SessionCallback | undefined,
  action: (storage: SessionStorage, session: RedisSession) => Promise<void>,
): Promise<void> | undefined {
  const session = unwrap(self);
  const { storage } = stateOf(session);
  let done: Promise<void>;
  try {
    done = action(storage, session);
  } catch (error) {
    done = Promise.reject(error);
  }
  if (typeof callback === 'function') {
    done.then(
      () => process.nextTick(callback),
      (error: Error) => process.nextTick(callback, error),
    );
    return undefined;
  }
  done.catch((error: Error) => reportFailure(storage.config.logger, method, error));
  return done;
}

function reportFailure(logger: Logger, method: string, error: Error): void {
  logger.error(`redisware redisSession: req.session.${method}() failed: ${error.message}`);
}

/**
 * The session may change from here on: the middleware's end hook goes on the response, and its headers hook too
 * when the session is new (saving it will owe a cookie) or `cookieToo` (regenerate(), destroy(), reload() and a new
 * cookie lifetime). Until then the response is left alone: a property added to an Express `res` costs it a new
 * hidden class.
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
 * response. Writes, definitions and deletions of a reserved name (see {@link reserved}) are ignored. Reading
 * anything of the session's (see `readsData`) marks the request personal (see `markPersonal`), so the response
 * cache never shares what it responds with. Everything else behaves as on the session itself.
 */
const trackChanges: ProxyHandler<RedisSession> = {
  get(target, key) {
    if (key === trackedSession) return target;
    const value: unknown = Reflect.get(target, key, target);
    if (readsData(target, key)) markPersonal(stateOf(target).req);
    if (isObject(value)) mayChange(stateOf(target), false);
    return value;
  },
  getOwnPropertyDescriptor(target, key) {
    const descriptor = Reflect.getOwnPropertyDescriptor(target, key);
    if (descriptor) markPersonal(stateOf(target).req);
    if (isObject(descriptor?.value)) mayChange(stateOf(target), false);
    return descriptor;
  },
  has(target, key) {
    markPersonal(stateOf(target).req);
    return Reflect.has(target, key);
  },
  ownKeys(target) {
    markPersonal(stateOf(target).req);
    return Reflect.ownKeys(target);
  },
  set(target, key, value) {
    if (typeof key === 'string' && reserved.has(key)) return true;
    written(target);
    return Reflect.set(target, key, value, target);
  },
  deleteProperty(target, key) {
    if (typeof key === 'string' && reserved.has(key)) return true;
    written(target);
    return Reflect.deleteProperty(target, key);
  },
  defineProperty(target, key, descriptor) {
    if (typeof key === 'string' && reserved.has(key)) return true;
    written(target);
    return Reflect.defineProperty(target, key, descriptor);
  },
};

/**
 * User code writes into the session: the request is personal, and the session may change. A new session written
 * while detached (read-only: a background refresh) is one this response would have given its client, had it been
 * a client's: it says so (see `markSessionIssued`), so that the response cache never shares what it made.
 */
function written(target: RedisSession): void {
  const s = stateOf(target);
  markPersonal(s.req);
  if (s.detached && s.isNew) markSessionIssued(s.req, target.id);
  mayChange(s, false);
}

/**
 * Whether reading `key` hands out something of this session's: a data field, its id or its cookie (the methods do
 * not; a read of a missing field does too, since its absence is this session's as well).
 */
function readsData(target: RedisSession, key: PropertyKey): boolean {
  if (typeof key !== 'string') return false;
  switch (key) {
    case 'save':
    case 'reload':
    case 'touch':
    case 'regenerate':
    case 'destroy':
    case 'then':
    case 'toJSON':
    case 'constructor':
      return Object.hasOwn(target, key);
    default:
      return true;
  }
}

/**
 * `session` as user code should hold it (see {@link trackChanges}); `hookResponse` puts the middleware's hooks
 * on the response once they are needed.
 */
export function tracked(session: RedisSession, hookResponse: (hook: 'end' | 'headers') => void): RedisSession {
  stateOf(session).hookResponse = hookResponse;
  return new Proxy(session, trackChanges);
}

/**
 * What `perSession` caching keys by (see `provideSessionIdentity`): the id of the session behind `candidate` when it
 * is stored, `''` when it is new (nobody's yet) or destroyed, `undefined` when it is not one of ours.
 */
export function sessionIdentity(candidate: unknown): string | undefined {
  if (typeof candidate !== 'object' || candidate === null) return undefined;
  const session = (candidate as Tracked)[trackedSession];
  if (!(session instanceof RedisSession)) return undefined;
  const s = stateOf(session);
  // A detached session is either new (Redis failed: `'continue'`) or loaded read-only for a background refresh of
  // its own entry, which is this session's.
  return s.isNew || s.destroyed ? '' : (s.id ?? '');
}

/** The data fields of a session (its own enumerable string keys). */
export function dataFields(session: RedisSession): string[] {
  return Object.keys(session);
}

/** A fresh, empty change set (filled in place by changesOf). */
export function noChanges(): Changes {
  return { set: [], remove: [], count: 0, unstorable: [] };
}

/** Why some fields of a session cannot be saved, naming them. */
export function unstorableMessage(changes: Changes): string {
  return `redisSession: session fields cannot be stored as JSON, so they were not saved: ${changes.unstorable.join(', ')}`;
}

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
export function changesOf(session: RedisSession): Changes | undefined {
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

/**
 * The canonical form of a user id, so that `42` and `'42'` are the same user whichever was stored and whichever is
 * asked for: a non-empty string as it is, a finite number as its decimal string; anything else is no user.
 */
export function canonicalUser(value: unknown): string | undefined {
  if (typeof value === 'string') return value === '' ? undefined : value;
  return typeof value === 'number' && Number.isFinite(value) ? String(value) : undefined;
}

/** The user a session is indexed under: its `userField`, canonical (see {@link canonicalUser}). */
export function userOf(session: RedisSession, userField: string): string | undefined {
  try {
    return canonicalUser((session as unknown as Record<string, unknown>)[userField]);
  } catch {
    return undefined; // a throwing getter: changesOf reports it
  }
}
