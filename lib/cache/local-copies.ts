// Entries kept in process memory: each is revalidated by version against Redis before use, so never served stale.
import type { StoredResponse } from './entry.js';

/** What a local copy costs besides its body: the object, its headers and their strings (a generous estimate). */
const copyOverhead = 512;

/**
 * Entries kept in process memory, always revalidated by version against Redis before use. Bounded by count and by
 * bytes (body plus headers plus {@link copyOverhead}), least recently used first out. Each holds a copy of its body,
 * never a view into the socket buffer it arrived in (which would keep that whole chunk alive).
 */
export class LocalCopies {
  private readonly entries = new Map<string, { entry: StoredResponse; size: number }>();
  private bytes = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly maxCount = 10_000,
  ) {}

  get(key: string): StoredResponse | undefined {
    const held = this.entries.get(key);
    if (!held) return undefined;
    this.entries.delete(key);
    this.entries.set(key, held); // most recently used last
    return held.entry;
  }

  set(key: string, entry: StoredResponse): void {
    this.delete(key);
    let size = entry.body.length + copyOverhead;
    for (const [name, value] of entry.headers) size += name.length + value.length;
    if (size > this.maxBytes) return;
    const copy = { ...entry, body: Buffer.from(entry.body) };
    this.entries.set(key, { entry: copy, size });
    this.bytes += size;
    for (const [oldest, held] of this.entries) {
      if (this.bytes <= this.maxBytes && this.entries.size <= this.maxCount) break;
      this.entries.delete(oldest);
      this.bytes -= held.size;
    }
  }

  delete(key: string): void {
    const held = this.entries.get(key);
    if (!held) return;
    this.entries.delete(key);
    this.bytes -= held.size;
  }

  /** For tests and introspection: how many copies and bytes are held. */
  get size(): { count: number; bytes: number } {
    return { count: this.entries.size, bytes: this.bytes };
  }
}
