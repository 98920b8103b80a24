// What a hit script answered, decoded in one typed place, and what `req.rateLimit` says of it.
import type { RateLimitInfo, RateLimitRule, RateLimitRuleInfo } from './options.js';

/** One rule's state in a hit script's reply. */
export interface RuleState {
  /** Requests (or cost units) counted in the window. */
  used: number;
  /** Ms until the window resets, or, for a rule that blocks the request, until it would be admitted. */
  resetMs: number;
  /** Whether the client had a count under this rule. */
  exists: boolean;
}

/** A hit script's reply: `{ allowed, then per rule: used, ms until reset, exists; then repaired }`. */
export interface HitOutcome {
  allowed: boolean;
  rules: RuleState[];
  /** Whether the script replaced a malformed value under the client's keys (another program's, an old version's). */
  repaired: boolean;
}

/** Decodes the reply of a hit script of `ruleCount` rules (a one-rule limiter's script has the same layout). */
export function decodeHitReply(reply: unknown, ruleCount: number): HitOutcome {
  const values = reply as number[];
  const rules: RuleState[] = [];
  for (let i = 0; i < ruleCount; i++) {
    rules.push({
      used: Number(values[3 * i + 1]),
      resetMs: Number(values[3 * i + 2]),
      exists: Number(values[3 * i + 3]) === 1,
    });
  }
  return { allowed: Number(values[0]) === 1, rules, repaired: Number(values[3 * ruleCount + 1]) === 1 };
}

/** A one-rule limiter's state for a client, as `req.rateLimit` holds it. */
export function singleRuleInfo(outcome: HitOutcome, limit: number, clientKey: string, now: number): RateLimitInfo {
  const { used, resetMs } = outcome.rules[0];
  return { limit, used, remaining: Math.max(0, limit - used), resetAt: new Date(now + resetMs), key: clientKey };
}

/**
 * The state of every rule, with the binding rule's in the top-level fields: when the request was blocked, of the
 * rules it does not fit (`cost` more would exceed them), the one that admits it last; otherwise the one with the
 * fewest requests left (then the one that resets last).
 */
export function rulesInfo(
  outcome: HitOutcome,
  rules: readonly RateLimitRule[],
  clientKey: string,
  now: number,
  cost: number,
): RateLimitInfo {
  const states = rules.map(
    (rule, i): RateLimitRuleInfo => ({
      name: rule.name,
      limit: rule.limit,
      window: rule.window,
      used: outcome.rules[i].used,
      remaining: Math.max(0, rule.limit - outcome.rules[i].used),
      resetAt: new Date(now + outcome.rules[i].resetMs),
    }),
  );
  const blocking = outcome.allowed ? [] : states.filter((state) => state.used + cost > state.limit);
  const candidates = blocking.length ? blocking : states;
  let binding = candidates[0];
  for (const state of candidates) {
    const tighter = outcome.allowed
      ? state.remaining < binding.remaining ||
        (state.remaining === binding.remaining && state.resetAt > binding.resetAt)
      : state.resetAt > binding.resetAt;
    if (tighter) binding = state;
  }
  const { limit, used, remaining, resetAt } = binding;
  return { limit, used, remaining, resetAt, key: clientKey, rules: states };
}
