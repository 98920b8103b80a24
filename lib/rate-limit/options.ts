import type { NextFunction, Request, Response } from 'express';
import { z } from 'zod';
import { commonMiddlewareOptions, fn, positiveDurationMs } from '../options.js';

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

/** Options of `rateLimit()`. */
export const rateLimitSchema = z.strictObject({
  ...commonMiddlewareOptions,
  /** Requests allowed per window and client; a number or `(req) => number`. @default 100 */
  limit: z.union([z.number().int().min(0), fn<(req: Request) => MaybePromise<number>>()]).default(100),
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
