// How a limited request is answered: the app's `handler`, or `statusCode` with `message` and `Retry-After`.
import type { NextFunction, Request, Response } from 'express';
import { retryAfterSeconds } from './headers.js';
import type { RateLimitConfig, RateLimitInfo } from './options.js';

/** Answers a limited request; a Promise only when the answer is (an async `handler` or `message`). */
export type LimitedResponder = (
  req: Request,
  res: Response,
  next: NextFunction,
  info: RateLimitInfo,
  now: number,
) => void | Promise<void>;

/** A fixed response body: its type, text and byte length, computed once. */
interface FixedBody {
  type: string;
  text: string;
  length: number;
}

const fixedBody = (type: string, text: string): FixedBody => ({ type, text, length: Buffer.byteLength(text) });

/**
 * The responder of a limiter. A fixed `message` is serialised once and sent synchronously: a flood of limited
 * requests should cost as little as possible.
 */
export function limitedResponder(
  config: Pick<RateLimitConfig, 'message' | 'handler' | 'statusCode'>,
): LimitedResponder {
  const { message, handler, statusCode } = config;
  const body =
    typeof message === 'function'
      ? undefined
      : typeof message === 'string'
        ? fixedBody('text/html; charset=utf-8', message)
        : fixedBody('application/json; charset=utf-8', JSON.stringify(message));

  async function respondWithMessage(req: Request, res: Response, info: RateLimitInfo): Promise<void> {
    const produced = await (message as (req: Request, res: Response, info: RateLimitInfo) => unknown)(req, res, info);
    if (res.headersSent) return;
    res.statusCode = statusCode;
    if (typeof produced === 'string') res.send(produced);
    else res.json(produced);
  }

  return function respondLimited(req, res, next, info, now) {
    res.setHeader('Retry-After', String(retryAfterSeconds(info, now)));
    if (handler) {
      const handled = handler(req, res, next, info);
      // An async handler that rejects reaches Express' error handling, not an unhandled rejection.
      if (handled instanceof Promise) return handled.then(() => {});
      return;
    }
    if (body) {
      res.statusCode = statusCode;
      res.setHeader('Content-Type', body.type);
      res.setHeader('Content-Length', body.length);
      res.end(req.method === 'HEAD' ? undefined : body.text);
      return;
    }
    return respondWithMessage(req, res, info);
  };
}
