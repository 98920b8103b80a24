// "Log out everywhere": the per-user index of sessions (a sorted set per user; see scripts.ts), behind
// `listByUser()` and `destroyByUser()`.
import { now as clock, since } from '../events.js';
import { canonicalUser } from './changes.js';
import type { SessionConfig } from './options.js';
import { destroyIfUserScript, readUserIndexScript, sessionSummaryScript, userIndexScript } from './scripts.js';
import { dataPrefix } from './stored.js';

/** One entry of `listByUser()`. */
export interface UserSessionInfo {
  id: string;
  createdAt: Date;
  lastSeenAt: Date;
}

/** The per-user index of one `redisSession()` middleware (see {@link createUserIndex}). */
export interface UserIndex {
  /** Adds session `id` to the index of `user`. */
  add(id: string, user: string): Promise<void>;
  /** Removes session `id` from the index of `user`. */
  remove(id: string, user: string): Promise<void>;
  /**
   * Adds session `id` to the index of `user` unless it is there: the repair of an index that misses a session (see
   * the load script). Resolves to whether it was missing.
   */
  repair(id: string, user: string): Promise<boolean>;
  /** The live sessions of `userId` (canonical: `42` and `'42'` are one user). Gone ones leave the index. */
  listByUser(userId: string): Promise<UserSessionInfo[]>;
  /**
   * Deletes every session of `userId` that is still that user's, and exactly those from the index: a session
   * logged in meanwhile keeps its entry. Resolves to how many were deleted.
   */
  destroyByUser(userId: string): Promise<number>;
}

/** How long an index entry whose session is not there yet is kept: its first save may still be on its way. */
const indexGraceMs = 60_000;

/** The per-user index of the sessions `config` describes. */
export function createUserIndex(config: SessionConfig): UserIndex {
  const { call, sessionKey, userKey, emit } = config;
  const userField = dataPrefix + config.userField;

  const index: UserIndex = {
    async add(id, user) {
      await call.run(userIndexScript, [userKey(user)], [id, config.absoluteTimeout, 1]);
    },

    async remove(id, user) {
      await call.run(userIndexScript, [userKey(user)], [id, config.absoluteTimeout, 0]);
    },

    async repair(id, user) {
      return (await call.run(userIndexScript, [userKey(user)], [id, config.absoluteTimeout, 2])) === 1;
    },

    async listByUser(userId) {
      const indexKey = userKey(userId);
      const scored = (await call.run(readUserIndexScript, [indexKey], [])) as string[];
      const ids: string[] = [];
      const indexedAt: number[] = [];
      for (let i = 0; i < scored.length; i += 2) {
        ids.push(scored[i]);
        indexedAt.push(Number(scored[i + 1]) - config.absoluteTimeout); // scores are "alive until" times
      }
      const rows = await Promise.all(
        ids.map((id) => call.run(sessionSummaryScript, [sessionKey(id)], [userField]) as Promise<(string | null)[]>),
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

    async destroyByUser(userId) {
      const started = emit ? clock() : 0;
      const sessions = await index.listByUser(userId);
      // The stored forms of this user: the string, and the number whose decimal string it is.
      const userJson = [JSON.stringify(userId)];
      if (String(Number(userId)) === userId) userJson.push(userId);
      // One script per session (sessions live in different Cluster slots), then one ZREM of those it deleted.
      const deleted = await Promise.all(
        sessions.map(({ id }) => call.run(destroyIfUserScript, [sessionKey(id)], [userField, ...userJson])),
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
  return index;
}

function parseJson(text: string | null): unknown {
  if (text === null) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
