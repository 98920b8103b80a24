// The Redis side of a cache: reading entries (with local copies), and storing them with their tags and variants
// unless an invalidation came first (invalidating is invalidation.ts').
import { createHash } from 'node:crypto';
import type { Request } from 'express';
import type { z } from 'zod';
import type { Emit } from '../events.js';
import type { Logger } from '../logger.js';
import type { RedisCaller } from '../redis/bounded.js';
import { isCrossSlot, markRefusesCrossSlot, needsOneSlot, type RedisClient } from '../redis/client.js';
import { factoryParts } from '../setup.js';
import { decodeResponse, decodeVaryMarker, type StoredResponse } from './entry.js';
import { varyValue } from './http.js';
import { type CacheKeys, cacheKeys, type Tag } from './keys.js';
import { LocalCopies } from './local-copies.js';
import type { cacheSchema } from './options.js';
import { addToTagScript, readScript, readValueScript, storeScript } from './scripts.js';

/** At most this many variants (`Vary`) of one URL are kept; storing another drops the oldest. */
export const maxVariants = 16;

/**
 * The longest a response or value may take to produce and still be stored (µs): a tag's tombstone must outlive
 * every production that began before it, so productions are bounded, and tombstones kept a little longer.
 */
const longestProduction = 60_000_000;
/** How long a tag's tombstone (the time of its last invalidation) is kept, in ms. */
export const tombstoneMs = longestProduction / 1000 + 5_000;
/**
 * On Redis Cluster a tombstone and the time a production began are read from the clocks of two nodes: a production
 * that began within this margin after an invalidation is discarded too (one more miss, never a stale entry).
 */
const clusterClockMargin = 50_000;

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

/** What a read tells: the entry found, if any, and Redis's clock at the read (µs), from which a MISS is dated. */
export interface ResponseRead {
  found?: FoundEntry;
  since: string;
}

/** An entry to store (see {@link CacheStore.store}). */
export interface StoreRequest {
  /** A response's base key, or a value's key. */
  base: string;
  /** Where the entry goes: `base`, or one of its variants' keys. */
  target: string;
  value: Buffer | string;
  ttlMs: number;
  tags: readonly Tag[];
  /** How the URL's responses vary, for a variant. */
  vary?: { names: readonly string[]; id: string };
  /** Redis's clock when producing the entry began (µs): it is discarded if one of its tags was invalidated since. */
  since?: string;
}

/** The Redis side of one cache. */
export interface CacheStore {
  readonly keys: CacheKeys;
  readonly redis: () => RedisClient;
  readonly call: RedisCaller;
  readonly logger: Logger;
  /** Reports to `onEvent`; `undefined` without one. */
  readonly emit: Emit | undefined;
  readonly timeout: number;
  readonly ttl: number;
  readonly localCopies: LocalCopies;
  /**
   * The response stored at `base` that fits `req` (its variant, when the URL's responses vary): one round trip when
   * this process knows how the URL varies, two the first time it learns it.
   */
  readResponse(base: string, req: Request): Promise<ResponseRead>;
  /** The JSON stored for a value, and Redis's clock at the read. */
  readValue(key: string): Promise<{ json: string | undefined; since: string }>;
  /**
   * Stores an entry with its tags in one atomic step (on Redis Cluster, or behind a proxy that refuses keys of
   * several slots: tag sets first, then the entry, then the tags checked again), unless one of its tags was
   * invalidated after `since`. Resolves `false` when it was discarded.
   */
  store(request: StoreRequest): Promise<boolean>;
  /** Notes how a URL's responses vary (so that its next HIT is one round trip). */
  rememberVary(base: string, names: string[]): void;
}

/** Creates the Redis side of a cache (see {@link CacheStore}). */
export function createCacheStore(config: z.output<typeof cacheSchema>): CacheStore {
  const { logger, emit, redis, call } = factoryParts(
    config,
    'cache',
    'cache could not use Redis (down, slow or refusing), bypassing it',
  );
  const keys = cacheKeys(config.prefix);
  const localCopies = new LocalCopies(config.localBytes);

  /** The request header names each URL's responses vary on, as last seen here (so a HIT is one round trip). */
  const knownVary = new Map<string, string[]>();
  const rememberVary = (base: string, names: string[]) => {
    if (knownVary.size >= 10_000 && !knownVary.has(base)) knownVary.delete(knownVary.keys().next().value as string);
    knownVary.set(base, names);
  };

  /** The client's ioredis `keyPrefix`, which its commands add to every key (scripts see keys with it). */
  const clientPrefix = () => (redis() as { options?: { keyPrefix?: string } }).options?.keyPrefix ?? '';

  /** One read of `target` (see `readScript`): the entry, a vary marker's names, or nothing; and the clock. */
  async function readOnce(
    base: string,
    target: string,
  ): Promise<{ read: StoredResponse | string[] | undefined; since: string }> {
    const local = localCopies.get(target);
    const id = target === base ? '' : target.slice(target.lastIndexOf(':v:') + 3);
    const [reply, micros] = (await call.run(readScript, [base, target], [local?.version ?? '', id])) as [
      unknown,
      number,
    ];
    const since = String(micros);
    if (reply === 1 && local) return { read: local, since };
    if (!Buffer.isBuffer(reply)) {
      localCopies.delete(target);
      return { read: undefined, since };
    }
    const names = decodeVaryMarker(reply);
    if (names) return { read: names, since };
    const entry = decodeResponse(reply);
    if (entry) localCopies.set(target, entry);
    else localCopies.delete(target);
    return { read: entry, since };
  }

  async function readResponse(base: string, req: Request): Promise<ResponseRead> {
    const names = knownVary.get(base);
    const target = names?.length ? keys.variant(base, variantId(req, names)) : base;
    const first = await readOnce(base, target);
    if (first.read === undefined) return { since: first.since };
    if (!Array.isArray(first.read)) return { found: { entry: first.read, key: target }, since: first.since };
    rememberVary(base, first.read);
    const variant = first.read.length ? keys.variant(base, variantId(req, first.read)) : base;
    if (variant === target) return { since: first.since };
    const again = await readOnce(base, variant);
    const found = again.read && !Array.isArray(again.read) ? { entry: again.read, key: variant } : undefined;
    return { found, since: first.since };
  }

  async function readValue(key: string): Promise<{ json: string | undefined; since: string }> {
    const [value, micros] = (await call.run(readValueScript, [keys.value(key)], [])) as [string | 0, number];
    return { json: typeof value === 'string' ? value : undefined, since: String(micros) };
  }

  async function store(request: StoreRequest): Promise<boolean> {
    const { base, target, value, ttlMs, tags, vary } = request;
    const since = request.since ?? '';
    const args = [value as string, ttlMs, vary ? vary.names.join(',') : '', vary?.id ?? '', maxVariants];
    const guard = (margin: number) => [since, margin, longestProduction];
    if (!needsOneSlot(redis())) {
      const tagKeys = tags.flatMap((tag) => [keys.tagSet(tag), keys.tombstone(tag)]);
      try {
        return (await call.run(storeScript, [base, target, ...tagKeys], [...args, ...guard(0)])) === 1;
      } catch (error) {
        if (!isCrossSlot(error)) throw error;
        markRefusesCrossSlot(redis());
      }
    }
    const margin = clusterClockMargin;
    const addTags = () =>
      Promise.all(
        tags.map((tag) =>
          call.run(
            addToTagScript,
            [keys.tagSet(tag), keys.tombstone(tag)],
            [clientPrefix() + target, ttlMs, ...guard(margin)],
          ),
        ),
      );
    if ((await addTags()).some((reply) => reply !== 1)) return false;
    try {
      if ((await call.run(storeScript, [base, target], [...args, ...guard(margin)])) !== 1) return false;
    } catch (error) {
      // Failed or timed out, the entry may still land (a slow node): a delete queued behind it on its connection
      // takes it away again, as its tags may be invalidated meanwhile without it.
      localCopies.delete(target);
      call((r) => r.del(target)).catch(() => {});
      throw error;
    }
    if (tags.length === 0) return true;
    // An invalidation between the tag sets and the entry removed its membership: a plain store tags it again (it
    // is newer than that invalidation, and the next one must reach it); a production is checked below.
    if (since === '') {
      await addTags();
      return true;
    }
    // An invalidation may have begun between the tag sets and the entry: the entry is then deleted again, as it is
    // when that cannot be known (the check failed: a node is down).
    let invalidated = true;
    try {
      const tombstones = await Promise.all(tags.map((tag) => call((r) => r.get(keys.tombstone(tag)))));
      invalidated = !tombstones.every((gone) => gone === null || Number(gone) + margin < Number(since));
    } finally {
      if (invalidated) {
        localCopies.delete(target);
        await call((r) => r.del(target)).catch(() => {});
      }
    }
    return !invalidated;
  }

  return {
    keys,
    redis,
    call,
    logger,
    emit,
    timeout: config.timeout,
    ttl: config.ttl,
    localCopies,
    readResponse,
    readValue,
    store,
    rememberVary,
  };
}
