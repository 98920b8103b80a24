import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { now as clock, reportingFailure, reportRedisError, since } from '../events.js';
import { backgroundNeedsSession, isBackground, markSessionIssued, provideSessionIdentity } from '../http/marks.js';
import { beforeHeaders, holdEnd } from '../http/response.js';
import { nameArgument } from '../keys.js';
import { isOutage } from '../redis/failures.js';
import type { Changes } from './changes.js';
import { sessionCookie } from './cookie.js';
import type { SessionData } from './data.js';
import { RedisSession, stateOf } from './model.js';
import { type RedisSessionOptions, resolveConfig } from './options.js';
import type { SessionCookie } from './session-cookie.js';
import { sessionCookieVerifier } from './signature.js';
import { hookOnce, mayChange, type SessionState, unreadFrom } from './state.js';
import { createSessionStorage } from './storage.js';
import type { LoadedSession } from './stored.js';
import { sessionIdentity, tracked } from './tracking.js';
import type { UserSessionInfo } from './user-index.js';

export type { RedisSessionOptions } from './options.js';
export type { SessionCookie } from './session-cookie.js';
export type { SessionCallback } from './state.js';
export { SessionUnavailableError } from './unavailable.js';
export type { UserSessionInfo } from './user-index.js';

/**
 * The methods every `req.session` has besides its data. Each returns a Promise; given a Node-style callback instead
 * (as code written for express-session, passport included, passes one), it answers through that and returns nothing.
 * A Promise nobody awaits never becomes an unhandled rejection: a failure is logged.
 */
export interface SessionMethods {
  /** The session id (read-only: assigning it changes nothing). */
  readonly id: string;
  /** The session cookie: `maxAge` / `expires` give this session a lifetime of its own ("remember me"). */
  readonly cookie: SessionCookie;
  /** Saves changes now (otherwise they are saved before the response is sent). */
  save(callback: (error?: Error) => void): void;
  save(): Promise<void>;
  /** Replaces the data with what Redis holds. */
  reload(callback: (error?: Error) => void): void;
  reload(): Promise<void>;
  /** Extends the idle timeout without changing anything. */
  touch(callback: (error?: Error) => void): void;
  touch(): Promise<void>;
  /** Moves the session to a new id (deleting the old key); data is dropped unless `keepData`. Call it on login. */
  regenerate(callback: (error?: Error) => void): void;
  regenerate(options?: { keepData?: boolean }): Promise<void>;
  /**
   * Deletes the session and clears the cookie (on this response, even when Redis is down: the delete is then held
   * until Redis answers again, and this process refuses the id meanwhile). Needs none of the session's data, so it
   * works on a session Redis could not be asked for. Call it on logout.
   */
  destroy(callback: (error?: Error) => void): void;
  destroy(): Promise<void>;
}

/** `req.session`: data as properties, typed by {@link SessionData}, plus {@link SessionMethods}. */
export type Session = SessionMethods & Partial<SessionData>;

/** The middleware returned by {@link redisSession}, with "log out everywhere" helpers. */
export interface RedisSessionMiddleware extends RequestHandler {
  /** The live sessions whose `userField` is `userId` (`42` and `'42'` are the same user). */
  listByUser(userId: string | number): Promise<UserSessionInfo[]>;
  /** Deletes every session of `userId`; resolves to how many were deleted. */
  destroyByUser(userId: string | number): Promise<number>;
}

declare global {
  namespace Express {
    interface Request {
      /** Set by `redisSession()`. */
      session: Session;
      /** The session id, as express-session has it (set by `redisSession()`). */
      sessionID: string;
    }
  }
}

// The response cache's per-session entries (`perSession`) are keyed by the stored session a request has.
provideSessionIdentity((req) => sessionIdentity((req as Request).session));

/** The request prototypes that already have the `sessionID` accessor. */
const withSessionId = new WeakSet<object>();

/**
 * `req.sessionID`, defined once on the request prototype rather than on every request (each property added to an
 * Express `req` costs it a new hidden class). An assignment makes it an ordinary property of that request.
 */
function defineSessionId(req: Request): void {
  const prototype = Object.getPrototypeOf(req) as object | null;
  if (prototype === null || withSessionId.has(prototype)) return;
  withSessionId.add(prototype);
  if (Object.hasOwn(prototype, 'sessionID')) return;
  Object.defineProperty(prototype, 'sessionID', {
    configurable: true,
    get(this: Request) {
      return (this.session as Session | undefined)?.id;
    },
    set(this: Request, value: unknown) {
      Object.defineProperty(this, 'sessionID', { value, writable: true, configurable: true, enumerable: true });
    },
  });
}

/**
 * Sessions stored in Redis behind a signed cookie: `app.use(redisSession({ secret }))`, then `req.session`.
 * A request that does not change its session costs at most one Redis round trip and writes no data; changes
 * are saved, per top-level field, before the response is sent.
 */
export function redisSession(options: RedisSessionOptions): RedisSessionMiddleware {
  const config = resolveConfig(options);
  const storage = createSessionStorage(config);
  const cookies = sessionCookie(config);
  const verifyCookie = sessionCookieVerifier(config.secrets);
  const lifetimeOf = (s: SessionState) => (s.lifetime !== undefined ? s.lifetime : config.cookie.maxAge);

  /**
   * The cookie this response owes, if any: `'clear'` after destroy(), `'issue'` for a new or regenerated session
   * that is (or will be) saved, for a new lifetime, or for a persistent cookie to refresh. `willSave`: whether
   * finishing now would write the session, when the caller already knows it.
   */
  function cookieOwed(req: Request, session: RedisSession, willSave?: boolean): 'clear' | 'issue' | undefined {
    const s = stateOf(session);
    if (s.cookieSent) return undefined;
    if (s.destroyed) {
      return s.id !== undefined || cookies.read(req) !== undefined ? 'clear' : undefined;
    }
    // A session ended unread (regenerate()) leaves a cookie naming it: cleared unless a new one replaces it.
    const clear = s.clearCookie && cookies.read(req) !== undefined ? 'clear' : undefined;
    if (s.detached) return clear;
    const persistent = typeof lifetimeOf(s) === 'number';
    const refresh = persistent && !s.isNew && (config.rolling || s.cookieOwed);
    return s.cookieOwed || refresh || (s.isNew && (willSave ?? storage.willSave(s))) ? 'issue' : clear;
  }

  function sendCookie(req: Request, res: Response, session: RedisSession, willSave?: boolean): void {
    // `res.headersSent` is read only when a cookie is owed: a property read on an Express `res` is slow (it
    // misses V8's inline caches), and most requests owe none.
    const owed = cookieOwed(req, session, willSave);
    if (owed === undefined || res.headersSent) return;
    const s = stateOf(session);
    s.cookieSent = true;
    markSessionIssued(req, owed === 'clear' ? '' : session.id);
    // The header goes back only to a client that sent it (an API client; `''` asks for a first id): never to a
    // browser, whose page scripts could read it, when its HttpOnly cookie cannot be.
    const headerClient = config.header !== undefined && req.headers[config.header] !== undefined;
    if (owed === 'clear') {
      res.append('Set-Cookie', cookies.clear(req));
      if (headerClient) res.setHeader(config.header as string, '');
      return;
    }
    const signed = cookies.value(session.id);
    res.append('Set-Cookie', cookies.issue(req, signed, s.lifetime));
    if (headerClient) res.setHeader(config.header as string, signed);
  }

  /** A session field JSON cannot hold is a bug in the app: logged, and the rest of the session is still saved. */
  const reportUnstorable = (message: string) => config.logger.error(message);

  function respondUnavailable(res: Response): void {
    res.statusCode = 503;
    res.setHeader('Retry-After', '1');
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.removeHeader('Content-Length');
  }

  /** Adds the session's Set-Cookie, if one is owed, to headers sent before the end (`res.write`, `res.writeHead`). */
  function cookieBeforeHeaders(req: Request, res: Response, session: RedisSession): void {
    beforeHeaders(res, () => sendCookie(req, res, session));
  }

  /** Holds `res.end` until the session is saved, so no response (a redirect included) can beat the write. */
  function commitBeforeEnd(req: Request, res: Response, session: RedisSession): void {
    holdEnd(res, (proceed) => {
      const s = stateOf(session);
      if (s.unread?.answerUnavailable && !s.destroyed) {
        // The route used a session that could not be read, where a throw could not stop it (see `dataUsed`): it is
        // answered 503, or, when its head is already out, its connection is closed rather than the response
        // finished as if it were complete.
        if (res.headersSent) {
          res.destroy();
          return;
        }
        respondUnavailable(res);
        return proceed('Service Unavailable: the session store cannot be reached.');
      }
      let changes: Changes | undefined;
      try {
        changes = storage.pendingWrite(s, reportUnstorable);
      } catch (error) {
        // A bug of the app's (a throwing getter, say) must not keep the response from ending.
        config.logger.error(`redisware redisSession: the session was not saved: ${(error as Error).message}`);
        return proceed();
      }
      if (!changes) {
        // Nothing to save (the common, read-only request): end now, without a detour through a promise.
        sendCookie(req, res, session, false);
        return proceed();
      }
      const started = config.emit ? clock() : 0;
      storage.write(s, changes, (error) => {
        if (!error) {
          sendCookie(req, res, session);
          return proceed();
        }
        // An outage is logged once by the middleware's caller; anything else (a refusal) each time.
        if (!isOutage(error))
          config.logger.error(`redisware redisSession: saving the session failed: ${error.message}`);
        const deny = config.onRedisError === 'fail' && !res.headersSent;
        reportRedisError(config.emit, 'session', deny ? 'denied' : 'bypassed', 'save', error, started);
        if (deny) {
          respondUnavailable(res);
          // No cookie for a session that was not stored (a clear still goes out).
          if (cookieOwed(req, session) === 'issue') stateOf(session).cookieSent = true;
          proceed('Service Unavailable: the session could not be saved.');
        } else {
          proceed();
        }
      });
    });
  }

  /**
   * Gives the request its session. The response is hooked only once the session may change (see `tracked`), or
   * at once when it owes a cookie or a save regardless: adding a property to an Express `res` costs microseconds
   * (each addition creates a new hidden class), and requests that only read the session are the common case.
   */
  function attach(req: Request, res: Response, next: NextFunction, session: RedisSession): void {
    const s = stateOf(session);
    req.session = tracked(session, (hook) =>
      hook === 'end' ? commitBeforeEnd(req, res, session) : cookieBeforeHeaders(req, res, session),
    ) as unknown as Session;
    defineSessionId(req);
    if (s.isNew && config.saveUninitialized && !s.detached) {
      mayChange(s, true); // saved, and given a cookie, even if nothing changes it
    } else if (!s.isNew && config.rolling && typeof lifetimeOf(s) === 'number') {
      hookOnce(s, 'headers'); // the persistent cookie is refreshed on every response
    }
    const unread = s.unread;
    if (!unread?.error) {
      next();
      return;
    }
    // The response's end is held at once: a use of the data in `res.end(…)`'s own arguments comes after `res.end` was
    // looked up. What runs synchronously from here is inside the router, which a throw reaches (see `dataUsed`).
    hookOnce(s, 'end');
    unread.dispatching = true;
    try {
      next();
    } finally {
      unread.dispatching = false;
    }
  }

  const middleware = function redisSessionMiddleware(req: Request, res: Response, next: NextFunction): void {
    const verified = verifyCookie(cookies.read(req));
    // A session this process ended while Redis was unreachable is no session until its delete is applied.
    const id = verified !== undefined && storage.refuses(verified) ? undefined : verified;
    if (isBackground(req)) {
      // The response cache refreshing an entry in the background: no client waits, so the session is never extended,
      // saved or given a cookie. A public entry's refresh gets an empty one (a response that reads it is personal,
      // and not stored); the refresh of one session's entry (`perSession`) gets that session, read-only.
      if (id === undefined || !backgroundNeedsSession(req)) {
        attach(req, res, next, new RedisSession(storage, req, undefined, undefined, true));
        return;
      }
      storage.loadThen(id, false, (error, loaded) => {
        const found = error ? undefined : loaded;
        try {
          attach(req, res, next, new RedisSession(storage, req, found ? id : undefined, found, true));
        } catch (thrown) {
          next(thrown);
        }
      });
      return;
    }
    if (id === undefined) {
      // With genid the id is made now, where an id a cookie cannot carry is the app's error (next(err)), as
      // express-session does; the default id is only made once it is needed.
      let newId: string | undefined;
      try {
        if (config.genid) newId = storage.newId(req);
      } catch (error) {
        next(error);
        return;
      }
      attach(req, res, next, new RedisSession(storage, req, newId, undefined, false));
      return;
    }
    const emit = config.emit;
    const started = emit ? clock() : 0;
    const onLoaded = (error: Error | undefined, loaded?: LoadedSession) => {
      try {
        if (error) {
          const action = config.onRedisError === 'continue' ? 'bypassed' : 'denied';
          reportRedisError(emit, 'session', action, 'load', error, started);
        }
        if (!error) {
          // Missing, expired, or not a session of ours (see `readLoadReply`): a fresh session, under a new id.
          if (!loaded) emit?.({ type: 'session.expired', durationMs: since(started) });
          const freshId = loaded || !config.genid ? undefined : storage.newId(req);
          attach(req, res, next, new RedisSession(storage, req, loaded ? id : freshId, loaded, false));
        } else {
          // The route runs all the same: it can log out (destroy() needs no data). Under 'fail' its data throws a
          // SessionUnavailableError (a 503); under 'continue' it is an empty, unsaved session.
          const unread = new RedisSession(storage, req, undefined, undefined, true);
          unreadFrom(stateOf(unread), id, config.onRedisError === 'fail' ? error : undefined);
          attach(req, res, next, unread);
        }
      } catch (thrown) {
        next(thrown);
      }
    };
    // A Redis known to be down is not asked: the route gets its session unread at once.
    const down = config.call.unavailable();
    if (down) onLoaded(down);
    else storage.loadThen(id, config.rolling, onLoaded);
  } as RedisSessionMiddleware;

  middleware.listByUser = async function listByUser(userId: string | number): Promise<UserSessionInfo[]> {
    const user = nameArgument(userId, 'redisSession listByUser(): userId', true);
    return reportingFailure(config.emit, 'session', 'listByUser', () => storage.listByUser(user));
  };

  middleware.destroyByUser = async function destroyByUser(userId: string | number): Promise<number> {
    const user = nameArgument(userId, 'redisSession destroyByUser(): userId', true);
    return reportingFailure(config.emit, 'session', 'destroyByUser', () => storage.destroyByUser(user));
  };

  return middleware;
}
