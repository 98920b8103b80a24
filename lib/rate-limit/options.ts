import type { NextFunction, Request, Response } from 'express';
import { z } from 'zod';
import { durationName } from '../duration.js';
import { commonMiddlewareOptions, fn, positiveDurationMs } from '../options.js';

/** One rule of a limiter with several (`limit: [{ limit, window }, …]`), as it stands for a client. */
export interface RateLimitRuleInfo {
  /** The rule's name in the `RateLimit` headers (`'1s'`, `'1d'`, or the `name` it was given). */
  name: string;
  limit: number;
  /** The rule's window in milliseconds. */
  window: number;
  used: number;
  remaining: number;
  /** When the rule's window resets, or, for a rule that blocks the request, when it would be admitted again. */
  resetAt: Date;
}

/** What `req.rateLimit`, `get()` and the `handler` option see. */
export interface RateLimitInfo {
  /** Requests allowed in the window. */
  limit: number;
  /** Requests (or cost units) counted so far in the window. */
  used: number;
  /** `max(0, limit - used)`. */
  remaining: number;
  /** When the window resets (fixed window), or when the request would be admitted again. */
  resetAt: Date;
  /** The client key (an IP address, an IPv6 /56 network, or what the `key` option returned). */
  key: string;
  /**
   * With several rules: each of them; the fields above are then the rule that binds (the one that blocked the
   * request and is the last to reset, or, when none blocks it, the one with the fewest requests left).
   */
  rules?: RateLimitRuleInfo[];
}

type MaybePromise<T> = T | Promise<T>;

/** Whether JSON can hold `value` (no cycle, no BigInt): checked once, at factory time. */
function serialisesToJson(value: object): boolean {
  try {
    return JSON.stringify(value) !== undefined;
  } catch {
    return false;
  }
}

/** A policy name in the `RateLimit` headers: a token, so it needs no escaping there. */
const ruleName = z.string().regex(/^[A-Za-z0-9_.:-]{1,32}$/, 'must be 1 to 32 characters of A-Z, a-z, 0-9, _ . : -');

/** One of several rules: `{ limit: 10, window: '1s' }`. */
const ruleSchema = z.strictObject({
  limit: z.number().int().min(0),
  window: positiveDurationMs,
  /** @default the window, as `'1s'`, `'15m'`, `'1d'` */
  name: ruleName.optional(),
});

/** Several rules, each named, no two sharing a name. */
const rulesSchema = z
  .array(ruleSchema)
  .min(1)
  .max(16)
  .transform((rules) =>
    rules.map((rule) => ({ limit: rule.limit, window: rule.window, name: rule.name ?? durationName(rule.window) })),
  )
  .refine((rules) => new Set(rules.map((rule) => rule.name)).size === rules.length, {
    message: 'two rules have the same name (give rules with the same window a name each)',
  });

/** A resolved rule. */
export type RateLimitRule = z.output<typeof rulesSchema>[number];

/** Options of `rateLimit()`. */
export const rateLimitSchema = z.strictObject({
  ...commonMiddlewareOptions,
  /**
   * Requests allowed per window and client: a number, `(req) => number`, or several rules counted together,
   * `[{ limit: 10, window: '1s' }, { limit: 1000, window: '1d' }]` (then `window` is not used). @default 100
   */
  limit: z.union([z.number().int().min(0), rulesSchema, fn<(req: Request) => MaybePromise<number>>()]).default(100),
  /** Window length. @default '15m' */
  window: positiveDurationMs.default(15 * 60_000),
  /** @default 'fixed-window' */
  algorithm: z.enum(['fixed-window', 'sliding-window', 'token-bucket']).default('fixed-window'),
  /** Identifies the client. @default the client IP (`req.ip`, normalised) */
  key: fn<(req: Request) => MaybePromise<string>>().optional(),
  /** Prefix length grouping IPv6 clients; `false` limits each full address. @default 56 */
  ipv6Subnet: z.union([z.number().int().min(1).max(128), z.literal(false)]).default(56),
  /** First part of every Redis key. @default 'rate' */
  prefix: z.string().min(1).default('rate'),
  /**
   * The limiter's own namespace under `prefix`: limiters with the same `name` (and rules) share their counts, across
   * processes and routes. @default the rules' fingerprint, such as `fixed.100-15m` (see the README)
   */
  name: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -')
    .optional(),
  /** How much a request counts; a number or `(req) => number`. @default 1 */
  cost: z.union([z.number().int().min(0), fn<(req: Request) => MaybePromise<number>>()]).default(1),
  /** Requests for which this returns true are neither counted nor limited. */
  skip: fn<(req: Request, res: Response) => MaybePromise<boolean>>().optional(),
  /** Refund requests that end with status ≥ 400 (or are aborted). @default false */
  skipFailedRequests: z.boolean().default(false),
  /** Refund requests that end with status < 400. @default false */
  skipSuccessfulRequests: z.boolean().default(false),
  /** Which rate-limit headers to send. @default 'draft-11' */
  headers: z
    .union([z.enum(['draft-11', 'legacy', 'both']), z.boolean()])
    .default('draft-11')
    .transform((value) => (value === true ? 'draft-11' : value)),
  /** Status of a limited response. @default 429 */
  statusCode: z.number().int().min(400).max(599).default(429),
  /** Body of a limited response: text, an object sent as JSON, or `(req, res, info) => either`. */
  message: z
    .union([
      z.string(),
      z.custom<object>((value) => typeof value === 'object' && value !== null && serialisesToJson(value), {
        message: 'expected a string, a function or an object JSON can hold',
      }),
      fn<(req: Request, res: Response, info: RateLimitInfo) => MaybePromise<unknown>>(),
    ])
    .default('Too many requests, please try again later.'),
  /** Replaces the limited response entirely. */
  handler: fn<(req: Request, res: Response, next: NextFunction, info: RateLimitInfo) => unknown>().optional(),
  /** Redis unreachable or slower than `timeout`: `'allow'` passes the request, `'deny'` answers 503. @default 'allow' */
  onRedisError: z.enum(['allow', 'deny']).default('allow'),
  /** Answer an already-limited client from memory until its reset, without asking Redis. @default true */
  blockCache: z.boolean().default(true),
});

/** Options of `rateLimit()` (all optional). */
export type RateLimitOptions = z.input<typeof rateLimitSchema>;
/** The resolved configuration. */
export type RateLimitConfig = z.output<typeof rateLimitSchema>;
