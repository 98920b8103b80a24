import type { RateLimitInfo } from './options.js';

interface Block {
  info: RateLimitInfo;
  /** The cost of the request that was blocked: a request that costs less may pass (a token bucket refills). */
  cost: number;
}

/**
 * Remembers clients that are over their limit until their reset, so their further requests are answered
 * from memory without a Redis round trip. A block applies to requests with the same limit or a lower one and at
 * least the same cost (a function `limit` or `cost` may give another request more room). Bounded: past
 * `maxEntries` the oldest entry is dropped.
 */
export class BlockCache {
  private readonly entries = new Map<string, Block>();

  constructor(private readonly maxEntries = 10_000) {}

  /** The block still in force for `storageKey` and a request with `limit` and `cost`, if any. */
  get(storageKey: string, now: number, limit: number, cost: number): RateLimitInfo | undefined {
    const block = this.entries.get(storageKey);
    if (block === undefined) return undefined;
    if (block.info.resetAt.getTime() <= now) {
      this.entries.delete(storageKey);
      return undefined;
    }
    return limit <= block.info.limit && cost >= block.cost ? block.info : undefined;
  }

  set(storageKey: string, info: RateLimitInfo, cost: number): void {
    if (this.entries.size >= this.maxEntries && !this.entries.has(storageKey)) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    this.entries.set(storageKey, { info, cost });
  }

  delete(storageKey: string): void {
    this.entries.delete(storageKey);
  }
}
