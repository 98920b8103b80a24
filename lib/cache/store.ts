// The Redis side of a cache: key layout, storing with tags and variants, reading (with local copies), invalidating.
import { createHash } from 'node:crypto';
import type { Request } from 'express';
import type { z } from 'zod';
import { lazyRedis } from '../connection.js';
import { eventEmitter } from '../events.js';
import { hashTag, keyspace } from '../keys.js';
import { type Logger, OutageReporter, resolveLogger } from '../logger.js';
import { boundedCaller } from '../redis/bounded.js';
import { isCrossSlot, markRefusesCrossSlot, needsOneSlot } from '../redis/client.js';
import { RedisScript, redisNow } from '../redis/script.js';
import { decodeResponse, decodeVaryMarker, type StoredResponse } from './entry.js';
import { varyValue } from './http.js';
import type { cacheSchema } from './options.js';

/** At most this many variants (`Vary`) of one URL are kept; storing another drops the oldest. */
export const maxVariants = 16;

/** The vary marker's magic (`varyMarkerMagic` in entry.ts) in Lua source, where `\0` is a NUL byte. */
const marker = '\\0RWV';

/**
 * Stores an entry, and its place among the variants of its URL, and adds it to its tag sets, in one atomic step.
 * KEYS = the URL's key, the entry's key (the same, or a variant's), tag sets…; ARGV = value, ttl ms, the request
 * header names the response varies on ('' for none), the variant's id ('' for none), the most variants to keep.
 * A URL whose responses vary holds a marker (names and kept variant ids, newest first); a variant dropped from it is
 * deleted (its key is the URL's key plus `:v:<id>`, so in the same Cluster slot). A tag set is a sorted set of entry
 * keys scored by their expiry: it is trimmed of expired members on every store and lives as long as its newest one.
 */
const storeScript = new RedisScript(
  'cache-store',
  `
local value, ttl, names, id, most = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5])
${redisNow}
if id == '' then
  redis.call('SET', KEYS[1], value, 'PX', ttl)
else
  local kept = {id}
  local current = redis.call('GET', KEYS[1])
  if current and string.sub(current, 1, 4) == '${marker}' then
    local newline = string.find(current, '\\n', 5, true)
    if newline and string.sub(current, 5, newline - 1) == names then
      for old in string.gmatch(string.sub(current, newline + 1), '%S+') do
        if old ~= id then
          if #kept < most then kept[#kept + 1] = old else redis.call('DEL', KEYS[1] .. ':v:' .. old) end
        end
      end
    end
  end
  redis.call('SET', KEYS[2], value, 'PX', ttl)
  local left = redis.call('PTTL', KEYS[1])
  redis.call('SET', KEYS[1], '${marker}' .. names .. '\\n' .. table.concat(kept, ' '), 'PX', math.max(ttl, left))
end
for i = 3, #KEYS do
  redis.call('ZADD', KEYS[i], now + ttl, KEYS[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
`,
);

/** Adds an entry key to one tag set (Redis Cluster: tag sets live in other slots than their entries). */
const addToTagScript = new RedisScript(
  'cache-tag-add',
  `
local ttl = tonumber(ARGV[2])
${redisNow}
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`,
);

/**
 * Reads an entry, or only confirms it: KEYS = the URL's key, the key this process expects the entry at (the same,
 * or a variant's); ARGV = the version of the copy this process already holds ('' for none), the variant's id ('' for
 * none). Returns 0 (none), 1 (the local copy is still the stored one), the entry's bytes, or the URL's vary marker
 * when the entry is not where it was expected (the caller then reads the variant the marker points it to). A variant
 * counts only while the marker lists it, so deleting the URL's key deletes all its variants at once. One round trip
 * for a HIT, and a HIT on a large entry held locally moves a few bytes instead of the whole body.
 */
const readScript = new RedisScript(
  'cache-read',
  `
local function answer(stored)
  if ARGV[1] ~= '' and string.sub(stored, 5, 20) == ARGV[1] then return 1 end
  return stored
end
local base = redis.call('GET', KEYS[1])
if not base then return 0 end
if string.sub(base, 1, 4) ~= '${marker}' then return answer(base) end
local newline = string.find(base, '\\n', 5, true)
local ids = newline and (' ' .. string.sub(base, newline + 1) .. ' ') or ''
if ARGV[2] == '' or not string.find(ids, ' ' .. ARGV[2] .. ' ', 1, true) then return base end
local stored = redis.call('GET', KEYS[2])
if not stored then return base end
return answer(stored)
`,
  { keys: 2, binary: true },
);

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

/** Keys longer than this are stored under their hash. */
const maxKeyLength = 200;

/** Members removed from a tag set per round of `invalidateTags`. */
const invalidationChunk = 200;

/** The id of the variant of `req` for a response that varies on `names`: a hash of those request headers. */
export function variantId(req: Request, names: readonly string[]): string {
  const hash = createHash('sha1');
  for (const name of names) hash.update(name).update('\0').update(varyValue(req.headers, name)).update('\0');
  return hash.digest('hex').slice(0, 16);
}

/** A read that found an entry: it, and the key it was found at (the URL's key or a variant's). */
export interface FoundEntry {
  entry: StoredResponse;
  key: string;
}

/** The Redis side of one cache (see the module comment). */
export function createCacheStore(config: z.output<typeof cacheSchema>) {
  const logger: Logger = resolveLogger(config.logger);
  const outage = new OutageReporter(logger, 'cache could not use Redis (down, slow or refusing), bypassing it');
  const space = keyspace(config.prefix);
  const redis = lazyRedis(config.redis);
  const call = boundedCaller({ client: redis, timeoutMs: config.timeout, outage, logger, batch: config.batch });

  const shortened = (key: string) =>
    key.length > maxKeyLength ? `sha256-${createHash('sha256').update(key).digest('hex')}` : key;
  /** The key of a value (`cache.set`, `cache.wrap`): `cache:<key>`. */
  const valueKey = (key: string) => space(shortened(key));
  /** The key of the responses stored for a cache key: `cache:{<key>}`, its variants `cache:{<key>}:v:<id>`. */
  const responseKey = (cacheKey: string) => space(hashTag(shortened(cacheKey)));
  const variantKey = (base: string, id: string) => `${base}:v:${id}`;
  const tagKey = (tag: string) => space('tag', shortened(tag));
  // The response key is already collision-free, so the lock on it is simply `lock:<response key>`.
  const lockKey = (base: string) => `lock:${base}`;

  /** The request header names each URL's responses vary on, as last seen here (so a HIT is one round trip). */
  const knownVary = new Map<string, string[]>();
  const rememberVary = (base: string, names: string[]) => {
    if (knownVary.size >= 10_000 && !knownVary.has(base)) knownVary.delete(knownVary.keys().next().value as string);
    knownVary.set(base, names);
  };

  /**
   * Stores `value` at `target` (a value's key, a URL's key, or one of its variants') for `ttlMs`, with `tags`. On a
   * Cluster, or behind a proxy that refuses keys of several slots, the tag sets are written first, then the entry:
   * an entry is never stored without being findable by its tags.
   */
  async function store(
    base: string,
    target: string,
    value: Buffer | string,
    ttlMs: number,
    tags: readonly string[],
    vary?: { names: readonly string[]; id: string },
  ) {
    const args = [value as string, ttlMs, vary ? vary.names.join(',') : '', vary?.id ?? '', maxVariants];
    if (!needsOneSlot(redis())) {
      try {
        await call.run(storeScript, [base, target, ...tags.map(tagKey)], args);
        return;
      } catch (error) {
        if (!isCrossSlot(error)) throw error;
        markRefusesCrossSlot(redis());
      }
    }
    await Promise.all(tags.map((tag) => call.run(addToTagScript, [tagKey(tag)], [target, ttlMs])));
    await call.run(storeScript, [base, target], args);
  }

  /** Process-local copies of response entries; always revalidated by version, so never served stale. */
  const localCopies = new LocalCopies(config.localBytes);

  /** One read of `target` (see `readScript`): the entry, a vary marker's names, or nothing. */
  async function readOnce(base: string, target: string): Promise<StoredResponse | string[] | undefined> {
    const local = localCopies.get(target);
    const id = target === base ? '' : target.slice(target.lastIndexOf(':v:') + 3);
    const reply = await call.run(readScript, [base, target], [local?.version ?? '', id]);
    if (reply === 1 && local) return local;
    if (!Buffer.isBuffer(reply)) {
      localCopies.delete(target);
      return undefined;
    }
    const names = decodeVaryMarker(reply);
    if (names) return names;
    const entry = decodeResponse(reply);
    if (entry) localCopies.set(target, entry);
    else localCopies.delete(target);
    return entry;
  }

  /**
   * The response stored for `cacheKey` that fits `req` (its variant, when the URL's responses vary): one round trip
   * when this process knows how the URL varies, two the first time it learns it.
   */
  async function readResponse(cacheKey: string, req: Request): Promise<FoundEntry | undefined> {
    const base = responseKey(cacheKey);
    const names = knownVary.get(base);
    const target = names?.length ? variantKey(base, variantId(req, names)) : base;
    const found = await readOnce(base, target);
    if (found === undefined) return undefined;
    if (!Array.isArray(found)) return { entry: found, key: target };
    rememberVary(base, found);
    const variant = found.length ? variantKey(base, variantId(req, found)) : base;
    if (variant === target) return undefined;
    const again = await readOnce(base, variant);
    return again && !Array.isArray(again) ? { entry: again, key: variant } : undefined;
  }

  /** Deletes `members` of a tag set (entries, on Redis Cluster one command each), resolving to how many existed. */
  async function deleteEntries(members: string[]): Promise<number> {
    if (members.length === 0) return 0;
    if (!needsOneSlot(redis())) {
      try {
        return await call((r) => r.del(...members));
      } catch (error) {
        if (!isCrossSlot(error)) throw error;
        markRefusesCrossSlot(redis());
      }
    }
    const counts = await Promise.all(members.map((member) => call((r) => r.del(member))));
    return counts.reduce((sum, n) => sum + n, 0);
  }

  /**
   * Deletes every entry tagged with `tag`, in rounds of {@link invalidationChunk}: each round deletes some members
   * and then removes exactly those from the set, so a member added meanwhile is never dropped unseen. Stops once
   * the set is empty, or after as many rounds as its size at the start called for.
   */
  async function invalidateTag(tag: string): Promise<number> {
    const key = tagKey(tag);
    const size = await call((r) => r.zcard(key));
    let deleted = 0;
    for (let round = 0; round <= Math.ceil(size / invalidationChunk); round++) {
      const members = await call((r) => r.zrange(key, 0, invalidationChunk - 1));
      if (members.length === 0) break;
      for (const member of members) localCopies.delete(member);
      deleted += await deleteEntries(members);
      await call((r) => r.zrem(key, ...members));
    }
    return deleted;
  }

  /** Deletes the value (or the response under a custom key) stored at `key`, and forgets its local copy. */
  async function deleteKey(key: string): Promise<number> {
    const keys = [valueKey(key), responseKey(key)];
    for (const each of keys) localCopies.delete(each);
    return deleteEntries(keys);
  }

  return {
    redis,
    call,
    valueKey,
    responseKey,
    variantKey,
    lockKey,
    store,
    readResponse,
    rememberVary,
    invalidateTag,
    deleteKey,
    localCopies,
    logger,
    /** Reports to `onEvent`; `undefined` without one. */
    emit: eventEmitter(config.onEvent, logger),
    timeout: config.timeout,
    ttl: config.ttl,
  };
}

/** What {@link createCacheStore} returns. */
export type CacheStore = ReturnType<typeof createCacheStore>;
