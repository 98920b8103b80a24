// The object behind `req.session`: data as own properties, methods and `cookie` on its prototype, the bookkeeping
// (see state.ts) in a private field. Its methods reach the storage through that state, never by importing it.
import type { Request } from 'express';
import type { Logger } from '../logger.js';
import { SessionCookie } from './session-cookie.js';
import {
  loadedFrom,
  newState,
  type SessionCallback,
  type SessionPersistence,
  type SessionState,
  sessionIdOf,
} from './state.js';
import type { LoadedSession } from './stored.js';

/** The key under which the Proxy user code holds (see `tracked`) hands out the session behind it. */
export const trackedSession = Symbol('redisware session');

/** The Proxy user code holds, seen through {@link trackedSession}. */
export type Tracked = { [trackedSession]: RedisSession };

/** The object behind `req.session`: data as own properties, methods on the prototype. */
export class RedisSession {
  // Private fields: out of sight of the data (keys, spread, JSON) and cheaper to create than a symbol property
  // defined with Object.defineProperty.
  readonly #state: SessionState;
  #cookie: SessionCookie | undefined;

  /** The bookkeeping of `session` (for the storage and the middleware). */
  static stateOf(session: RedisSession): SessionState {
    return session.#state;
  }

  /** The session itself, given it or the Proxy user code holds (the `this` of its methods; see `tracked`). */
  static unwrap(session: RedisSession): RedisSession {
    return #state in session ? session : (session as unknown as Tracked)[trackedSession];
  }

  /**
   * A session of `storage` for `req`: stored under `id` with what Redis holds (`loaded`), or new (no `loaded`; its
   * id made when first needed, unless given). A `detached` one is never saved.
   */
  constructor(
    storage: SessionPersistence,
    req: Request,
    id: string | undefined,
    loaded: LoadedSession | undefined,
    detached: boolean,
  ) {
    this.#state = newState(storage, this as unknown as Record<string, unknown>, req, id, detached);
    if (loaded) loadedFrom(this.#state, loaded);
  }

  get id(): string {
    return sessionIdOf(this.#state);
  }

  /** The session cookie's attributes; `maxAge` / `expires` give this session a lifetime of its own. */
  get cookie(): SessionCookie {
    this.#cookie ??= new SessionCookie(this.#state);
    return this.#cookie;
  }

  save(): Promise<void>;
  save(callback: SessionCallback): void;
  save(callback?: SessionCallback): Promise<void> | undefined {
    return act(this, 'save', callback, (storage, s) => storage.commit(s));
  }

  reload(): Promise<void>;
  reload(callback: SessionCallback): void;
  reload(callback?: SessionCallback): Promise<void> | undefined {
    return act(this, 'reload', callback, (storage, s) => storage.reload(s));
  }

  touch(): Promise<void>;
  touch(callback: SessionCallback): void;
  touch(callback?: SessionCallback): Promise<void> | undefined {
    return act(this, 'touch', callback, (storage, s) => storage.touch(s));
  }

  regenerate(options?: { keepData?: boolean }): Promise<void>;
  regenerate(callback: SessionCallback): void;
  regenerate(options?: { keepData?: boolean } | SessionCallback): Promise<void> | undefined {
    const callback = typeof options === 'function' ? options : undefined;
    const keepData = typeof options === 'object' && options?.keepData === true;
    return act(this, 'regenerate', callback, (storage, s) => storage.regenerate(s, keepData));
  }

  destroy(): Promise<void>;
  destroy(callback: SessionCallback): void;
  destroy(callback?: SessionCallback): Promise<void> | undefined {
    return act(this, 'destroy', callback, (storage, s) => storage.destroy(s));
  }
}

/** The bookkeeping of a session object. */
export const stateOf = RedisSession.stateOf;

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
  action: (storage: SessionPersistence, s: SessionState) => Promise<void>,
): Promise<void> | undefined {
  const s = stateOf(RedisSession.unwrap(self));
  const { storage } = s;
  let done: Promise<void>;
  try {
    done = action(storage, s);
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
