// Invalidating what a cache stores — a tag's entries (its tombstone first), and entries named by key — so that it is
// never lost to an outage: each step that cannot reach Redis (down, slow) is held in this process and applied before
// the process sends Redis anything else (see `deferUntilRecovered`), so nothing stale is read or stored meanwhile.
import { RedisTimeoutError, RedisUnavailableError } from '../errors.js';
import { now as clock, reportingFailure, reportRedisError, since } from '../events.js';
import { isCluster, isCrossSlot, markRefusesCrossSlot, needsOneSlot, type RedisClient } from '../redis/client.js';
import { deferUntilRecovered, healthOf, isOutage } from '../redis/health.js';
import type { RedisScript } from '../redis/script.js';
import { hashForEvents } from './context.js';
import type { Tag } from './keys.js';
import { tagForEvents } from './report.js';
import { invalidateScript } from './scripts.js';
import { type CacheStore, tombstoneMs } from './store.js';

/** Members removed from a tag set per round of an invalidation. */
const invalidationChunk = 200;

/**
 * Steps sent past held writes on a Redis Cluster at most at once, per cache (see `applyNow`): each one whose node
 * does not answer waits in ioredis until it does, so their number is bounded.
 */
const maxPastHeld = 100;

/**
 * How an invalidation's commands reach Redis: within the cache's `timeout` as every call does, or — for a step held
 * back during an outage — straight to the client as the held writes are applied (nothing else is sent before them).
 */
interface Via {
  readonly client: RedisClient;
  run(script: RedisScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown>;
  send<T>(command: (redis: RedisClient) => Promise<T>): Promise<T>;
}

/** One step of an invalidation, applied (and held) on its own: a tag, or an entry named by its key. */
interface Step {
  /** What it invalidates, as a key of the cache: injective, and the same for the same step (held once). */
  id: string;
  /** The tag, for a tag's step; else the step deletes the entry at `id`. */
  tag?: Tag;
  /** Applies it; resolves to how many entries it deleted (an entry is deleted once, by whichever step comes first). */
  apply(via: Via): Promise<number>;
}

/**
 * Invalidates `tags` and deletes `also.entries` (keys of entries the caller can name itself: reached even if a tag
 * set is gone, or on Redis Cluster its node is down), reporting to `onEvent` (`also.key` hashed); resolves to how
 * many entries were deleted now. A step that cannot reach Redis is held and applied once Redis
 * answers again (`redis.deferred`; `redis.dropped` and a logged error when the client's queue of held writes is
 * full): the call still resolves. It rejects only when Redis refused a step (a command error, not an outage).
 */
export type Invalidate = (
  tags: readonly Tag[],
  also?: { key?: string; entries?: readonly string[] },
  operation?: string,
) => Promise<number>;

/** The invalidation of the cache whose Redis side is `store` (see {@link Invalidate}). */
export function createInvalidation(store: CacheStore): Invalidate {
  const { keys, localCopies, emit, logger } = store;
  /** Whether the last step held back was dropped (the error is logged once until one is held again). */
  let dropping = false;
  /** Steps sent past held writes that have not settled yet (see {@link applyNow}). */
  let pastHeld = 0;

  // Invalidations commute with the ones held (deletes and tombstones): they go out whenever Redis answers, never
  // held behind a queue that a steady stream of writes would keep from emptying.
  const bounded = (): Via => ({ client: store.redis(), run: store.call.unordered.run, send: store.call.unordered });
  const direct = (client: RedisClient): Via => ({
    client,
    run: (script, scriptKeys, args) => script.run(client, scriptKeys, args),
    send: (command) => command(client),
  });

  /**
   * A tag set member as the client's commands take it: members are keys as Redis holds them (with the client's
   * ioredis `keyPrefix`), to which commands add it again.
   */
  function asCommandKey(client: RedisClient, member: string): string {
    const prefix = (client as { options?: { keyPrefix?: string } }).options?.keyPrefix ?? '';
    return prefix !== '' && member.startsWith(prefix) ? member.slice(prefix.length) : member;
  }

  /**
   * Deletes the entries among `commandKeys` (on Redis Cluster one command each), resolving to how many existed. A
   * key that is no entry key of this cache (a planted tag set member, another program's) is never deleted.
   */
  async function deleteEntries(commandKeys: string[], via: Via): Promise<number> {
    const entries = commandKeys.filter((key) => keys.isEntry(key));
    if (entries.length === 0) return 0;
    for (const key of entries) localCopies.delete(key);
    if (!needsOneSlot(via.client)) {
      try {
        return await via.send((r) => r.del(...entries));
      } catch (error) {
        if (!isCrossSlot(error)) throw error;
        markRefusesCrossSlot(via.client);
      }
    }
    const counts = await Promise.all(entries.map((key) => via.send((r) => r.del(key))));
    return counts.reduce((sum, n) => sum + n, 0);
  }

  /**
   * Invalidates one tag: its tombstone first (from then on, on Redis's clock, nothing produced before it is stored
   * with the tag), then its entries, in rounds of {@link invalidationChunk}: each round deletes some members and then
   * removes exactly those from the set, so a member added meanwhile is never dropped unseen. Stops once the set is
   * empty, or after as many rounds as its size at the start called for. Applied again (held during an outage, or
   * after a timeout that Redis did apply), it only moves the tombstone later: never earlier.
   */
  async function invalidateTag(tag: Tag, via: Via): Promise<number> {
    const setKey = keys.tagSet(tag);
    const [size, firstMembers] = (await via.run(
      invalidateScript,
      [setKey, keys.tombstone(tag)],
      [tombstoneMs, invalidationChunk],
    )) as [number, string[]];
    let members = firstMembers;
    let deleted = 0;
    for (let round = 0; members.length > 0 && round <= Math.ceil(size / invalidationChunk); round++) {
      deleted += await deleteEntries(
        members.map((member) => asCommandKey(via.client, member)),
        via,
      );
      const removed = members; // members are not keys: the client adds no prefix to them
      await via.send((r) => r.zrem(setKey, ...removed));
      members = await via.send((r) => r.zrange(setKey, 0, invalidationChunk - 1));
    }
    return deleted;
  }

  const tagStep = (tag: Tag): Step => ({ id: keys.tagSet(tag), tag, apply: (via) => invalidateTag(tag, via) });
  const entryStep = (key: string): Step => ({ id: key, apply: (via) => deleteEntries([key], via) });

  /**
   * Applies `step` within the cache's timeout. On a Redis Cluster whose connection is up, a step that failed at once
   * only because this process holds writes for a node that does not answer is sent all the same: invalidations
   * commute (they delete, and move tombstones later), so the nodes that answer apply it now — an entry whose tag
   * set's node is down is deleted for every instance, not only for this one, which reads nothing meanwhile.
   */
  async function applyNow(step: Step, via: Via): Promise<number> {
    try {
      return await step.apply(via);
    } catch (error) {
      const { client } = via;
      const heldBack = error instanceof RedisUnavailableError && isCluster(client) && client.status === 'ready';
      if (!heldBack || pastHeld >= maxPastHeld) throw error;
      pastHeld++;
      const work = step.apply(direct(client));
      const release = () => {
        pastHeld--;
      };
      work.then(release, release);
      return withinTimeout(work, store.timeout);
    }
  }

  /**
   * Holds `step` until Redis answers again; returns how many writes the client holds now (0: it was dropped, the
   * queue being full). Applied, it is reported as `cache.invalidated`; refused then (not an outage), as a failed
   * invalidation.
   */
  function hold(client: RedisClient, step: Step): number {
    let count = 0;
    let started = 0;
    let reported = false;
    return deferUntilRecovered(client, {
      source: 'cache',
      key: `cache-invalidate:${step.id}`,
      run: (redis) => {
        started = clock();
        return step.apply(direct(redis)).then((deleted) => {
          count = deleted;
        });
      },
      settled: (error) => {
        // Told once, and only when this hold ran: one replaced by a later hold of the same step is reported by it.
        if (started === 0 || reported) return;
        reported = true;
        if (error) {
          logger.error(`redisware cache: a held invalidation was refused by Redis: ${error.message}`);
          reportRedisError(emit, 'cache', 'failed', 'invalidate', error);
        } else if (step.tag) {
          emit?.({ type: 'cache.invalidated', tags: [tagForEvents(step.tag)], count, durationMs: since(started) });
        } else if (count > 0) {
          const key = hashForEvents(step.id); // as the entry's other events show it
          emit?.({ type: 'cache.invalidated', tags: [], key, count, durationMs: since(started) });
        }
      },
    });
  }

  /** Holds the steps that met an outage, reporting them: once per call, whatever their number. */
  function holdAll(steps: Step[]): void {
    const client = store.redis();
    let pending = 0;
    let dropped = 0;
    for (const step of steps) {
      const held = hold(client, step);
      if (held === 0) dropped++;
      else pending = held;
    }
    if (pending > 0) {
      dropping = false;
      emit?.({ type: 'redis.deferred', source: 'cache', operation: 'invalidate', pending });
    }
    if (dropped > 0) {
      emit?.({
        type: 'redis.dropped',
        source: 'cache',
        operation: 'invalidate',
        pending: healthOf(client).heldBy('cache'),
      });
      if (!dropping) {
        logger.error(
          `redisware cache: an invalidation was dropped: Redis is unreachable and ${healthOf(client).heldBy('cache')} invalidations are held already; stale entries may be served once it returns`,
        );
      }
      dropping = true;
    }
  }

  /**
   * Applies `steps` now, holding those that meet an outage; resolves to the entries deleted now, the tags applied
   * now, and how many steps are held. Rejects with a refusal, after holding the others.
   */
  async function applyOrHold(steps: Step[]): Promise<{ count: number; applied: Tag[]; held: number }> {
    const via = bounded();
    const outcomes = await Promise.allSettled(steps.map((step) => applyNow(step, via)));
    let count = 0;
    let refused: unknown;
    const applied: Tag[] = [];
    const held: Step[] = [];
    outcomes.forEach((outcome, i) => {
      const step = steps[i] as Step;
      if (outcome.status === 'fulfilled') {
        count += outcome.value;
        if (step.tag) applied.push(step.tag);
      } else if (isOutage(outcome.reason)) held.push(step);
      else refused ??= outcome.reason;
    });
    if (held.length > 0) holdAll(held);
    if (refused !== undefined) throw refused;
    return { count, applied, held: held.length };
  }

  return async function invalidate(tags, also = {}, operation = 'invalidate') {
    const started = emit ? clock() : 0;
    const named = (also.entries ?? []).filter((key) => keys.isEntry(key));
    for (const key of named) localCopies.delete(key);
    // Tags and named entries at once: on Redis Cluster an entry is deleted even when its tag set's node is down.
    const steps = [...tags.map(tagStep), ...named.map(entryStep)];
    const { count, applied, held } = await reportingFailure(emit, 'cache', operation, () => applyOrHold(steps));
    // What was held is reported as it is applied.
    if (held === 0 || applied.length > 0) {
      emit?.({
        type: 'cache.invalidated',
        tags: applied.map(tagForEvents),
        key: also.key === undefined ? undefined : hashForEvents(keys.value(also.key)),
        count,
        durationMs: since(started),
      });
    }
    return count;
  };
}

/** `work`, or a {@link RedisTimeoutError} after `timeoutMs` (`work` goes on: its caller bounds how many do). */
function withinTimeout<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisTimeoutError(timeoutMs)), timeoutMs);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
