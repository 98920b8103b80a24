import { createHash } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { lazyRedis } from '../connection.js';
import { now as clock, eventEmitter, reportingFailure, reportRedisError, since } from '../events.js';
import { isBackground } from '../http/marks.js';
import { hashTag, keyspace, nameArgument } from '../keys.js';
import { OutageReporter, resolveLogger } from '../logger.js';
import { parseOptions } from '../options.js';
import { boundedCaller } from '../redis/bounded.js';
import { RedisScript } from '../redis/script.js';
import { subscribe } from '../redis/subscriber.js';
import { BlockCache } from './block-cache.js';
import { clientForIp } from './client-ip.js';
import { defaultClientKey } from './client-key.js';
import { retryAfterSeconds, setRateLimitHeaders } from './headers.js';
import {
  type RateLimitInfo,
  type RateLimitOptions,
  type RateLimitRule,
  type RateLimitRuleInfo,
  rateLimitSchema,
} from './options.js';
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

/** Clients longer than this are stored under a hash, so an absurd key cannot bloat Redis. */
const maxClientLength = 200;

type HitReply = [allowed: number, used: number, resetMs: number, exists: number];

/** One counted request: its client, that client's Redis keys (one per rule), and the limit and cost that apply. */
interface Hit {
  clientKey: string;
  keys: string[];
  limit: number;
  cost: number;
}

/** A fixed response body: its text and byte length, computed once. */
function fixedMessage(type: string, text: string) {
  return { type, text, length: Buffer.byteLength(text) };
}

/**
 * Limits each client to `limit` requests per `window`, counted in Redis: `app.use(rateLimit())` allows
 * 100 requests per 15 minutes per client IP. Exact under concurrency (one atomic script per counted request),
 * and bounded when Redis is slow or down (`timeout`, then `onRedisError`).
 */
export function rateLimit(options?: RateLimitOptions): RateLimitMiddleware {
  const config = parseOptions('rateLimit', rateLimitSchema, options);
  const logger = resolveLogger(config.logger);
  const outage = new OutageReporter(
    logger,
    'rateLimit could not use Redis (down, slow or refusing), applying onRedisError',
  );
  const emit = eventEmitter(config.onEvent, logger);
  const scripts = algorithms[config.algorithm];
  const rules: RateLimitRule[] | undefined = Array.isArray(config.limit) ? config.limit : undefined;
  const rulesScript = rules
    ? new RedisScript(`${config.algorithm} (${rules.length} rules)`, scripts.rules, { keys: rules.length })
    : undefined;
  const storageKeyOf = keyspace(config.prefix);
  const clientKeyOf = config.key ?? defaultClientKey(config.ipv6Subnet, logger);
  const blocks = config.blockCache ? new BlockCache() : undefined;
  const windowMs = config.window;
  const windowSeconds = Math.ceil(windowMs / 1000);
  const refundOn = config.skipFailedRequests || config.skipSuccessfulRequests;
  const limitFunction = typeof config.limit === 'function' ? config.limit : undefined;
  /** With a function `limit`: the limit last resolved per client key (for `get()`), and for any client. */
  const lastLimits = limitFunction ? new Map<string, number>() : undefined;
  let lastLimit: number | undefined;
  const redis = lazyRedis(config.redis);
  const call = boundedCaller({ client: redis, timeoutMs: config.timeout, outage, logger, batch: config.batch });
  /** Where `reset()` tells every instance to drop its memory of blocking a client (its first key). */
  const resetChannel = `${config.prefix}:reset`;
  let listeningForResets = false;

  /** `reset()` / `get()` accept an address in any notation when clients are keyed by IP. */
  const normaliseClient = (client: unknown, method: string) => {
    const name = nameArgument(client, `rateLimit ${method}: client`, true);
    return config.key ? name : clientForIp(name, config.ipv6Subnet);
  };

  /** A client's Redis keys: `rate:<client>`, or with several rules `rate:{<client>}:<rule name>`, one Cluster slot. */
  function keysOf(clientKey: string): string[] {
    const stored =
      clientKey.length > maxClientLength ? `sha256-${createHash('sha256').update(clientKey).digest('hex')}` : clientKey;
    if (!rules) return [storageKeyOf(stored)];
    const tagged = hashTag(stored);
    return rules.map((rule) => storageKeyOf(tagged, rule.name));
  }

  function toInfo(reply: HitReply, limit: number, clientKey: string, now: number): RateLimitInfo {
    const used = Number(reply[1]);
    return {
      limit,
      used,
      remaining: Math.max(0, limit - used),
      resetAt: new Date(now + Number(reply[2])),
      key: clientKey,
    };
  }

  /**
   * The state of every rule, from a rules script's reply, with the binding rule's in the top-level fields: when the
   * request was blocked, of the rules it does not fit (`cost` more would exceed them), the one that admits it last;
   * otherwise the one with the fewest requests left (then the one that resets last).
   */
  function toRulesInfo(reply: number[], clientKey: string, now: number, cost: number): RateLimitInfo {
    const allowed = Number(reply[0]) === 1;
    const states = (rules as RateLimitRule[]).map((rule, i): RateLimitRuleInfo => {
      const used = Number(reply[3 * i + 1]);
      return {
        name: rule.name,
        limit: rule.limit,
        window: rule.window,
        used,
        remaining: Math.max(0, rule.limit - used),
        resetAt: new Date(now + Number(reply[3 * i + 2])),
      };
    });
    const blocking = allowed ? [] : states.filter((state) => state.used + cost > state.limit);
    const candidates = blocking.length ? blocking : states;
    let binding = candidates[0];
    for (const state of candidates) {
      const tighter = allowed
        ? state.remaining < binding.remaining ||
          (state.remaining === binding.remaining && state.resetAt > binding.resetAt)
        : state.resetAt > binding.resetAt;
      if (tighter) binding = state;
    }
    const { limit, used, remaining, resetAt } = binding;
    return { limit, used, remaining, resetAt, key: clientKey, rules: states };
  }

  /** A fixed `message`, serialised once: a flood of limited requests should cost as little as possible. */
  const fixedBody =
    typeof config.message === 'function'
      ? undefined
      : typeof config.message === 'string'
        ? fixedMessage('text/html; charset=utf-8', config.message)
        : fixedMessage('application/json; charset=utf-8', JSON.stringify(config.message));

  /** Answers a limited request: `handler`, or `statusCode` with `message`. Synchronous for a fixed message. */
  function respondLimited(
    req: Request,
    res: Response,
    next: NextFunction,
    info: RateLimitInfo,
    now: number,
  ): void | Promise<void> {
    res.setHeader('Retry-After', String(retryAfterSeconds(info, now)));
    if (config.handler) {
      const handled = config.handler(req, res, next, info);
      // An async handler that rejects reaches Express' error handling, not an unhandled rejection.
      if (handled instanceof Promise) return handled.then(() => {});
      return;
    }
    if (fixedBody) {
      res.statusCode = config.statusCode;
      res.setHeader('Content-Type', fixedBody.type);
      res.setHeader('Content-Length', fixedBody.length);
      res.end(req.method === 'HEAD' ? undefined : fixedBody.text);
      return;
    }
    return respondWithMessage(req, res, info);
  }

  async function respondWithMessage(req: Request, res: Response, info: RateLimitInfo): Promise<void> {
    const body = await (config.message as (req: Request, res: Response, info: RateLimitInfo) => unknown)(
      req,
      res,
      info,
    );
    if (res.headersSent) return;
    res.statusCode = config.statusCode;
    if (typeof body === 'string') res.send(body);
    else res.json(body);
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
  function refundWhenDone(res: Response, hit: Hit, reply: number[], answeredAt: number) {
    let settled = false;
    const settle = (failed: boolean) => {
      if (settled) return;
      settled = true;
      if (failed ? !config.skipFailedRequests : !config.skipSuccessfulRequests) return;
      const elapsed = Date.now() - answeredAt;
      const args: number[] = [hit.cost];
      if (rules) {
        rules.forEach((rule, i) => void args.push(rule.window, rule.limit, Number(reply[3 * i + 2]) - elapsed + 1));
      } else {
        args.push(windowMs, hit.limit, Number(reply[2]) - elapsed + 1);
      }
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
    const keys = keysOf(clientKey);
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
    const script = rulesScript ?? scripts.hit;
    const args = cost === fixedCost && limit === fixedLimit ? fixedHitArgs : hitArgs(cost, limit);
    const started = emit ? clock() : 0;
    call.script(script, keys, args, (error, reply) => {
      try {
        if (error) {
          reportRedisError(
            emit,
            'rateLimit',
            config.onRedisError === 'allow' ? 'allowed' : 'denied',
            'hit',
            error,
            started,
          );
          if (config.onRedisError === 'allow') return next();
          res.setHeader('Retry-After', '1');
          res.status(503).send('Service Unavailable: the rate limiter cannot reach its store.');
          return;
        }
        const answeredAt = Date.now();
        const info = rules
          ? toRulesInfo(reply as number[], clientKey, answeredAt, cost)
          : toInfo(reply as HitReply, limit, clientKey, answeredAt);
        req.rateLimit = info;
        setRateLimitHeaders(res, config.headers, info, windowSeconds, answeredAt);
        if ((reply as number[])[0] !== 1) {
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
        if (refundOn && cost > 0) refundWhenDone(res, hit, reply as number[], answeredAt);
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
        count(req, res, next, { clientKey, keys: keysOf(clientKey), limit: fixedLimit, cost: fixedCost })?.catch(next);
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
    const keys = keysOf(normaliseClient(client, 'reset()'));
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
    const keys = keysOf(clientKey);
    let limit = fixedLimit;
    if (limitFunction) {
      limit = req ? await limitFor(req) : (lastLimits?.get(keys[0]) ?? lastLimit ?? 0);
    }
    const reply = (await reportingFailure(emit, 'rateLimit', 'get', () =>
      call.run(rulesScript ?? scripts.hit, keys, hitArgs(0, limit, true)),
    )) as number[];
    const now = Date.now();
    if (rules) {
      const exists = rules.some((_, i) => Number(reply[3 * i + 3]) === 1);
      return exists ? toRulesInfo(reply, clientKey, now, 0) : null;
    }
    if (reply[3] !== 1) return null;
    return toInfo(reply as HitReply, limit, clientKey, now);
  };

  return middleware;
}
