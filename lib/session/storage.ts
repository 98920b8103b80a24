// The Redis side of sessions: loading, saving, regenerating and destroying them, and the per-user index.
import type { Request } from 'express';
import { now as clock, reportingFailure, since } from '../events.js';
import {
  type Changes,
  canonicalUser,
  changesOf,
  dataFields,
  mayChange,
  noChanges,
  type RedisSession,
  stateOf,
  unstorableMessage,
  userOf,
} from './model.js';
import type { SessionConfig } from './options.js';
import {
  destroyIfUserScript,
  loadSessionScript,
  readUserIndexScript,
  saveSessionScript,
  sessionSummaryScript,
  userIndexScript,
} from './scripts.js';
import { newSessionId } from './signature.js';
import { dataPrefix, type LoadedSession, lifetimeField, readLoadReply } from './stored.js';

/** One entry of `listByUser()`. */
export interface UserSessionInfo {
  id: string;
  createdAt: Date;
  lastSeenAt: Date;
}

/** What {@link createSessionStorage} returns. */
export type SessionStorage = ReturnType<typeof createSessionStorage>;

/** How long an index entry whose session is not there yet is kept: its first save may still be on its way. */
const indexGraceMs = 60_000;

/** Ids `genid` may return: what a cookie and a Redis key carry without escaping. */
const genidPattern = /^[A-Za-z0-9_-]{8,128}$/;

/** Loads, diffs and saves the sessions of one `redisSession()` middleware, and keeps its per-user index. */
export function createSessionStorage(config: SessionConfig) {
  const { call, sessionKey, userKey, emit } = config;
  const reported = <T>(operation: string, step: () => Promise<T>) => reportingFailure(emit, 'session', operation, step);
  /** The load script's arguments, built once: it runs on every request that has a session. */
  const loadArgs = {
    rolling: [config.ttl, config.absoluteTimeout, 1],
    still: [config.ttl, config.absoluteTimeout, 0],
  } as const;

  /** The idle timeout of a session: its own cookie lifetime when it has one, else `ttl`. */
  const idleOf = (session: RedisSession) => {
    const lifetime = stateOf(session).lifetime;
    return typeof lifetime === 'number' ? lifetime : config.ttl;
  };

  async function updateUserIndex(id: string, from: string | undefined, to: string | undefined): Promise<void> {
    if (from === to) return;
    const updates: Promise<unknown>[] = [];
    if (from !== undefined) updates.push(call.run(userIndexScript, [userKey(from)], [id, config.absoluteTimeout, 0]));
    if (to !== undefined) updates.push(call.run(userIndexScript, [userKey(to)], [id, config.absoluteTimeout, 1]));
    await Promise.all(updates);
  }

  function clearData(session: RedisSession): void {
    for (const field of dataFields(session)) delete (session as unknown as Record<string, unknown>)[field];
  }

  const storage = {
    config,

    /** A new session id: 32 random bytes, or what `genid(req)` returns. */
    newId(req: Request): string {
      if (!config.genid) return newSessionId();
      const id = config.genid(req);
      if (typeof id !== 'string' || !genidPattern.test(id)) {
        throw new TypeError(
          `redisSession: the 'genid' function returned ${typeof id === 'string' ? JSON.stringify(id) : String(id)} (expected 8 to 128 characters of A-Z, a-z, 0-9, _ and -)`,
        );
      }
      return id;
    },

    /** Fills `session` with what Redis holds (see `readLoadReply`): its lifetime and data fields. */
    fill(session: RedisSession, loaded: LoadedSession): void {
      const s = stateOf(session);
      const target = session as unknown as Record<string, unknown>;
      clearData(session);
      s.saved.clear();
      s.lifetime = loaded.lifetime;
      s.lifetimeChanged = false;
      for (let i = 0; i < loaded.names.length; i++) {
        target[loaded.names[i]] = loaded.values[i];
        s.saved.set(loaded.names[i], loaded.json[i]);
      }
      s.indexedUser = userOf(session, config.userField);
    },

    /**
     * What finishing the request now would write, or `undefined` when it would write nothing. Fields JSON cannot
     * hold are left out, and reported through `unstorable`.
     */
    pendingWrite(session: RedisSession, unstorable?: (message: string) => void): Changes | undefined {
      const s = stateOf(session);
      if (s.destroyed || s.detached) return undefined;
      let changes = changesOf(session);
      if (changes?.unstorable.length) unstorable?.(unstorableMessage(changes));
      if (s.lifetimeChanged) {
        changes ??= noChanges();
        changes.count++;
      }
      if (changes && changes.count > 0) return changes;
      if (s.isNew && config.saveUninitialized) return changes ?? noChanges();
      return undefined;
    },

    /** Whether finishing the request now would write the session (so a cookie is owed for a new one). */
    willSave(session: RedisSession): boolean {
      return storage.pendingWrite(session) !== undefined;
    },

    async commit(session: RedisSession): Promise<void> {
      let problem: string | undefined;
      const changes = storage.pendingWrite(session, (message) => {
        problem = message;
      });
      if (problem) throw new TypeError(problem);
      if (!changes) return;
      await reported(
        'save',
        () =>
          new Promise<void>((resolve, reject) =>
            storage.write(session, changes, (error) => (error ? reject(error) : resolve())),
          ),
      );
    },

    /**
     * Writes `changes` (from {@link pendingWrite}) in one script, plus the user index if the user changed;
     * `done` is called once both are finished (through a callback: this runs on every changing request).
     */
    write(session: RedisSession, changes: Changes, done: (error: Error | undefined) => void): void {
      const s = stateOf(session);
      const id = session.id;
      const lifetime = s.lifetime;
      const lifetimeChanged = s.lifetimeChanged;
      const pairs = changes.set.length / 2 + (lifetimeChanged ? 1 : 0);
      const args: (string | number)[] = [idleOf(session), config.absoluteTimeout, s.isNew ? 1 : 0, pairs];
      for (let i = 0; i < changes.set.length; i += 2) args.push(dataPrefix + changes.set[i], changes.set[i + 1]);
      if (lifetimeChanged) args.push(lifetimeField, typeof lifetime === 'number' ? lifetime : 0);
      for (const field of changes.remove) args.push(dataPrefix + field);
      const user = userOf(session, config.userField);
      // Settles with the index update's error, if any (handled at once, so a failure is never unhandled).
      const indexUpdated =
        s.indexedUser === user
          ? undefined
          : updateUserIndex(id, s.indexedUser, user).then(
              () => undefined,
              (error: Error) => error,
            );
      const started = emit ? clock() : 0;
      call.script(saveSessionScript, [sessionKey(id)], args, (saveError, saved) => {
        const finish = (indexError: Error | undefined) => {
          const error =
            saveError ??
            indexError ??
            (saved === 2
              ? new Error("a new session's id is already in use: 'genid' must return a unique id")
              : undefined);
          if (error) return done(error);
          s.indexedUser = user;
          // saved !== 1: destroyed or expired while this request ran; its changes must not bring it back.
          if (saved === 1) {
            if (s.isNew) {
              s.cookieOwed = true;
              emit?.({ type: 'session.created', userId: user, durationMs: since(started) });
            }
            s.isNew = false;
            if (lifetimeChanged && s.lifetime === lifetime) s.lifetimeChanged = false;
            for (let i = 0; i < changes.set.length; i += 2) s.saved.set(changes.set[i], changes.set[i + 1]);
            for (const field of changes.remove) s.saved.delete(field);
          }
          done(undefined);
        };
        if (indexUpdated) indexUpdated.then(finish);
        else finish(undefined);
      });
    },

    /**
     * Reads a session (and refreshes its idle timeout when `rolling`): its lifetime and data fields, or `undefined`
     * when it is gone or is not a session of ours (see `readLoadReply`).
     */
    loadThen(id: string, rolling: boolean, done: (error: Error | undefined, loaded?: LoadedSession) => void): void {
      call.script(loadSessionScript, [sessionKey(id)], rolling ? loadArgs.rolling : loadArgs.still, (error, reply) =>
        error ? done(error) : done(undefined, readLoadReply(reply)),
      );
    },

    load(id: string, rolling: boolean): Promise<LoadedSession | undefined> {
      return new Promise((resolve, reject) =>
        storage.loadThen(id, rolling, (error, loaded) => (error ? reject(error) : resolve(loaded))),
      );
    },

    async reload(session: RedisSession): Promise<void> {
      const s = stateOf(session);
      mayChange(s, true);
      if (s.detached || s.destroyed) return;
      const wasStored = !s.isNew;
      const started = emit ? clock() : 0;
      const userId = s.indexedUser;
      const loaded = wasStored ? await reported('reload', () => storage.load(session.id, false)) : undefined;
      if (loaded) {
        storage.fill(session, loaded);
      } else {
        storage.fill(session, { lifetime: undefined, names: [], json: [], values: [] });
        s.isNew = true;
        // Gone (expired or destroyed elsewhere): like a request whose cookie names a gone session, it starts over
        // under a new id, never the old one.
        if (wasStored) {
          s.id = undefined;
          emit?.({ type: 'session.expired', userId, durationMs: since(started) });
        }
      }
    },

    async touch(session: RedisSession): Promise<void> {
      const s = stateOf(session);
      if (s.isNew || s.detached || s.destroyed) return;
      await reported('touch', () => storage.load(session.id, true));
    },

    async regenerate(session: RedisSession, keepData: boolean): Promise<void> {
      const s = stateOf(session);
      mayChange(s, true);
      const started = emit ? clock() : 0;
      const userId = s.indexedUser;
      // A detached session (Redis failed, or read-only for a background refresh) changes nothing in Redis.
      if (!s.isNew && s.id !== undefined && !s.detached) {
        const oldId = s.id;
        await reported('regenerate', () =>
          Promise.all([call((c) => c.del(sessionKey(oldId))), updateUserIndex(oldId, s.indexedUser, undefined)]),
        );
      }
      emit?.({ type: 'session.regenerated', userId, durationMs: since(started) });
      if (!keepData) clearData(session);
      s.id = storage.newId(s.req);
      s.isNew = true;
      s.destroyed = false;
      s.saved.clear();
      s.indexedUser = undefined;
      // The new session gets the configured cookie, as express-session gives it; with keepData it keeps its own.
      if (!keepData) s.lifetime = undefined;
      s.lifetimeChanged = s.lifetime !== undefined;
      s.cookieSent = false;
    },

    /**
     * Destroys the session. It counts as destroyed at once — its data is gone, and this response clears the cookie
     * even if Redis cannot be reached — and its key is then deleted.
     */
    async destroy(session: RedisSession): Promise<void> {
      const s = stateOf(session);
      mayChange(s, true);
      // A detached session (Redis failed, or read-only for a background refresh) changes nothing in Redis.
      const stored = !s.isNew && s.id !== undefined && !s.destroyed && !s.detached ? s.id : undefined;
      const indexed = s.indexedUser;
      s.destroyed = true;
      s.indexedUser = undefined;
      clearData(session);
      if (stored === undefined) return;
      const started = emit ? clock() : 0;
      await reported('destroy', () =>
        Promise.all([call((c) => c.del(sessionKey(stored))), updateUserIndex(stored, indexed, undefined)]),
      );
      emit?.({ type: 'session.destroyed', reason: 'destroy', userId: indexed, durationMs: since(started) });
    },

    /** The live sessions of `userId` (canonical: `42` and `'42'` are one user). Gone ones leave the index. */
    async listByUser(userId: string): Promise<UserSessionInfo[]> {
      const indexKey = userKey(userId);
      const scored = (await call.run(readUserIndexScript, [indexKey], [])) as string[];
      const ids: string[] = [];
      const indexedAt: number[] = [];
      for (let i = 0; i < scored.length; i += 2) {
        ids.push(scored[i]);
        indexedAt.push(Number(scored[i + 1]) - config.absoluteTimeout); // scores are "alive until" times
      }
      const rows = await Promise.all(
        ids.map(
          (id) =>
            call.run(sessionSummaryScript, [sessionKey(id)], [dataPrefix + config.userField]) as Promise<
              (string | null)[]
            >,
        ),
      );
      const live: UserSessionInfo[] = [];
      const gone: string[] = [];
      const now = Date.now();
      rows.forEach(([created, seen, user], i) => {
        if (!created || !seen) {
          // Gone — unless it was indexed a moment ago: a login indexes the session alongside its first save, which
          // may not have landed yet.
          if (now - indexedAt[i] > indexGraceMs) gone.push(ids[i]);
          return;
        }
        // A session that now belongs to someone else stays indexed until its own save moves it.
        if (canonicalUser(parseJson(user)) !== userId) return;
        live.push({ id: ids[i], createdAt: new Date(Number(created)), lastSeenAt: new Date(Number(seen)) });
      });
      // Only sessions that are gone leave the index.
      if (gone.length) await call((redis) => redis.zrem(indexKey, ...gone));
      return live;
    },

    /**
     * Deletes every session of `userId` that is still that user's, and exactly those from the index: a session
     * logged in meanwhile keeps its entry. Resolves to how many were deleted.
     */
    async destroyByUser(userId: string): Promise<number> {
      const started = emit ? clock() : 0;
      const sessions = await storage.listByUser(userId);
      // The stored forms of this user: the string, and the number whose decimal string it is.
      const userJson = [JSON.stringify(userId)];
      if (String(Number(userId)) === userId) userJson.push(userId);
      // One script per session (sessions live in different Cluster slots), then one ZREM of those it deleted.
      const deleted = await Promise.all(
        sessions.map(({ id }) =>
          call.run(destroyIfUserScript, [sessionKey(id)], [dataPrefix + config.userField, ...userJson]),
        ),
      );
      const destroyed = sessions.filter((_, i) => deleted[i] === 1).map(({ id }) => id);
      if (destroyed.length) await call((redis) => redis.zrem(userKey(userId), ...destroyed));
      if (emit) {
        const durationMs = since(started);
        for (const _ of destroyed) emit({ type: 'session.destroyed', reason: 'destroyByUser', userId, durationMs });
      }
      return destroyed.length;
    },
  };
  return storage;
}

function parseJson(text: string | null): unknown {
  if (text === null) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
