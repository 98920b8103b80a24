import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { defaultRedis } from '../connection.js';
import type { SessionData } from '../index.js';
import { keyspace } from '../keys.js';
import { consoleLogger, OutageReporter } from '../logger.js';
import { parseOptions } from '../options.js';
import { boundedCall, boundedCaller, type RedisClient, runScript } from '../redis-client.js';
import { sessionCookie } from './cookie.js';
import { type RedisSessionOptions, sessionSchema } from './options.js';
import { loadSessionScript, saveSessionScript, userIndexScript } from './scripts.js';
import { newSessionId, verifySessionCookie } from './signature.js';

export type { RedisSessionOptions } from './options.js';

/** The methods every `req.session` has besides its data. All writes are Promises. */
export interface SessionMethods {
  /** The session id (read-only); 43 characters of base64url. */
  readonly id: string;
  /** Saves changes now (otherwise they are saved before the response is sent). */
  save(): Promise<void>;
  /** Replaces the data with what Redis holds. */
  reload(): Promise<void>;
  /** Extends the idle timeout without changing anything. */
  touch(): Promise<void>;
  /** Moves the session to a new id (deleting the old key); data is dropped unless `keepData`. Call it on login. */
  regenerate(options?: { keepData?: boolean }): Promise<void>;
  /** Deletes the session and clears the cookie. Call it on logout. */
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

const dataPrefix = 'd:';
const state = Symbol('redisware.session');

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
}

interface Changes {
  set: string[];
  remove: string[];
  count: number;
}

type SessionManager = ReturnType<typeof createManager>;

class RedisSession {
  declare [state]: SessionState;

  constructor(manager: SessionManager, id: string | undefined, fields: string[] | undefined, detached: boolean) {
    Object.defineProperty(this, state, {
      value: {
        manager,
        id,
        isNew: fields === undefined,
        saved: new Map(),
        indexedUser: undefined,
        destroyed: false,
        detached,
        cookieOwed: false,
        cookieSent: false,
      } satisfies SessionState,
    });
    if (fields) manager.fill(this, fields);
  }

  get id(): string {
    const s = this[state];
    s.id ??= newSessionId();
    return s.id;
  }

  save(): Promise<void> {
    return this[state].manager.commit(this);
  }

  reload(): Promise<void> {
    return this[state].manager.reload(this);
  }

  touch(): Promise<void> {
    return this[state].manager.touch(this);
  }

  regenerate(options: { keepData?: boolean } = {}): Promise<void> {
    return this[state].manager.regenerate(this, options.keepData === true);
  }

  destroy(): Promise<void> {
    return this[state].manager.destroy(this);
  }
}

function dataFields(session: RedisSession): string[] {
  return Object.keys(session);
}

function createManager(config: ReturnType<typeof resolveConfig>) {
  const { redis, sessionKey, userKey, outage } = config;
  const ttlArgs = [config.ttl, config.absoluteTimeout] as const;

  const call = boundedCaller(redis, config.timeout, outage);

  function changesOf(session: RedisSession): Changes {
    const { saved } = session[state];
    const set: string[] = [];
    const remove: string[] = [];
    const present = new Set<string>();
    for (const field of dataFields(session)) {
      const value = (session as unknown as Record<string, unknown>)[field];
      if (value === undefined || typeof value === 'function') continue;
      present.add(field);
      const json = JSON.stringify(value);
      if (saved.get(field) !== json) set.push(field, json);
    }
    for (const field of saved.keys()) if (!present.has(field)) remove.push(field);
    return { set, remove, count: set.length / 2 + remove.length };
  }

  function userOf(session: RedisSession): string | undefined {
    const value = (session as unknown as Record<string, unknown>)[config.userField];
    return value === undefined || value === null ? undefined : String(value);
  }

  async function updateUserIndex(id: string, from: string | undefined, to: string | undefined): Promise<void> {
    if (from === to) return;
    const updates: Promise<unknown>[] = [];
    if (from !== undefined) {
      updates.push(call((c) => userIndexScript.run(c, [userKey(from)], [id, config.absoluteTimeout, 0])));
    }
    if (to !== undefined) {
      updates.push(call((c) => userIndexScript.run(c, [userKey(to)], [id, config.absoluteTimeout, 1])));
    }
    await Promise.all(updates);
  }

  const manager = {
    fill(session: RedisSession, fields: string[]): void {
      const s = session[state];
      const target = session as unknown as Record<string, unknown>;
      for (const field of dataFields(session)) delete target[field];
      s.saved.clear();
      for (let i = 0; i < fields.length; i += 2) {
        const name = fields[i];
        if (!name.startsWith(dataPrefix)) continue;
        const field = name.slice(dataPrefix.length);
        try {
          target[field] = JSON.parse(fields[i + 1]);
          s.saved.set(field, fields[i + 1]);
        } catch {
          // A field we cannot read is dropped rather than failing the request.
        }
      }
      s.indexedUser = userOf(session);
    },

    /** Whether finishing the request now would write the session (so a cookie is owed for a new one). */
    willSave(session: RedisSession): boolean {
      const s = session[state];
      if (s.destroyed || s.detached) return false;
      if (s.isNew) return config.saveUninitialized || changesOf(session).count > 0;
      return changesOf(session).count > 0;
    },

    async commit(session: RedisSession): Promise<void> {
      const s = session[state];
      if (s.destroyed || s.detached) return;
      const changes = changesOf(session);
      if (changes.count === 0 && !(s.isNew && config.saveUninitialized)) return;
      const id = session.id;
      const args: (string | number)[] = [...ttlArgs, s.isNew ? 1 : 0, changes.set.length / 2];
      for (let i = 0; i < changes.set.length; i += 2) args.push(dataPrefix + changes.set[i], changes.set[i + 1]);
      for (const field of changes.remove) args.push(dataPrefix + field);
      const user = userOf(session);
      const [saved] = await Promise.all([
        call((c) => saveSessionScript.run(c, [sessionKey(id)], args)),
        updateUserIndex(id, s.indexedUser, user),
      ]);
      s.indexedUser = user;
      if (saved !== 1) {
        // Destroyed or expired while this request ran: its changes must not bring it back.
        return;
      }
      if (s.isNew) s.cookieOwed = true;
      s.isNew = false;
      for (let i = 0; i < changes.set.length; i += 2) s.saved.set(changes.set[i], changes.set[i + 1]);
      for (const field of changes.remove) s.saved.delete(field);
    },

    async load(id: string, rolling: boolean): Promise<string[] | null> {
      return (await call((c) => runScript(c, loadSessionScript, [sessionKey(id)], [...ttlArgs, rolling ? 1 : 0]))) as
        | string[]
        | null;
    },

    async reload(session: RedisSession): Promise<void> {
      const s = session[state];
      if (s.detached || s.destroyed) return;
      const fields = s.isNew ? null : await manager.load(session.id, false);
      if (fields) {
        manager.fill(session, fields);
      } else {
        manager.fill(session, []);
        s.isNew = true;
      }
    },

    async touch(session: RedisSession): Promise<void> {
      const s = session[state];
      if (s.isNew || s.detached || s.destroyed) return;
      await manager.load(session.id, true);
    },

    async regenerate(session: RedisSession, keepData: boolean): Promise<void> {
      const s = session[state];
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
      const s = session[state];
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

function resolveConfig(options: RedisSessionOptions) {
  const config = parseOptions('redisSession', sessionSchema, options);
  const logger = config.logger ?? consoleLogger;
  let client: RedisClient | undefined = config.redis;
  const sessionKeyOf = keyspace(config.prefix);
  return {
    ...config,
    secrets: typeof config.secret === 'string' ? [config.secret] : config.secret,
    logger,
    outage: new OutageReporter(logger, 'redisSession could not reach Redis'),
    redis: () => {
      client ??= defaultRedis();
      return client;
    },
    sessionKey: (id: string) => sessionKeyOf(id),
    userKey: (userId: string) => sessionKeyOf('user', userId),
  };
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

  function sendCookie(req: Request, res: Response, session: RedisSession): void {
    const s = session[state];
    if (res.headersSent || s.cookieSent) return;
    if (s.destroyed) {
      if (s.id !== undefined || req.headers.cookie?.includes(`${config.name}=`)) {
        s.cookieSent = true;
        res.append('Set-Cookie', cookies.clear(req));
      }
      return;
    }
    const refresh = config.cookie.maxAge !== undefined && !s.isNew && !s.detached && (config.rolling || s.cookieOwed);
    if (s.cookieOwed || refresh || (s.isNew && manager.willSave(session))) {
      s.cookieSent = true;
      res.append('Set-Cookie', cookies.issue(req, session.id));
    }
  }

  function respondUnavailable(res: Response): void {
    res.statusCode = 503;
    res.setHeader('Retry-After', '1');
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.removeHeader('Content-Length');
  }

  /** Holds `res.end` until the session is saved, so no response (a redirect included) can beat the write. */
  function commitBeforeEnd(req: Request, res: Response, session: RedisSession): void {
    const originalEnd = res.end as (...args: unknown[]) => Response;
    const originalWriteHead = res.writeHead as (...args: unknown[]) => Response;
    res.writeHead = function writeHeadWithCookie(this: Response, ...args: unknown[]) {
      sendCookie(req, res, session);
      return originalWriteHead.apply(this, args);
    } as typeof res.writeHead;
    let ending = false;
    res.end = function endAfterCommit(this: Response, ...args: unknown[]) {
      if (ending) return originalEnd.apply(this, args);
      ending = true;
      manager.commit(session).then(
        () => {
          sendCookie(req, res, session);
          originalEnd.apply(res, args);
        },
        (error: unknown) => {
          config.logger.error(`redisware redisSession: saving the session failed: ${(error as Error).message}`);
          if (config.onRedisError === 'fail' && !res.headersSent) {
            respondUnavailable(res);
            originalEnd.call(res, 'Service Unavailable: the session could not be saved.');
          } else {
            originalEnd.apply(res, args);
          }
        },
      );
      return res;
    } as typeof res.end;
  }

  const middleware = async function redisSessionMiddleware(req: Request, res: Response, next: NextFunction) {
    let session: RedisSession;
    const id = verifySessionCookie(cookies.read(req), config.secrets);
    if (id === undefined) {
      session = new RedisSession(manager, undefined, undefined, false);
    } else {
      try {
        const fields = await manager.load(id, config.rolling);
        session = new RedisSession(manager, fields ? id : undefined, fields ?? undefined, false);
      } catch {
        if (config.onRedisError === 'fail') {
          respondUnavailable(res);
          res.end('Service Unavailable: the session store cannot be reached.');
          return;
        }
        session = new RedisSession(manager, undefined, undefined, true);
      }
    }
    req.session = session as unknown as Session;
    commitBeforeEnd(req, res, session);
    next();
  } as RedisSessionMiddleware;

  middleware.listByUser = async function listByUser(userId: string | number): Promise<UserSessionInfo[]> {
    const indexKey = config.userKey(String(userId));
    const client = config.redis();
    const ids = await boundedCall(client, config.timeout, () => client.zrange(indexKey, 0, -1));
    const wanted = JSON.stringify(String(userId));
    const numeric = JSON.stringify(userId);
    const rows = await Promise.all(
      ids.map((id) =>
        boundedCall(client, config.timeout, () =>
          client.hmget(config.sessionKey(id), '_c', '_s', dataPrefix + config.userField),
        ),
      ),
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
    if (stale.length) await boundedCall(client, config.timeout, () => client.zrem(indexKey, ...stale));
    return live;
  };

  middleware.destroyByUser = async function destroyByUser(userId: string | number): Promise<number> {
    const sessions = await middleware.listByUser(userId);
    const client = config.redis();
    // One DEL per key: sessions live in different Cluster slots.
    await Promise.all(
      sessions.map((s) => boundedCall(client, config.timeout, () => client.del(config.sessionKey(s.id)))),
    );
    await boundedCall(client, config.timeout, () => client.del(config.userKey(String(userId))));
    return sessions.length;
  };

  return middleware;
}
