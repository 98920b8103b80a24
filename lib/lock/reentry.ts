// Which locks the code running now holds: a nested withLock() on one of them fails at once instead of waiting for
// itself until its waitTimeout.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { RedisClient } from '../redis/client.js';

/** One lock held by a withLock() call, as seen from inside its `fn`; `held` turns false when it is released. */
interface Holding {
  readonly redis: RedisClient;
  readonly key: string;
  held: boolean;
}

const holdings = new AsyncLocalStorage<readonly Holding[]>();

/**
 * Whether the code running now is inside the `fn` of a withLock() that still holds the lock `key` on `redis`. A
 * task `fn` started that runs on after the release is not: it may take the lock like anyone else.
 */
export function holdsNow(redis: RedisClient, key: string): boolean {
  return (
    holdings.getStore()?.some((holding) => holding.held && holding.key === key && holding.redis === redis) ?? false
  );
}

/** Runs `fn` as the holder of the lock `key` on `redis` (see {@link holdsNow}). */
export async function runHolding<T>(redis: RedisClient, key: string, fn: () => T | Promise<T>): Promise<T> {
  const holding: Holding = { redis, key, held: true };
  try {
    return await holdings.run([...(holdings.getStore() ?? []), holding], fn);
  } finally {
    holding.held = false;
  }
}
