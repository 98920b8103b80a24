import type { RateLimitInfo } from './options.js';

/**
 * Remembers clients that are over their limit until their reset, so their further requests are answered
 * from memory without a Redis round trip. Bounded: past `maxEntries` the oldest entry is dropped.
 */
export class BlockCache {
  private readonly entries = new Map<string, RateLimitInfo>();

  constructor(private readonly maxEntries = 10_000) {}

  /** The block still in force for `storageKey`, if any. */
  get(storageKey: string, now: number): RateLimitInfo | undefined {
    const info = this.entries.get(storageKey);
    if (info === undefined) return undefined;
    if (info.resetAt.getTime() > now) return info;
    this.entries.delete(storageKey);
    return undefined;
  }

  set(storageKey: string, info: RateLimitInfo): void {
    if (this.entries.size >= this.maxEntries && !this.entries.has(storageKey)) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    this.entries.set(storageKey, info);
  }

  delete(storageKey: string): void {
    this.entries.delete(storageKey);
  }
}
