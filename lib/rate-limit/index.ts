import { createHash } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { lazyRedis } from '../connection.js';
import { keyspace, nameArgument } from '../keys.js';
import { OutageReporter, resolveLogger } from '../logger.js';
import { parseOptions } from '../options.js';
import { boundedCaller } from '../redis/bounded.js';
import { BlockCache } from './block-cache.js';
import { clientForIp } from './client-ip.js';
import { defaultClientKey } from './client-key.js';
import { retryAfterSeconds, setRateLimitHeaders } from './headers.js';
import { type RateLimitInfo, type RateLimitOptions, rateLimitSchema } from './options.js';
import { algorithms } from './scripts.js';

export type { RateLimitInfo, RateLimitOptions } from './options.js';

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
  /** Forgets `client`'s count (and this instance's memory of blocking it). */
  reset(client: string | number): Promise<void>;
  /** `client`'s current state, shaped like `req.rateLimit`, or `null` when it has no count. */
  get(client: string | number): Promise<RateLimitInfo | null>;
}

/** Clients longer than this are stored under a hash, so an absurd key cannot bloat Redis. */
const maxClientLength = 200;

type HitReply = [allowed: number, used: number, resetMs: number, exists: number];

/** One counted request: its client, that client's Redis key, and the limit and cost that apply. */
interface Hit {
  clientKey: string;
  key: string;
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
  const scripts = algorithms[config.algorithm];
  const storageKeyOf = keyspace(config.prefix);
  const clientKeyOf = config.key ?? defaultClientKey(config.ipv6Subnet, logger);
  const blocks = config.blockCache ? new BlockCache() : undefined;
  const windowMs = config.window;
  const windowSeconds = Math.ceil(windowMs / 1000);
  const refundOn = config.skipFailedRequests || config.skipSuccessfulRequests;
  const lastLimits = typeof config.limit === 'function' ? new Map<string, number>() : undefined;
  const call = boundedCaller({
    client: lazyRedis(config.redis),
    timeoutMs: config.timeout,
    outage,
    logger,
    batch: config.batch,
  });

  /** `reset()` / `get()` accept an address in any notation when clients are keyed by IP. */
  const normaliseClient = (client: unknown, method: string) => {
    const name = nameArgument(client, `rateLimit ${method}: client`, true);
    return config.key ? name : clientForIp(name, config.ipv6Subnet);
  };

  function storageKey(clientKey: string): string {
    return storageKeyOf(
      clientKey.length > maxClientLength ? `sha256-${createHash('sha256').update(clientKey).digest('hex')}` : clientKey,
    );
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

  function refundWhenDone(res: Response, key: string, cost: number, limit: number) {
    let settled = false;
    const settle = (failed: boolean) => {
      if (settled) return;
      settled = true;
      if (failed ? !config.skipFailedRequests : !config.skipSuccessfulRequests) return;
      call.run(scripts.refund, [key], [cost, windowMs, limit]).catch(() => {});
    };
    res.once('finish', () => settle(res.statusCode >= 400));
    res.once('close', () => settle(true));
  }

  function resolveNumber(value: unknown, option: 'limit' | 'cost'): number {
    if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
    throw new TypeError(`rateLimit: the '${option}' function returned ${String(value)} (expected an integer ≥ 0)`);
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
    const key = storageKey(clientKey);
    const limit = typeof config.limit === 'number' ? config.limit : resolveNumber(await config.limit(req), 'limit');
    const cost = typeof config.cost === 'number' ? config.cost : resolveNumber(await config.cost(req), 'cost');
    if (lastLimits) {
      if (lastLimits.size >= 10_000) lastLimits.clear();
      lastLimits.set(key, limit);
    }
    return { clientKey, key, limit, cost };
  }

  /**
   * Counts one request and answers or passes it. Synchronous up to the Redis call, which answers through a
   * callback: a counted request costs no promise (with a fixed `message`), and a blocked client no Redis call.
   */
  function count(req: Request, res: Response, next: NextFunction, hit: Hit): void | Promise<void> {
    const { clientKey, key, limit, cost } = hit;
    const now = Date.now();
    const blocked = blocks?.get(key, now);
    if (blocked) {
      req.rateLimit = blocked;
      setRateLimitHeaders(res, config.headers, blocked, windowSeconds, now);
      return respondLimited(req, res, next, blocked, now);
    }
    const args = cost === fixedCost && limit === fixedLimit ? fixedHitArgs : [cost, windowMs, limit, 0];
    call.script(scripts.hit, [key], args, (error, reply) => {
      try {
        if (error) {
          if (config.onRedisError === 'allow') return next();
          res.setHeader('Retry-After', '1');
          res.status(503).send('Service Unavailable: the rate limiter cannot reach its store.');
          return;
        }
        const answeredAt = Date.now();
        const info = toInfo(reply as HitReply, limit, clientKey, answeredAt);
        req.rateLimit = info;
        setRateLimitHeaders(res, config.headers, info, windowSeconds, answeredAt);
        if ((reply as HitReply)[0] !== 1) {
          blocks?.set(key, info);
          respondLimited(req, res, next, info, answeredAt)?.catch(next);
          return;
        }
        if (refundOn && cost > 0) refundWhenDone(res, key, cost, limit);
        next();
      } catch (thrown) {
        next(thrown);
      }
    });
  }

  /** With the default key, limit and cost there is nothing to await before the Redis call. */
  const inputsAreFixed =
    !config.skip && !config.key && typeof config.limit === 'number' && typeof config.cost === 'number';
  const fixedLimit = config.limit as number;
  const fixedCost = config.cost as number;
  /** The hit script's arguments with the configured cost and limit, built once (see the batcher's shared arguments). */
  const fixedHitArgs = [fixedCost, windowMs, fixedLimit, 0] as const;

  const middleware = function rateLimitMiddleware(req: Request, res: Response, next: NextFunction): void {
    try {
      if (inputsAreFixed) {
        const clientKey = clientKeyOf(req) as string;
        count(req, res, next, { clientKey, key: storageKey(clientKey), limit: fixedLimit, cost: fixedCost })?.catch(
          next,
        );
        return;
      }
      resolveHit(req, res)
        .then((hit) => (hit ? count(req, res, next, hit) : next()))
        .catch(next);
    } catch (error) {
      next(error);
    }
  } as RateLimitMiddleware;

  middleware.reset = async function reset(clientKey: string | number): Promise<void> {
    const key = storageKey(normaliseClient(clientKey, 'reset()'));
    blocks?.delete(key);
    await call((redis) => redis.del(key));
  };

  middleware.get = async function get(clientKey: string | number): Promise<RateLimitInfo | null> {
    const client = normaliseClient(clientKey, 'get()');
    const key = storageKey(client);
    const limit = typeof config.limit === 'number' ? config.limit : (lastLimits?.get(key) ?? Number.NaN);
    const reply = (await call.run(scripts.hit, [key], [0, windowMs, limit, 1])) as HitReply;
    if (reply[3] !== 1) return null;
    return toInfo(reply, limit, client, Date.now());
  };

  return middleware;
}
