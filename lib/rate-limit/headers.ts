import type { Response } from 'express';
import type { RateLimitConfig, RateLimitInfo } from './options.js';

let lastPolicy = { limit: -1, windowSeconds: -1, header: '' };

/** `"default";q=<limit>;w=<window>`, reusing the last string built (the limit rarely changes between requests). */
function policyHeader(limit: number, windowSeconds: number): string {
  if (lastPolicy.limit !== limit || lastPolicy.windowSeconds !== windowSeconds) {
    lastPolicy = { limit, windowSeconds, header: `"default";q=${limit};w=${windowSeconds}` };
  }
  return lastPolicy.header;
}

/**
 * Sets the rate-limit headers chosen by the `headers` option.
 * draft-11 (draft-ietf-httpapi-ratelimit-headers-11): `RateLimit-Policy: "default";q=<limit>;w=<window s>` and
 * `RateLimit: "default";r=<remaining>;t=<s until reset>`; legacy: `X-RateLimit-Limit/-Remaining/-Reset` (epoch s).
 * Both styles derive from the same `resetAt`, so they always agree.
 */
export function setRateLimitHeaders(
  res: Response,
  style: RateLimitConfig['headers'],
  info: RateLimitInfo,
  windowSeconds: number,
  now: number,
): void {
  if (style === false) return;
  if (info.rules) {
    setRulesHeaders(res, style, info, now);
    return;
  }
  const resetMs = info.resetAt.getTime();
  // Headers already sent (by an earlier middleware that still called next()) are left alone. Caught rather than
  // checked first: every property read on an Express `res` misses V8's inline caches, and this runs per request.
  try {
    if (style !== 'legacy') {
      res.setHeader('RateLimit-Policy', policyHeader(info.limit, windowSeconds));
      res.setHeader('RateLimit', `"default";r=${info.remaining};t=${Math.max(0, Math.ceil((resetMs - now) / 1000))}`);
    }
    if (style !== 'draft-11') {
      res.setHeader('X-RateLimit-Limit', String(info.limit));
      res.setHeader('X-RateLimit-Remaining', String(info.remaining));
      res.setHeader('X-RateLimit-Reset', String(Math.ceil(resetMs / 1000)));
    }
  } catch (error) {
    if ((error as { code?: string }).code !== 'ERR_HTTP_HEADERS_SENT') throw error;
  }
}

/** `Retry-After` in whole seconds, at least 1. */
export function retryAfterSeconds(info: RateLimitInfo, now: number): number {
  return Math.max(1, Math.ceil((info.resetAt.getTime() - now) / 1000));
}

const secondsUntil = (date: Date, now: number) => Math.max(0, Math.ceil((date.getTime() - now) / 1000));

/**
 * Several rules: draft-11 lists one policy per rule (`"1s";q=10;w=1, "1d";q=1000;w=86400`) and the state of each
 * (`"1s";r=9;t=1, "1d";r=999;t=86400`); the legacy headers show the rule that binds (see `RateLimitInfo`).
 */
function setRulesHeaders(res: Response, style: RateLimitConfig['headers'], info: RateLimitInfo, now: number): void {
  const rules = info.rules ?? [];
  try {
    if (style !== 'legacy') {
      res.setHeader(
        'RateLimit-Policy',
        rules.map((rule) => `"${rule.name}";q=${rule.limit};w=${Math.ceil(rule.window / 1000)}`).join(', '),
      );
      res.setHeader(
        'RateLimit',
        rules.map((rule) => `"${rule.name}";r=${rule.remaining};t=${secondsUntil(rule.resetAt, now)}`).join(', '),
      );
    }
    if (style !== 'draft-11') {
      res.setHeader('X-RateLimit-Limit', String(info.limit));
      res.setHeader('X-RateLimit-Remaining', String(info.remaining));
      res.setHeader('X-RateLimit-Reset', String(Math.ceil(info.resetAt.getTime() / 1000)));
    }
  } catch (error) {
    if ((error as { code?: string }).code !== 'ERR_HTTP_HEADERS_SENT') throw error;
  }
}
