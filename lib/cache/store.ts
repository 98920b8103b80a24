import { createHash } from 'node:crypto';
import type { z } from 'zod';
import { lazyRedis } from '../connection.js';
import { keyspace } from '../keys.js';
import { type Logger, OutageReporter, resolveLogger } from '../logger.js';
import { boundedCaller } from '../redis/bounded.js';
import { isCrossSlot, markRefusesCrossSlot, needsOneSlot } from '../redis/client.js';
import { RedisScript } from '../redis/script.js';
import { decodeResponse, type StoredResponse } from './entry.js';
import type { cacheSchema } from './options.js';

/**
 * Stores an entry and adds it to its tag sets in one atomic step: KEYS = entry, tag sets…;
 * ARGV = value, ttl ms. Each tag set expires with its newest entry.
 */
const storeWithTagsScript = new RedisScript(
  'cache-store',
  `
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
`,
);

/** Adds an entry key to one tag set (Redis Cluster: tag sets live in other slots than their entries). */
const addToTagScript = new RedisScript(
  'cache-tag-add',
  `
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`,
);

/**
 * Reads an entry, or only confirms it: KEYS[1] = entry; ARGV[1] = the version of the copy this process already
 * holds ('' for none). Returns nil (no entry), 1 (the local copy is still the stored one) or the entry's bytes.
 * A HIT on a large entry then moves a few bytes instead of the whole body, and stays one round trip.
 */
const readEntryScript = new RedisScript(
  'cache-read',
  `
local stored = redis.call('GET', KEYS[1])
if not stored then return false end
if ARGV[1] ~= '' and string.sub(stored, 5, 20) == ARGV[1] then return 1 end
return stored
`,
  { keys: 1, binary: true },
);

/** Entries kept in process memory (validated against Redis on every use), bounded by their total body size. */
class LocalCopies {
  private readonly entries = new Map<string, StoredResponse>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(key: string): StoredResponse | undefined {
    const entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key);
      this.entries.set(key, entry); // most recently used last
    }
    return entry;
  }

  set(key: string, entry: StoredResponse): void {
    this.delete(key);
    if (entry.body.length > this.maxBytes) return;
    this.entries.set(key, entry);
    this.bytes += entry.body.length;
    for (const [oldest, old] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= old.body.length;
    }
  }

  delete(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.bytes -= entry.body.length;
  }
}

/** Cache keys longer than this are stored under their hash. */
const maxKeyLength = 200;

/** The Redis side of a cache: key layout, bounded calls, storing with tags, reading (with local copies). */
export function createCacheStore(config: z.output<typeof cacheSchema>) {
  const logger: Logger = resolveLogger(config.logger);
  const outage = new OutageReporter(logger, 'cache could not use Redis (down, slow or refusing), bypassing it');
  const space = keyspace(config.prefix);
  const redis = lazyRedis(config.redis);
  const call = boundedCaller({ client: redis, timeoutMs: config.timeout, outage, logger, batch: config.batch });

  const entryKey = (cacheKey: string) =>
    space(cacheKey.length > maxKeyLength ? `sha256-${createHash('sha256').update(cacheKey).digest('hex')}` : cacheKey);
  const tagKey = (tag: string) => space('tag', tag);
  // The entry key is already collision-free, so the lock on it is simply `lock:<entry key>`.
  const entryLockKey = (cacheKey: string) => `lock:${entryKey(cacheKey)}`;

  async function store(storageKey: string, value: Buffer | string, ttlMs: number, tags: readonly string[]) {
    if (tags.length === 0) {
      await call((r) => r.set(storageKey, value, 'PX', ttlMs));
      return;
    }
    if (!needsOneSlot(redis())) {
      try {
        await call.run(storeWithTagsScript, [storageKey, ...tags.map(tagKey)], [value as string, ttlMs]);
        return;
      } catch (error) {
        // A proxy in front of a Cluster refuses keys of several slots: from now on, one slot per command.
        if (!isCrossSlot(error)) throw error;
        markRefusesCrossSlot(redis());
      }
    }
    // Tag sets first: an entry is never stored without being findable by its tags.
    await Promise.all(tags.map((tag) => call.run(addToTagScript, [tagKey(tag)], [storageKey, ttlMs])));
    await call((r) => r.set(storageKey, value, 'PX', ttlMs));
  }

  /** Process-local copies of response entries; always revalidated by version, so never served stale. */
  const localCopies = new LocalCopies(config.localBytes);

  /** The stored response at `storageKey` (one round trip), or `undefined`. */
  async function readEntry(storageKey: string): Promise<StoredResponse | undefined> {
    const local = localCopies.get(storageKey);
    const reply = await call.run(readEntryScript, [storageKey], [local?.version ?? '']);
    if (reply === 1 && local) return local;
    if (!Buffer.isBuffer(reply)) {
      localCopies.delete(storageKey);
      return undefined;
    }
    const entry = decodeResponse(reply);
    if (entry) localCopies.set(storageKey, entry);
    else localCopies.delete(storageKey);
    return entry;
  }

  return {
    redis,
    call,
    entryKey,
    tagKey,
    entryLockKey,
    store,
    readEntry,
    logger,
    timeout: config.timeout,
    ttl: config.ttl,
  };
}

/** What {@link createCacheStore} returns. */
export type CacheStore = ReturnType<typeof createCacheStore>;
