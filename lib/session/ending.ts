// Ending a stored session (destroy(), regenerate()): its key and its per-user index entries are deleted now, or,
// when Redis cannot be reached, held in this process until it answers again, the id refused meanwhile.
import type { Emit } from '../events.js';
import type { Logger } from '../logger.js';
import type { RedisClient } from '../redis/client.js';
import { closedByApp } from '../redis/closing.js';
import { deferUntilRecovered, isOutage } from '../redis/health.js';
import { canonicalUser } from './changes.js';
import type { SessionConfig } from './options.js';
import { destroySessionScript, userIndexScript } from './scripts.js';
import { dataPrefix } from './stored.js';
import { SessionUnavailableError } from './unavailable.js';

/** Ends the stored sessions of one `redisSession()` middleware (see {@link createSessionEnder}). */
export interface SessionEnder {
  /**
   * Deletes session `id` and its index entries (`user`'s, and those of whoever Redis says it belongs to). When
   * Redis cannot be reached (down, or slower than `timeout`), the delete is held until it answers again and applied
   * before anything else is sent (see `deferUntilRecovered`): resolves `'held'`. Rejects when it can be neither:
   * Redis refused it (not an outage), the client is closed for good, or too many writes are held already (then with
   * a {@link SessionUnavailableError}).
   */
  end(id: string, user: string | undefined): Promise<'deleted' | 'held'>;
  /** Whether this process holds the delete of session `id`: until it is applied, that id is no session. */
  refuses(id: string): boolean;
}

/**
 * The most ids refused per client: as many as writes can be held (see `maxDeferredWrites`); an id leaves once its
 * delete is applied, or when it is the oldest of a full set.
 */
const maxRefused = 10_000;

/** Per client, the keys of the sessions whose delete is held (oldest first). */
const refusedByClient = new WeakMap<RedisClient, Map<string, true>>();

function refusedOf(client: RedisClient): Map<string, true> {
  let refused = refusedByClient.get(client);
  if (!refused) {
    refused = new Map();
    refusedByClient.set(client, refused);
  }
  return refused;
}

/** Whether the delete of the session under `key` is held for `client` (see {@link holdSessionDelete}). */
export function sessionDeleteHeld(client: RedisClient, key: string): boolean {
  const refused = refusedByClient.get(client);
  return refused !== undefined && refused.size > 0 && refused.has(key);
}

/** A session delete that met an outage (see {@link holdSessionDelete}). */
export interface HeldDelete {
  client: RedisClient;
  /** The session's key. */
  key: string;
  /** The delete, idempotent. */
  remove(redis: RedisClient): Promise<unknown>;
  /** The outage it met. */
  cause: unknown;
  emit: Emit | undefined;
  logger: Logger;
}

/**
 * Holds a session delete that met an outage until Redis answers again (see `deferUntilRecovered`), the session
 * refused meanwhile (see {@link sessionDeleteHeld}); emits `redis.deferred`. Throws the outage when `client` was
 * closed by the app (it would hold it for ever), and a {@link SessionUnavailableError} when the queue of held writes
 * is full (`redis.dropped`).
 */
export function holdSessionDelete({ client, key, remove, cause, emit, logger }: HeldDelete): void {
  if (closedByApp(client)) throw cause;
  const refused = refusedOf(client);
  refused.delete(key);
  refused.set(key, true);
  if (refused.size > maxRefused) refused.delete(refused.keys().next().value as string);
  const pending = deferUntilRecovered(client, {
    source: 'session',
    key: `session-destroy:${key}`,
    run: remove,
    settled(error) {
      refused.delete(key);
      if (error) logger.error(`redisware: a held session delete failed: ${error.message}`);
    },
  });
  if (pending === 0) {
    refused.delete(key);
    emit?.({ type: 'redis.dropped', source: 'session', operation: 'destroy', pending: 0 });
    throw new SessionUnavailableError(
      'the session could not be deleted (Redis cannot be reached, and too many writes are held already)',
      { cause },
    );
  }
  emit?.({ type: 'redis.deferred', source: 'session', operation: 'destroy', pending });
}

function parseJson(text: unknown): unknown {
  if (typeof text !== 'string') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Ends the sessions `config` describes. */
export function createSessionEnder(config: SessionConfig): SessionEnder {
  const { call, sessionKey, userKey, emit, logger } = config;
  const userField = dataPrefix + config.userField;

  /**
   * The delete of session `id`, in two steps (a session and its user's index live in different Cluster slots): the
   * session first, which says whose it was, then its index entries. Idempotent, so it can be applied again after a
   * failure: the user found by an earlier attempt is kept.
   */
  function deletion(id: string, user: string | undefined): (redis: RedisClient) => Promise<void> {
    const key = sessionKey(id);
    let owner: string | undefined;
    return async (redis) => {
      const stored = await destroySessionScript.run(redis, [key], [userField]);
      owner = canonicalUser(parseJson(stored)) ?? owner;
      const users = new Set([user, owner].filter((u): u is string => u !== undefined));
      await Promise.all(
        [...users].map((u) => userIndexScript.run(redis, [userKey(u)], [id, config.absoluteTimeout, 0])),
      );
    };
  }

  return {
    async end(id, user) {
      const remove = deletion(id, user);
      try {
        await call(remove);
        return 'deleted';
      } catch (error) {
        if (!isOutage(error)) throw error;
        holdSessionDelete({ client: config.client(), key: sessionKey(id), remove, cause: error, emit, logger });
        return 'held';
      }
    },

    refuses(id) {
      return sessionDeleteHeld(config.client(), sessionKey(id));
    },
  };
}
