// The keys of withLock(): the lock on a resource, and beside it the counter its fencing tokens come from.
import { keyspace } from '../keys.js';

/** The Redis key of the lock on `resource`: `lock:<resource>` (`:` and `%` in it percent-encoded, see `key`). */
export const lockKey = keyspace('lock');

/**
 * The hash tag Redis Cluster places `key` by: what lies between its first `{` and the first `}` after it, when that
 * is not empty; else `undefined` (the whole key decides its slot). `{` and `}` are ASCII, so reading UTF-16 code
 * units finds them where Redis finds their bytes.
 */
function hashTagOf(key: string): string | undefined {
  const open = key.indexOf('{');
  if (open === -1) return undefined;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : undefined;
}

/**
 * The key of the fencing counter of the lock at `lock` (a {@link lockKey}), in the same Redis Cluster slot, so
 * that one script takes the lock and its token together. A client's `keyPrefix` (`P`) is part of both keys as Redis
 * sees them, so the slot is that of `P` + `lock`:
 * - a key with a hash tag (`lock:{tenant}job`, or a prefix `{app}:`): the lock key followed by `:fence` — the same
 *   tag places it;
 * - one with no `}` (`lock:job`, nearly every resource) and no `{` in `P`: `lock:{<P><lock key>}:fence` — the whole
 *   key is the tag;
 * - otherwise (a `}` and no tag, as in `lock:a}b`) no key can share its slot: `undefined`, and the token is taken
 *   from Redis's clock alone (see `acquireScript`).
 * Never a lock, nor another lock's counter: a lock key is `lock:` and one part with no `:` (the resource's are
 * escaped), while a counter has a `:` after that part (the first form), or one inside it (the second).
 */
export function fenceKey(lock: string, keyPrefix = ''): string | undefined {
  const full = keyPrefix + lock;
  if (hashTagOf(full) !== undefined) return `${lock}:fence`;
  if (!full.includes('}') && !keyPrefix.includes('{')) return `lock:{${full}}:fence`;
  return undefined;
}
