// The Redis side of sessions: loading, saving, regenerating and destroying them (the per-user index is
// user-index.ts). It works on a session's state (state.ts), never on the session object's class.
import type { Request } from 'express';
import { now as clock, reportingFailure, since } from '../events.js';
import { type Changes, canonicalUser, changesOf, noChanges, unstorableMessage, userOf } from './changes.js';
import { createSessionEnder } from './ending.js';
import type { SessionConfig } from './options.js';
import { loadSessionScript, saveSessionScript } from './scripts.js';
import { newSessionId } from './signature.js';
import {
  destroyed,
  foundGone,
  loadedFrom,
  mayChange,
  regenerated,
  type SessionPersistence,
  type SessionState,
  saved,
  sessionIdOf,
} from './state.js';
import { dataPrefix, type LoadedSession, lifetimeField, readLoadReply } from './stored.js';
import { sessionUnreadable } from './unavailable.js';
import { createUserIndex, type UserIndex } from './user-index.js';

export type { UserSessionInfo } from './user-index.js';

/** Loads, diffs and saves the sessions of one `redisSession()` middleware, and keeps its per-user index. */
export interface SessionStorage extends SessionPersistence, Pick<UserIndex, 'listByUser' | 'destroyByUser'> {
  /**
   * What finishing the request now would write, or `undefined` when it would write nothing. Fields JSON cannot
   * hold are left out, and reported through `unstorable`.
   */
  pendingWrite(s: SessionState, unstorable?: (message: string) => void): Changes | undefined;
  /** Whether finishing the request now would write the session (so a cookie is owed for a new one). */
  willSave(s: SessionState): boolean;
  /**
   * Writes `changes` (from {@link pendingWrite}) in one script, plus the user index if the user changed: the new
   * user's entry first, so that a session never lands without it (on a Cluster they live on different nodes), and
   * the old user's once the session is no longer theirs. `done` is called once all are finished (through a
   * callback: this runs on every changing request); with an error, the session was not written (unless Redis applied
   * a write whose reply did not come in time).
   */
  write(s: SessionState, changes: Changes, done: (error: Error | undefined) => void): void;
  /**
   * Reads a session (and refreshes its idle timeout when `rolling`): its lifetime and data fields, or `undefined`
   * when it is gone or is not a session of ours (see `readLoadReply`).
   */
  loadThen(id: string, rolling: boolean, done: (error: Error | undefined, loaded?: LoadedSession) => void): void;
  /** {@link loadThen} as a Promise. */
  load(id: string, rolling: boolean): Promise<LoadedSession | undefined>;
  /** Whether session `id` is one this process ended while Redis was unreachable: no session until that is applied. */
  refuses(id: string): boolean;
}

/** Ids `genid` may return: what a cookie and a Redis key carry without escaping. */
const genidPattern = /^[A-Za-z0-9_-]{8,128}$/;

/** The storage of the sessions `config` describes. */
export function createSessionStorage(config: SessionConfig): SessionStorage {
  const { call, sessionKey, emit } = config;
  const userIndex = createUserIndex(config);
  const ender = createSessionEnder(config);
  const reported = <T>(operation: string, step: () => Promise<T>) => reportingFailure(emit, 'session', operation, step);
  /** The load script's arguments, built once: it runs on every request that has a session. */
  const userField = dataPrefix + config.userField;
  const loadArgs = {
    rolling: [config.ttl, config.absoluteTimeout, 1, userField],
    still: [config.ttl, config.absoluteTimeout, 0, userField],
  } as const;

  /** The idle timeout of a session: its own cookie lifetime when it has one, else `ttl`. */
  const idleOf = (s: SessionState) => (typeof s.lifetime === 'number' ? s.lifetime : config.ttl);

  /** The save script's arguments for `changes` (see `saveSessionScript`); `indexed`: the user's entry was written. */
  function saveArgs(s: SessionState, changes: Changes, indexed: boolean): (string | number)[] {
    const pairs = changes.set.length / 2 + (s.lifetimeChanged ? 1 : 0);
    const args: (string | number)[] = [idleOf(s), config.absoluteTimeout, s.isNew ? 1 : 0, pairs, indexed ? 1 : 0];
    for (let i = 0; i < changes.set.length; i += 2) args.push(dataPrefix + changes.set[i], changes.set[i + 1]);
    if (s.lifetimeChanged) args.push(lifetimeField, typeof s.lifetime === 'number' ? s.lifetime : 0);
    for (const field of changes.remove) args.push(dataPrefix + field);
    return args;
  }

  /** The id Redis holds this session under, if any (not new, destroyed, unread or read-only). */
  const storedId = (s: SessionState) =>
    !s.isNew && s.id !== undefined && !s.destroyed && !s.detached ? s.id : undefined;

  /** Puts a session back into its user's index if it is missing there (see the load script); errors are dropped. */
  function repairIndex(id: string, loaded: LoadedSession): void {
    const at = loaded.names.indexOf(config.userField);
    const user = at === -1 ? undefined : canonicalUser(loaded.values[at]);
    if (user === undefined) return;
    userIndex.repair(id, user).then(
      (added) => added && emit?.({ type: 'redis.repaired', source: 'session' }),
      () => {}, // an outage is logged by the caller; the next check (a resolution later) tries again
    );
  }

  const storage: SessionStorage = {
    config,

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

    pendingWrite(s, unstorable) {
      if (s.destroyed || s.detached) return undefined;
      let changes = changesOf(s.data, s.saved);
      if (changes?.unstorable.length) unstorable?.(unstorableMessage(changes));
      if (s.lifetimeChanged) {
        changes ??= noChanges();
        changes.count++;
      }
      if (changes && changes.count > 0) return changes;
      if (s.isNew && config.saveUninitialized) return changes ?? noChanges();
      return undefined;
    },

    willSave(s) {
      return storage.pendingWrite(s) !== undefined;
    },

    async commit(s) {
      if (s.unread?.error) throw sessionUnreadable(s.unread.error);
      let problem: string | undefined;
      const changes = storage.pendingWrite(s, (message) => {
        problem = message;
      });
      if (problem) throw new TypeError(problem);
      if (!changes) return;
      await reported(
        'save',
        () =>
          new Promise<void>((resolve, reject) =>
            storage.write(s, changes, (error) => (error ? reject(error) : resolve())),
          ),
      );
    },

    write(s, changes, done) {
      const id = sessionIdOf(s);
      const lifetime = s.lifetime;
      const lifetimeWritten = s.lifetimeChanged;
      const user = userOf(s.data, config.userField);
      const from = s.indexedUser;
      const newUser = user !== from ? user : undefined;
      const args = saveArgs(s, changes, newUser !== undefined);
      const started = emit ? clock() : 0;
      const save = () =>
        call.script(saveSessionScript, [sessionKey(id)], args, (saveError, reply) => {
          if (saveError) return done(saveError);
          if (reply === 2)
            return done(new Error("a new session's id is already in use: 'genid' must return a unique id"));
          const finish = () => {
            // reply !== 1: gone (destroyed or expired) while this request ran; its changes must not bring it back.
            if (reply !== 1) {
              s.indexedUser = user;
              return done(undefined);
            }
            if (s.isNew) emit?.({ type: 'session.created', userId: user, durationMs: since(started) });
            saved(s, { changes, lifetime, lifetimeWritten, user });
            done(undefined);
          };
          // An entry left under the old user (this removal failed) names a session that is no longer theirs, which
          // listByUser and destroyByUser pass over.
          if (from !== undefined && from !== user) userIndex.remove(id, from).then(finish, finish);
          else finish();
        });
      // An entry whose session never lands is harmless (listByUser drops it; destroyByUser deletes only sessions of
      // that user), a session without its entry is not: the entry goes first, and the save only if it landed.
      if (newUser !== undefined) userIndex.add(id, newUser).then(save, done);
      else save();
    },

    loadThen(id, rolling, done) {
      call.script(loadSessionScript, [sessionKey(id)], rolling ? loadArgs.rolling : loadArgs.still, (error, reply) => {
        if (error) return done(error);
        const loaded = readLoadReply(reply);
        if (loaded?.indexDue) repairIndex(id, loaded);
        done(undefined, loaded);
      });
    },

    load(id, rolling) {
      return new Promise((resolve, reject) =>
        storage.loadThen(id, rolling, (error, loaded) => (error ? reject(error) : resolve(loaded))),
      );
    },

    refuses: ender.refuses,

    async reload(s) {
      if (s.unread?.error) throw sessionUnreadable(s.unread.error);
      mayChange(s, true);
      if (s.detached || s.destroyed) return;
      const wasStored = !s.isNew;
      const started = emit ? clock() : 0;
      const userId = s.indexedUser;
      const loaded = wasStored ? await reported('reload', () => storage.load(sessionIdOf(s), false)) : undefined;
      if (loaded) return loadedFrom(s, loaded);
      foundGone(s);
      if (wasStored) emit?.({ type: 'session.expired', userId, durationMs: since(started) });
    },

    async touch(s) {
      if (s.unread?.error) throw sessionUnreadable(s.unread.error);
      if (s.isNew || s.detached || s.destroyed) return;
      await reported('touch', () => storage.load(sessionIdOf(s), true));
    },

    async regenerate(s, keepData) {
      if (keepData && s.unread?.error) throw sessionUnreadable(s.unread.error);
      mayChange(s, true);
      const started = emit ? clock() : 0;
      const userId = s.indexedUser;
      // The session Redis holds (or the unread one the cookie names) ends; a read-only one changes nothing.
      const ending = s.unread?.id ?? storedId(s);
      if (ending !== undefined) await reported('regenerate', () => ender.end(ending, userId));
      emit?.({ type: 'session.regenerated', userId, durationMs: since(started) });
      regenerated(s, storage.newId(s.req), keepData);
    },

    /**
     * Destroys the session. It counts as destroyed at once — its data is gone, and this response clears the cookie
     * even if Redis cannot be reached — and its key is then deleted, or held until Redis answers again (see
     * `SessionEnder`). A session that could not be read is destroyed all the same: its data is not needed.
     */
    async destroy(s) {
      mayChange(s, true);
      const ending = s.unread?.id ?? storedId(s);
      const indexed = s.indexedUser;
      destroyed(s);
      if (ending === undefined) return;
      const started = emit ? clock() : 0;
      await reported('destroy', () => ender.end(ending, indexed));
      emit?.({ type: 'session.destroyed', reason: 'destroy', userId: indexed, durationMs: since(started) });
    },

    listByUser: userIndex.listByUser,
    destroyByUser: userIndex.destroyByUser,
  };
  return storage;
}
