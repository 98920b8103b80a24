// The writes a client holds back while Redis is down (see `RedisHealth.defer`): bounded per kind, one per key, each
// told once when it is applied or given up.
import type { RedisClient } from './client.js';

/** Who holds a write: each kind has a bound of its own, so one kind (a flood of invalidations) never crowds out
 * another (a logout). */
export type HeldSource = 'session' | 'cache' | 'lock';

/** A write that must not be lost (a logout, an invalidation, a lock's release), held while Redis is down. */
export interface DeferredWrite {
  /** Whose write it is: bounds and waits are per source (see `RedisHealth.gate`). */
  source: HeldSource;
  /** Writes of the same source and key are one write: a later one replaces an earlier one still held. */
  key: string;
  /** Applies the write; must be idempotent (it may have been applied before the failure that deferred it). */
  run(redis: RedisClient): Promise<unknown>;
  /** Told once: when the write was applied (no error), or given up on (an error that is not an outage). */
  settled?(error?: Error): void;
}

/** The most writes held per client and source; past it a write is dropped (and its caller told so). */
export const maxDeferredWrites = 10_000;
/** The most callers told of one held write (a write repeated more often is still applied once). */
export const maxCallersPerWrite = 64;

/** One held write: the latest `run` of its key, and every caller to tell (up to {@link maxCallersPerWrite}). */
export interface HeldWrite {
  readonly source: HeldSource;
  readonly id: string;
  run: DeferredWrite['run'];
  readonly callers: NonNullable<DeferredWrite['settled']>[];
  /** Bumped each time the write is held again: one applied under an older version is applied again. */
  version: number;
}

/** Calls `told(error)`, never letting a throw escape: a caller's bug must not stop the others being told. */
function tell(told: NonNullable<DeferredWrite['settled']>, error: Error | undefined): void {
  try {
    told(error);
  } catch {
    // The caller's own bug: nothing to do here (it runs inside a Redis event handler or a drain).
  }
}

/** The held writes of one client, in the order they were last held. */
export class HeldWrites {
  readonly #writes = new Map<string, HeldWrite>();
  readonly #counts: Record<HeldSource, number> = { session: 0, cache: 0, lock: 0 };

  get size(): number {
    return this.#writes.size;
  }

  /** How many writes `source` holds. */
  count(source: HeldSource): number {
    return this.#counts[source];
  }

  /**
   * Holds `write`, or adds its caller to the same write already held (which moves to the end: the order of the last
   * request wins). Returns how many writes its source holds, or 0 when that source's bound was reached (dropped).
   */
  add(write: DeferredWrite): number {
    const id = `${write.source}\u0000${write.key}`;
    let held = this.#writes.get(id);
    if (!held) {
      if (this.#counts[write.source] >= maxDeferredWrites) return 0;
      held = { source: write.source, id, run: write.run, callers: [], version: 0 };
      this.#counts[write.source] += 1;
    } else {
      this.#writes.delete(id);
      held.run = write.run;
      held.version += 1;
    }
    if (write.settled && held.callers.length < maxCallersPerWrite) held.callers.push(write.settled);
    this.#writes.set(id, held);
    return this.#counts[write.source];
  }

  /** The writes held now, to apply. */
  snapshot(): { held: HeldWrite; version: number }[] {
    return [...this.#writes.values()].map((held) => ({ held, version: held.version }));
  }

  /**
   * `held`, applied (or refused for good: `error`) as it was at `version`: released and its callers told, unless it
   * was held again meanwhile (then it stays, to be applied again).
   */
  settle(held: HeldWrite, version: number, error: Error | undefined): void {
    if (this.#writes.get(held.id) !== held || held.version !== version) return;
    this.#writes.delete(held.id);
    this.#counts[held.source] -= 1;
    for (const told of held.callers) tell(told, error);
  }

  /** Gives every held write up, telling its callers `error`. */
  abandon(error: Error): void {
    const held = [...this.#writes.values()];
    this.#writes.clear();
    this.#counts.session = this.#counts.cache = this.#counts.lock = 0;
    for (const write of held) for (const told of write.callers) tell(told, error);
  }
}
