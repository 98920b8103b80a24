// `new RateLimitStore({ redis })`: an express-rate-limit Store on redisware's fixed-window script, so an
// express-rate-limit app gets one atomic round trip per request and no key without an expiry, options unchanged.
import { z } from 'zod';
import { commonMiddlewareOptions, maxDurationMs, parseOptions } from '../options.js';
import { fixedWindowScript } from '../rate-limit/scripts.js';
import type { RedisCaller } from '../redis/bounded.js';
import { RedisScript } from '../redis/script.js';
import { factoryParts } from '../setup.js';
import { perKey, scanPrefix } from './scan.js';

/** Options of `new RateLimitStore()`. */
export const rateLimitStoreSchema = z.strictObject({
  ...commonMiddlewareOptions,
  /** Key prefix: `rl:<client>`, as rate-limit-redis (whose keys it reads and writes alike). @default 'rl:' */
  prefix: z.string().min(1).default('rl:'),
  /**
   * Restart the window's expiry on every hit, as rate-limit-redis' option of the same name: a client is forgotten
   * `windowMs` after its last hit rather than after its first. @default false
   */
  resetExpiryOnChange: z.boolean().default(false),
});

export type RateLimitStoreOptions = z.input<typeof rateLimitStoreSchema>;

/** What express-rate-limit's Store methods return for a client. */
export interface ClientRateLimitInfo {
  totalHits: number;
  resetTime: Date | undefined;
}

/** Takes one hit back, never below zero and never creating a key (so never one without an expiry). */
const decrementScript = new RedisScript(
  'rate-limit-store decrement',
  `
local used = tonumber(redis.pcall('GET', KEYS[1]))
if used and used > 0 and used % 1 == 0 then redis.call('DECR', KEYS[1]) end
return 0
`,
  { keys: 1 },
);

/**
 * A hit that restarts the window's expiry (`resetExpiryOnChange`): INCRBY and PEXPIRE, atomically. A value INCRBY
 * cannot read (another type, no whole number), a count below zero or one without an expiry is replaced by a fresh
 * count, as the hit script of `rateLimit()` does. Replies as that script: `{ allowed, used, ms until reset, exists, repaired }`.
 */
const slidingExpiryScript = new RedisScript(
  'rate-limit-store sliding expiry',
  `
local cost, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local repaired = 0
local used = redis.pcall('INCRBY', KEYS[1], cost)
if type(used) ~= 'table' and used >= cost then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > window or (ttl < 0 and used > cost) then used = -1 end
end
if type(used) == 'table' or used < cost then
  -- Unreadable, below zero, or an old count no window of this store bounds (another store's): a fresh count.
  redis.call('DEL', KEYS[1])
  used = redis.call('INCRBY', KEYS[1], cost)
  repaired = 1
end
redis.call('PEXPIRE', KEYS[1], window)
return {1, used, window, 1, repaired}
`,
  { keys: 1 },
);

/** No limit: express-rate-limit compares the count with its own `limit`. */
const uncapped = Number.MAX_SAFE_INTEGER;

/**
 * An express-rate-limit `Store`: `rateLimit({ windowMs, limit, store: new RateLimitStore({ redis }) })`. Each
 * `increment` is one EVALSHA (INCRBY and, for a new window, PEXPIRE, atomically; batched with the other calls of its
 * event-loop turn), the window starts at the client's first hit, and the time comes from Redis.
 */
export class RateLimitStore {
  readonly prefix: string;
  /** Counts are shared by every instance that uses the same Redis (express-rate-limit checks this). */
  readonly localKeys = false;
  private windowMs = 60_000;
  private readonly call: RedisCaller;
  private readonly scanCount = 100;
  private readonly resetExpiryOnChange: boolean;

  constructor(options: RateLimitStoreOptions = {}) {
    const config = parseOptions('RateLimitStore', rateLimitStoreSchema, options);
    this.prefix = config.prefix;
    this.resetExpiryOnChange = config.resetExpiryOnChange;
    this.call = factoryParts(config, 'rateLimit', 'RateLimitStore could not use Redis (down, slow or refusing)').call;
  }

  /**
   * Called by express-rate-limit with its options: the window is its `windowMs`, in whole ms (a fraction would be
   * refused by PEXPIRE after the count was taken), between 1 ms and 1000 years.
   */
  init(options: { windowMs: number }): void {
    const windowMs = Number(options?.windowMs);
    if (!Number.isFinite(windowMs) || windowMs <= 0) {
      throw new TypeError(`RateLimitStore: windowMs is invalid: ${String(options?.windowMs)} (expected ms > 0)`);
    }
    this.windowMs = Math.min(Math.ceil(windowMs), maxDurationMs);
  }

  private toInfo(reply: unknown): ClientRateLimitInfo {
    const [, used, resetMs] = reply as [number, number, number, number];
    return { totalHits: Number(used), resetTime: new Date(Date.now() + Number(resetMs)) };
  }

  /** Counts one hit: the client's hits in its window and when the window ends. */
  async increment(key: string): Promise<ClientRateLimitInfo> {
    const script = this.resetExpiryOnChange ? slidingExpiryScript : fixedWindowScript;
    const reply = await this.call.run(script, [this.prefix + key], [1, this.windowMs, uncapped, '0']);
    return this.toInfo(reply);
  }

  /** Takes one hit back (express-rate-limit's `skipSuccessfulRequests` / `skipFailedRequests`). */
  async decrement(key: string): Promise<void> {
    await this.call.run(decrementScript, [this.prefix + key], []);
  }

  /** The client's hits and window end, or `undefined` when it has none. */
  async get(key: string): Promise<ClientRateLimitInfo | undefined> {
    const reply = await this.call.run(fixedWindowScript, [this.prefix + key], [0, this.windowMs, uncapped, '1']);
    return (reply as number[])[3] === 1 ? this.toInfo(reply) : undefined;
  }

  /** Forgets the client's hits. */
  async resetKey(key: string): Promise<void> {
    await this.call((redis) => redis.del(this.prefix + key));
  }

  /** Forgets every client's hits under the prefix (SCAN, every master on a Cluster; never KEYS or FLUSHDB). */
  async resetAll(): Promise<void> {
    for await (const { node, keys } of scanPrefix(this.call, this.prefix, this.scanCount)) {
      await perKey(this.call, node, keys, 'unlink');
    }
  }
}
