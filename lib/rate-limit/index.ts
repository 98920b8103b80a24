import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { now as clock, reportingFailure, reportRedisError, since } from '../events.js';
import { isBackground } from '../http/marks.js';
import { nameArgument } from '../keys.js';
import { parseOptions } from '../options.js';
import { RedisScript } from '../redis/script.js';
import { subscribe } from '../redis/subscriber.js';
import { factoryParts } from '../setup.js';
import { BlockCache } from './block-cache.js';
import { clientForIp } from './client-ip.js';
import { defaultClientKey } from './client-key.js';
import { retryAfterSeconds, setRateLimitHeaders } from './headers.js';
import { callerLocation, claimNamespace, describeLimiter, firstCount, limiterKeys } from './namespace.js';
import { type RateLimitInfo, type RateLimitOptions, type RateLimitRule, rateLimitSchema } from './options.js';
import { decodeHitReply, type HitOutcome, rulesInfo, singleRuleInfo } from './outcome.js';
import { limitedResponder } from './respond.js';
import { algorithms, resetScript } from './scripts.js';

export type { RateLimitInfo, RateLimitOptions, RateLimitRuleInfo } from './options.js';

declare global {
  namespace Express {
    interface Request {
      /** Set by `rateLimit()` for every counted request. */
      rateLimit?: RateLimitInfo;
    }
  }
}

/** The middleware returned by {@link rateLimit}, with helpers to inspect and clear a client's count. */
export interface RateLimitMiddleware extends RequestHandler {
  /** Forgets `client`'s count, and every instance's memory of blocking it (told through Redis pub/sub). */
  reset(client: string | number): Promise<void>;
  /**
   * `client`'s current state, shaped like `req.rateLimit`, or `null` when it has no count. With a function `limit`,
   * pass a request of that client for its exact limit (without one: the limit this instance last resolved for it).
   */
  get(client: string | number, req?: Request): Promise<RateLimitInfo | null>;
}

/** One counted request: its client, that client's Redis keys (one per rule), and the limit and cost that apply. */
interface Hit {
  clientKey: string;
  keys: string[];
  limit: number;
  cost: number;
}

/**
 * Limits each client to `limit` requests per `window`, counted in Redis: `app.use(rateLimit())` allows
 * 100 requests per 15 minutes per client IP. Exact under concurrency (one atomic script per counted request),
 * and bounded when Redis is slow or down (`timeout`, then `onRedisError`).
 */
export function rateLimit(options?: RateLimitOptions): RateLimitMiddleware {
  const config = parseOptions('rateLimit', rateLimitSchema, options);
  const { logger, emit, redis, call } = factoryParts(
    config,
    'rateLimit',
    'rateLimit could not use Redis (down, slow or refusing), applying onRedisError',
  );
  const scripts = algorithms[config.algorithm];
  const rules: RateLimitRule[] | undefined = Array.isArray(config.limit) ? config.limit : undefined;
  const ruleCount = rules?.length ?? 1;
  const rulesScript = rules
    ? new RedisScript(`${config.algorithm} (${rules.length} rules)`, scripts.rules, { keys: rules.length })
    : undefined;
  const { namespace, shared } = claimNamespace(
    config,
    options?.prefix !== undefined,
    describeLimiter(config, callerLocation()),
    logger,
  );
  const counterKeys = limiterKeys(
    config.prefix,
    namespace,
    rules?.map((rule) => rule.name),
  );
  const clientKeyOf = config.key ?? defaultClientKey(config.ipv6Subnet, logger);
  const blocks = config.blockCache ? new BlockCache() : undefined;
  const windowMs = config.window;
  const windowSeconds = Math.ceil(windowMs / 1000);
  const refundOn = config.skipFailedRequests || config.skipSuccessfulRequests;
  const limitFunction = typeof config.limit === 'function' ? config.limit : undefined;
  /** With a function `limit`: the limit last resolved per client key (for `get()`), and for any client. */
  const lastLimits = limitFunction ? new Map<string, number>() : undefined;
  let lastLimit: number | undefined;
  const respondLimited = limitedResponder(config);
  /** Where `reset()` tells every instance to drop its memory of blocking a client (its first key). */
  const resetChannel = `${config.prefix}:reset`;
  let listeningForResets = false;
  let warnedRepair = false;

  /** `reset()` / `get()` accept an address in any notation when clients are keyed by IP. */
  const normaliseClient = (client: unknown, method: string) => {
    const name = nameArgument(client, `rateLimit ${method}: client`, true);
    // An address in any notation is the client its requests count as; anything else (the `/56` network form
    // `req.rateLimit.key` holds, 'unknown') is taken as the client key it already is.
    return config.key ? name : (clientForIp(name, config.ipv6Subnet) ?? name);
  };

  /** The request's state from a hit script's reply. */
  function infoOf(outcome: HitOutcome, hit: Pick<Hit, 'clientKey' | 'limit' | 'cost'>, now: number): RateLimitInfo {
    return rules
      ? rulesInfo(outcome, rules, hit.clientKey, now, hit.cost)
      : singleRuleInfo(outcome, hit.limit, hit.clientKey, now);
  }

  /** A hit script replaced a malformed value under the client's keys: an event each time, one log line. */
  function reportRepair(clientKey: string): void {
    emit?.({ type: 'redis.repaired', source: 'rateLimit', key: clientKey });
    if (warnedRepair) return;
    warnedRepair = true;
    logger.warn(
      `redisware rateLimit: a value of the wrong type or shape under '${config.prefix}:${namespace}:…' was replaced and counting went on (another program or version writes under this prefix?). Later ones are reported as 'redis.repaired' events only.`,
    );
  }

  /**
   * From its first counted request on, an instance with a block cache listens for `reset()` of any instance, so that
   * it is subscribed well before it first blocks someone (a message sent before is missed; see `subscribe`).
   */
  function listenForResets(): void {
    listeningForResets = true;
    const cache = blocks as BlockCache;
    try {
      subscribe(
        redis(),
        resetChannel,
        (blocked) => cache.delete(blocked),
        (error) => logger.warn(`redisware rateLimit: cannot listen for reset() of other instances: ${error.message}`),
      );
    } catch (error) {
      logger.warn(`redisware rateLimit: cannot listen for reset(): ${(error as Error).message}`);
    }
  }

  /**
   * Refunds the request (skipFailedRequests / skipSuccessfulRequests) once it is known how it ended, in the windows
   * that counted it only: each rule's time left at the count, less the time since, bounds the window it may touch.
   */
  function refundWhenDone(res: Response, hit: Hit, outcome: HitOutcome, answeredAt: number) {
    let settled = false;
    const settle = (failed: boolean) => {
      if (settled) return;
      settled = true;
      if (failed ? !config.skipFailedRequests : !config.skipSuccessfulRequests) return;
      const elapsed = Date.now() - answeredAt;
      const args: number[] = [hit.cost];
      const windows = rules ?? [{ window: windowMs, limit: hit.limit }];
      windows.forEach((rule, i) => void args.push(rule.window, rule.limit, outcome.rules[i].resetMs - elapsed + 1));
      call.run(scripts.refund, hit.keys, args).catch(() => {});
    };
    res.once('finish', () => settle(res.statusCode >= 400));
    res.once('close', () => settle(true));
  }

  function resolveNumber(value: unknown, option: 'limit' | 'cost'): number {
    if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
    throw new TypeError(`rateLimit: the '${option}' function returned ${String(value)} (expected an integer ≥ 0)`);
  }

  /** The limit for `req` (0 for several rules: each has its own). */
  async function limitFor(req: Request): Promise<number> {
    if (typeof config.limit === 'number') return config.limit;
    if (limitFunction) return resolveNumber(await limitFunction(req), 'limit');
    return 0;
  }

  /** Resolves `skip`, `key`, `limit` and `cost` (any of which may be async); `undefined` when skipped. */
  async function resolveHit(req: Request, res: Response): Promise<Hit | undefined> {
    if (config.skip && (await config.skip(req, res))) return undefined;
    const rawKey = await clientKeyOf(req);
    if ((typeof rawKey !== 'string' || rawKey === '') && typeof rawKey !== 'number') {
      throw new TypeError(
        `rateLimit: the 'key' function returned ${rawKey === '' ? 'an empty string' : String(rawKey)} (expected a non-empty string)`,
      );
    }
    const clientKey = String(rawKey);
    const keys = counterKeys.of(clientKey);
    const limit = await limitFor(req);
    const cost = typeof config.cost === 'number' ? config.cost : resolveNumber(await config.cost(req), 'cost');
    if (lastLimits) {
      if (lastLimits.size >= 10_000) lastLimits.clear();
      lastLimits.set(keys[0], limit);
      lastLimit = limit;
    }
    return { clientKey, keys, limit, cost };
  }

  /**
   * Counts one request and answers or passes it. Synchronous up to the Redis call, which answers through a
   * callback: a counted request costs no promise (with a fixed `message`), and a blocked client no Redis call.
   */
  function count(req: Request, res: Response, next: NextFunction, hit: Hit): void | Promise<void> {
    const { clientKey, keys, limit, cost } = hit;
    if (shared.value && !firstCount(req, keys[0])) {
      next();
      return;
    }
    const now = Date.now();
    const blocked = blocks?.get(keys[0], now, limit, cost);
    if (blocked) {
      req.rateLimit = blocked;
      setRateLimitHeaders(res, config.headers, blocked, windowSeconds, now);
      emit?.({
        type: 'rateLimit.blocked',
        key: clientKey,
        limit: blocked.limit,
        used: blocked.used,
        retryAfter: retryAfterSeconds(blocked, now),
        fromMemory: true,
        durationMs: 0,
      });
      return respondLimited(req, res, next, blocked, now);
    }
    if (blocks && !listeningForResets) listenForResets();
    // A Redis known to be down is not asked: onRedisError applies at once.
    const down = call.unavailable();
    if (down) return withoutRedis(res, next, down, emit ? clock() : 0);
    const script = rulesScript ?? scripts.hit;
    const args = cost === fixedCost && limit === fixedLimit ? fixedHitArgs : hitArgs(cost, limit);
    const started = emit ? clock() : 0;
    call.script(script, keys, args, (error, reply) => {
      try {
        if (error) return withoutRedis(res, next, error, started);
        const answeredAt = Date.now();
        const outcome = decodeHitReply(reply, ruleCount);
        if (outcome.repaired) reportRepair(clientKey);
        const info = infoOf(outcome, hit, answeredAt);
        req.rateLimit = info;
        setRateLimitHeaders(res, config.headers, info, windowSeconds, answeredAt);
        if (!outcome.allowed) {
          blocks?.set(keys[0], info, cost);
          emit?.({
            type: 'rateLimit.blocked',
            key: clientKey,
            limit: info.limit,
            used: info.used,
            retryAfter: retryAfterSeconds(info, answeredAt),
            fromMemory: false,
            durationMs: since(started),
          });
          respondLimited(req, res, next, info, answeredAt)?.catch(next);
          return;
        }
        if (refundOn && cost > 0) refundWhenDone(res, hit, outcome, answeredAt);
        emit?.({
          type: 'rateLimit.allowed',
          key: clientKey,
          limit: info.limit,
          used: info.used,
          remaining: info.remaining,
          durationMs: since(started),
        });
        next();
      } catch (thrown) {
        next(thrown);
      }
    });
  }

  /** Redis failed (or is known to be down): `onRedisError` decides, and the failure is reported. */
  function withoutRedis(res: Response, next: NextFunction, error: unknown, started: number): void {
    const allow = config.onRedisError === 'allow';
    reportRedisError(emit, 'rateLimit', allow ? 'allowed' : 'denied', 'hit', error, emit ? started : undefined);
    if (allow) {
      next();
      return;
    }
    res.setHeader('Retry-After', '1');
    res.status(503).send('Service Unavailable: the rate limiter cannot reach its store.');
  }

  /** The hit script's arguments: one rule's (cost, window, limit, count), or the rules' (cost, count, windows and limits). */
  function hitArgs(cost: number, limit: number, look = false): (string | number)[] {
    if (!rules) return [cost, windowMs, limit, look ? 1 : 0];
    const args: number[] = [cost, look ? 1 : 0];
    for (const rule of rules) args.push(rule.window, rule.limit);
    return args;
  }

  /** With the default key, limit and cost there is nothing to await before the Redis call. */
  const inputsAreFixed = !config.skip && !config.key && !limitFunction && typeof config.cost === 'number';
  const fixedLimit = typeof config.limit === 'number' ? config.limit : 0;
  const fixedCost = typeof config.cost === 'number' ? config.cost : 1;
  /** The hit script's arguments with the configured cost and limit, built once (see the batcher's shared arguments). */
  const fixedHitArgs = hitArgs(fixedCost, fixedLimit);

  const middleware = function rateLimitMiddleware(req: Request, res: Response, next: NextFunction): void {
    try {
      // The response cache refreshing a stale entry in the background: no client asked, nothing to count.
      if (isBackground(req)) {
        next();
        return;
      }
      if (inputsAreFixed) {
        const clientKey = clientKeyOf(req) as string;
        count(req, res, next, {
          clientKey,
          keys: counterKeys.of(clientKey),
          limit: fixedLimit,
          cost: fixedCost,
        })?.catch(next);
        return;
      }
      resolveHit(req, res)
        .then((hit) => (hit ? count(req, res, next, hit) : next()))
        .catch(next);
    } catch (error) {
      next(error);
    }
  } as RateLimitMiddleware;

  let warnedPublish = false;
  middleware.reset = async function reset(client: string | number): Promise<void> {
    const keys = counterKeys.of(normaliseClient(client, 'reset()'));
    blocks?.delete(keys[0]);
    const refused = await reportingFailure(emit, 'rateLimit', 'reset', () =>
      call.run(resetScript, keys, [resetChannel, keys[0]]),
    );
    if (typeof refused === 'string' && !warnedPublish) {
      warnedPublish = true;
      logger.warn(
        `redisware rateLimit: reset() cleared the count, but could not tell other instances (${refused}); they answer from memory until the block ends. Allow the Redis user the channel '${resetChannel}'.`,
      );
    }
  };

  middleware.get = async function get(client: string | number, req?: Request): Promise<RateLimitInfo | null> {
    const clientKey = normaliseClient(client, 'get()');
    const keys = counterKeys.of(clientKey);
    let limit = fixedLimit;
    if (limitFunction) {
      limit = req ? await limitFor(req) : (lastLimits?.get(keys[0]) ?? lastLimit ?? 0);
    }
    const reply = await reportingFailure(emit, 'rateLimit', 'get', () =>
      call.run(rulesScript ?? scripts.hit, keys, hitArgs(0, limit, true)),
    );
    const outcome = decodeHitReply(reply, ruleCount);
    if (!outcome.rules.some((rule) => rule.exists)) return null;
    return infoOf(outcome, { clientKey, limit, cost: 0 }, Date.now());
  };

  return middleware;
}
