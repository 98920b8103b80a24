import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { SessionData } from '../index.js';
import { nameArgument } from '../keys.js';
import { sessionCookie } from './cookie.js';
import type { RedisSessionOptions } from './options.js';
import { sessionCookieVerifier } from './signature.js';
import {
  createManager,
  dataPrefix,
  hookOnce,
  mayChange,
  RedisSession,
  resolveConfig,
  type SessionCallback,
  stateOf,
  tracked,
} from './store.js';

export type { RedisSessionOptions } from './options.js';
export type { SessionCallback } from './store.js';

/**
 * The methods every `req.session` has besides its data. Each returns a Promise; given a Node-style callback instead
 * (as code written for express-session, passport included, passes one), it answers through that and returns nothing.
 */
export interface SessionMethods {
  /** The session id (read-only); 43 characters of base64url. */
  readonly id: string;
  /** Saves changes now (otherwise they are saved before the response is sent). */
  save(callback: SessionCallback): void;
  save(): Promise<void>;
  /** Replaces the data with what Redis holds. */
  reload(callback: SessionCallback): void;
  reload(): Promise<void>;
  /** Extends the idle timeout without changing anything. */
  touch(callback: SessionCallback): void;
  touch(): Promise<void>;
  /** Moves the session to a new id (deleting the old key); data is dropped unless `keepData`. Call it on login. */
  regenerate(callback: SessionCallback): void;
  regenerate(options?: { keepData?: boolean }): Promise<void>;
  /** Deletes the session and clears the cookie. Call it on logout. */
  destroy(callback: SessionCallback): void;
  destroy(): Promise<void>;
}

/** `req.session`: data as properties, typed by {@link SessionData}, plus {@link SessionMethods}. */
export type Session = SessionMethods & Partial<SessionData>;

/** One entry of `listByUser()`. */
export interface UserSessionInfo {
  id: string;
  createdAt: Date;
  lastSeenAt: Date;
}

/** The middleware returned by {@link redisSession}, with "log out everywhere" helpers. */
export interface RedisSessionMiddleware extends RequestHandler {
  /** The live sessions whose `userField` is `userId`. */
  listByUser(userId: string | number): Promise<UserSessionInfo[]>;
  /** Deletes every session of `userId`; resolves to how many were deleted. */
  destroyByUser(userId: string | number): Promise<number>;
}

declare global {
  namespace Express {
    interface Request {
      /** Set by `redisSession()`. */
      session: Session;
    }
  }
}

/**
 * Sessions stored in Redis behind a signed cookie: `app.use(redisSession({ secret }))`, then `req.session`.
 * A request that does not change its session costs at most one Redis round trip and writes no data; changes
 * are saved, per top-level field, before the response is sent.
 */
export function redisSession(options: RedisSessionOptions): RedisSessionMiddleware {
  const config = resolveConfig(options);
  const manager = createManager(config);
  const cookies = sessionCookie(config);
  const verifyCookie = sessionCookieVerifier(config.secrets);

  /**
   * The cookie this response owes, if any: `'clear'` after destroy(), `'issue'` for a new or regenerated session
   * that is (or will be) saved, or a persistent cookie to refresh. `willSave`: whether finishing now would write
   * the session, when the caller already knows it.
   */
  function cookieOwed(req: Request, session: RedisSession, willSave?: boolean): 'clear' | 'issue' | undefined {
    const s = stateOf(session);
    if (s.cookieSent) return undefined;
    if (s.destroyed) {
      return s.id !== undefined || req.headers.cookie?.includes(`${config.name}=`) ? 'clear' : undefined;
    }
    const refresh = config.cookie.maxAge !== undefined && !s.isNew && !s.detached && (config.rolling || s.cookieOwed);
    return s.cookieOwed || refresh || (s.isNew && (willSave ?? manager.willSave(session))) ? 'issue' : undefined;
  }

  function sendCookie(req: Request, res: Response, session: RedisSession, willSave?: boolean): void {
    // `res.headersSent` is read only when a cookie is owed: a property read on an Express `res` is slow (it
    // misses V8's inline caches), and most requests owe none.
    const owed = cookieOwed(req, session, willSave);
    if (owed === undefined || res.headersSent) return;
    stateOf(session).cookieSent = true;
    res.append('Set-Cookie', owed === 'clear' ? cookies.clear(req) : cookies.issue(req, session.id));
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
    const originalWriteHead = res.writeHead as (...args: unknown[]) => Response;
    res.writeHead = function writeHeadWithCookie(this: Response, ...args: unknown[]) {
      sendCookie(req, res, session);
      return originalWriteHead.apply(this, args);
    } as typeof res.writeHead;
  }

  /** Holds `res.end` until the session is saved, so no response (a redirect included) can beat the write. */
  function commitBeforeEnd(req: Request, res: Response, session: RedisSession): void {
    const originalEnd = res.end as (...args: unknown[]) => Response;
    let phase: 'open' | 'saving' | 'ended' = 'open';
    res.end = function endAfterCommit(this: Response, ...args: unknown[]) {
      if (phase === 'ended') return originalEnd.apply(this, args);
      // A second end() while the first waits for the save: the first one's response goes out, as it would have
      // without the wait (and this one must not overtake the save).
      if (phase === 'saving') return res;
      const changes = manager.pendingWrite(session, reportUnstorable);
      if (!changes) {
        // Nothing to save (the common, read-only request): end now, without a detour through a promise.
        phase = 'ended';
        sendCookie(req, res, session, false);
        return originalEnd.apply(this, args);
      }
      phase = 'saving';
      manager.write(session, changes, (error) => {
        phase = 'ended';
        if (!error) {
          sendCookie(req, res, session);
          originalEnd.apply(res, args);
          return;
        }
        config.logger.error(`redisware redisSession: saving the session failed: ${error.message}`);
        if (config.onRedisError === 'fail' && !res.headersSent) {
          respondUnavailable(res);
          originalEnd.call(res, 'Service Unavailable: the session could not be saved.');
        } else {
          originalEnd.apply(res, args);
        }
      });
      return res;
    } as typeof res.end;
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
    if (s.isNew && config.saveUninitialized && !s.detached) {
      mayChange(s, true); // saved, and given a cookie, even if nothing changes it
    } else if (!s.isNew && config.cookie.maxAge !== undefined && config.rolling) {
      hookOnce(s, 'headers'); // the persistent cookie is refreshed on every response
    }
    next();
  }

  const middleware = function redisSessionMiddleware(req: Request, res: Response, next: NextFunction): void {
    const id = verifyCookie(cookies.read(req));
    if (id === undefined) {
      attach(req, res, next, new RedisSession(manager, undefined, undefined, false));
      return;
    }
    manager.loadThen(id, config.rolling, (error, fields) => {
      try {
        if (!error) {
          attach(req, res, next, new RedisSession(manager, fields ? id : undefined, fields ?? undefined, false));
        } else if (config.onRedisError === 'continue') {
          attach(req, res, next, new RedisSession(manager, undefined, undefined, true));
        } else {
          respondUnavailable(res);
          res.end('Service Unavailable: the session store cannot be reached.');
        }
      } catch (thrown) {
        next(thrown);
      }
    });
  } as RedisSessionMiddleware;

  middleware.listByUser = async function listByUser(userId: string | number): Promise<UserSessionInfo[]> {
    nameArgument(userId, 'redisSession listByUser(): userId', true);
    const indexKey = config.userKey(String(userId));
    const { call } = config;
    const ids = await call((redis) => redis.zrange(indexKey, 0, -1));
    const wanted = JSON.stringify(String(userId));
    const numeric = JSON.stringify(userId);
    const rows = await Promise.all(
      ids.map((id) => call((redis) => redis.hmget(config.sessionKey(id), '_c', '_s', dataPrefix + config.userField))),
    );
    const live: UserSessionInfo[] = [];
    const stale: string[] = [];
    rows.forEach(([created, seen, user], i) => {
      if (created && seen && (user === wanted || user === numeric)) {
        live.push({ id: ids[i], createdAt: new Date(Number(created)), lastSeenAt: new Date(Number(seen)) });
      } else {
        stale.push(ids[i]);
      }
    });
    if (stale.length) await call((redis) => redis.zrem(indexKey, ...stale));
    return live;
  };

  middleware.destroyByUser = async function destroyByUser(userId: string | number): Promise<number> {
    nameArgument(userId, 'redisSession destroyByUser(): userId', true);
    const sessions = await middleware.listByUser(userId);
    // One DEL per key: sessions live in different Cluster slots.
    await Promise.all(sessions.map((s) => config.call((redis) => redis.del(config.sessionKey(s.id)))));
    await config.call((redis) => redis.del(config.userKey(String(userId))));
    return sessions.length;
  };

  return middleware;
}
