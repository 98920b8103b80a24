// The bookkeeping of one `req.session`, and its named transitions: the one owner of what a session is (new, stored,
// destroyed, detached), what Redis holds of it, and which cookie and response hooks it owes.
import type { Request } from 'express';
import { type Changes, clearData, userOf } from './changes.js';
import type { Lifetime } from './lifetime.js';
import type { SessionConfig } from './options.js';
import type { LoadedSession } from './stored.js';

/** A Node-style callback, for code written for express-session (passport calls `regenerate(cb)` and `save(cb)`). */
export type SessionCallback = (error?: Error) => void;

/**
 * What a session's methods ask of the storage behind it (`req.session.save()`, …), and what its id and cookie need:
 * the configuration and new ids. The session reaches its storage through its state, never by importing it (the
 * storage implements this; see `SessionStorage`).
 */
export interface SessionPersistence {
  readonly config: SessionConfig;
  /** A new session id: 32 random bytes, or what `genid(req)` returns. */
  newId(req: Request): string;
  /** Saves what changed now (`req.session.save()`). */
  commit(s: SessionState): Promise<void>;
  /** Replaces the data with what Redis holds; a session gone meanwhile starts over under a new id. */
  reload(s: SessionState): Promise<void>;
  /** Extends the idle timeout. */
  touch(s: SessionState): Promise<void>;
  /** Deletes the stored session and gives this one a new id (keeping its data with `keepData`). */
  regenerate(s: SessionState, keepData: boolean): Promise<void>;
  /** Destroys the session. */
  destroy(s: SessionState): Promise<void>;
}

/** The bookkeeping of a session object. */
export interface SessionState {
  storage: SessionPersistence;
  /** The session object itself, whose own enumerable properties are its data. */
  data: Record<string, unknown>;
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
  /** The session was read through `onRedisError: 'continue'`, or for a background refresh: never saved. */
  detached: boolean;
  /**
   * The stored session the request's cookie names, when Redis could not be asked for it: `destroy()` and
   * `regenerate()` end it (see `SessionEnder`). With `error` (`onRedisError: 'fail'`), its data is unavailable:
   * using it throws a `SessionUnavailableError`.
   */
  unread: { id: string; error?: Error; answerUnavailable?: boolean; dispatching?: boolean } | undefined;
  /** The cookie of a session ended unread (see {@link regenerated}) is cleared, unless this response issues one. */
  clearCookie: boolean;
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
}

/** The state of a new session object whose data is `data` (see `RedisSession`). */
export function newState(
  storage: SessionPersistence,
  data: Record<string, unknown>,
  req: Request,
  id: string | undefined,
  detached: boolean,
): SessionState {
  return {
    storage,
    data,
    req,
    id,
    isNew: true,
    saved: new Map(),
    indexedUser: undefined,
    lifetime: undefined,
    lifetimeChanged: false,
    destroyed: false,
    detached,
    unread: undefined,
    clearCookie: false,
    cookieOwed: false,
    cookieSent: false,
    hookResponse: undefined,
    endHooked: false,
    headersHooked: false,
  };
}

/** The session's id, made (by `genid`, or 32 random bytes) the first time it is needed. */
export function sessionIdOf(s: SessionState): string {
  s.id ??= s.storage.newId(s.req);
  return s.id;
}

/** Loaded: the session holds what Redis holds (`loaded`), and is stored. */
export function loadedFrom(s: SessionState, loaded: LoadedSession): void {
  clearData(s.data);
  s.saved.clear();
  s.isNew = false;
  s.lifetime = loaded.lifetime;
  s.lifetimeChanged = false;
  for (let i = 0; i < loaded.names.length; i++) {
    s.data[loaded.names[i]] = loaded.values[i];
    s.saved.set(loaded.names[i], loaded.json[i]);
  }
  s.indexedUser = userOf(s.data, s.storage.config.userField);
}

/**
 * Unread: Redis could not be asked for the stored session `id` (the cookie's). The session stays empty and is never
 * saved; with `error` (`onRedisError: 'fail'`), it answers to its id, and its data throws (see `SessionState.unread`).
 */
export function unreadFrom(s: SessionState, id: string, error: Error | undefined): void {
  s.unread = { id, error };
  s.detached = true;
  if (error) s.id = id;
}

/**
 * Found gone on reload (expired or destroyed elsewhere): like a request whose cookie names a gone session, it
 * starts over, empty, and under a new id when it had been stored (never the old one).
 */
export function foundGone(s: SessionState): void {
  const wasStored = !s.isNew;
  clearData(s.data);
  s.saved.clear();
  s.lifetime = undefined;
  s.lifetimeChanged = false;
  s.indexedUser = undefined;
  s.isNew = true;
  if (wasStored) s.id = undefined;
}

/** Regenerated: a new, unsaved session under `id`, with the old one's data only when `keepData`. */
export function regenerated(s: SessionState, id: string, keepData: boolean): void {
  if (!keepData) clearData(s.data);
  if (s.unread) {
    // The unread session is ended; the new one is an ordinary session under 'fail' (saved, or a 503 if Redis is
    // still down), and stays unsaved under 'continue'.
    if (s.unread.error) s.detached = false;
    s.unread = undefined;
    s.clearCookie = true;
  }
  s.id = id;
  s.isNew = true;
  s.destroyed = false;
  s.saved.clear();
  s.indexedUser = undefined;
  // The new session gets the configured cookie, as express-session gives it; with keepData it keeps its own.
  if (!keepData) s.lifetime = undefined;
  s.lifetimeChanged = s.lifetime !== undefined;
  s.cookieSent = false;
}

/** Destroyed: counts at once (its data is gone, and this response clears the cookie), whatever Redis says. */
export function destroyed(s: SessionState): void {
  s.destroyed = true;
  s.unread = undefined;
  s.indexedUser = undefined;
  clearData(s.data);
}

/** What one save wrote (see {@link saved}). */
export interface Written {
  changes: Changes;
  /** The lifetime the session had when the save was sent, and whether the save wrote it. */
  lifetime: Lifetime;
  lifetimeWritten: boolean;
  /** The user the session is now indexed under. */
  user: string | undefined;
}

/** Saved: Redis now holds what was `written`. A new session owes its cookie from here on. */
export function saved(s: SessionState, { changes, lifetime, lifetimeWritten, user }: Written): void {
  if (s.isNew) s.cookieOwed = true;
  s.isNew = false;
  s.indexedUser = user;
  // A lifetime set again while the save was on its way is still to be written.
  if (lifetimeWritten && s.lifetime === lifetime) s.lifetimeChanged = false;
  for (let i = 0; i < changes.set.length; i += 2) s.saved.set(changes.set[i], changes.set[i + 1]);
  for (const field of changes.remove) s.saved.delete(field);
}

/** Given a lifetime of its own (`req.session.cookie`): saved, and its cookie owed, on this response. */
export function lifetimeSet(s: SessionState, lifetime: number | null): void {
  mayChange(s, true);
  s.lifetime = lifetime;
  s.lifetimeChanged = true;
  s.cookieOwed = true;
  s.cookieSent = false;
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
