// Where a limiter counts: its own namespace under the prefix, so two limiters never share a counter by accident.
import { durationName } from '../duration.js';
import { encodePart, hashTag } from '../keys.js';
import type { Logger } from '../logger.js';
import type { RateLimitConfig } from './options.js';

const algorithmNames = { 'fixed-window': 'fixed', 'sliding-window': 'sliding', 'token-bucket': 'bucket' } as const;

type NamespaceInputs = Pick<RateLimitConfig, 'algorithm' | 'limit' | 'window' | 'name' | 'key'>;

/**
 * What a limiter counts, as a string: the algorithm, then each rule as `<limit>-<window>` (`fn` for a function
 * limit), then `custom` when the app keys clients itself: `fixed.100-15m`, `sliding.10-1s.1000-1d`. Two limiters
 * with the same fingerprint count the same thing the same way.
 */
export function rulesFingerprint(config: NamespaceInputs): string {
  const rules = Array.isArray(config.limit)
    ? config.limit.map((rule) => `${rule.limit}-${durationName(rule.window)}`)
    : [`${typeof config.limit === 'number' ? config.limit : 'fn'}-${durationName(config.window)}`];
  return [algorithmNames[config.algorithm], ...rules, ...(config.key ? ['custom'] : [])].join('.');
}

/**
 * The limiter's namespace: its `name`, or its rules' fingerprint. A name has no `.` and every fingerprint has one,
 * so a named limiter never counts into an unnamed one's keys.
 */
export function limiterNamespace(config: NamespaceInputs): string {
  return config.name ?? rulesFingerprint(config);
}

/** Builds a limiter's Redis keys for a client. */
export interface LimiterKeys {
  /** `<prefix>:<namespace>:<client>`, or with several rules `<prefix>:<namespace>:{<client>}:<rule>` (one slot). */
  of(clientKey: string): string[];
}

/**
 * The keys of one limiter. The client part is written by the shared part encoder: escaped, and hashed past 128
 * characters into a form no literal client can take, so two clients never share a counter.
 */
export function limiterKeys(prefix: string, namespace: string, ruleNames: readonly string[] | undefined): LimiterKeys {
  const head = `${prefix}:${encodePart(namespace)}:`;
  return {
    of(clientKey) {
      const client = encodePart(clientKey);
      if (!ruleNames) return [head + client];
      const tagged = hashTag(client);
      return ruleNames.map((rule) => `${head + tagged}:${encodePart(rule)}`);
    },
  };
}

/** A limiter as the process-wide registry remembers it, to name it in a warning. */
interface RegisteredLimiter {
  fingerprint: string;
  description: string;
  /** Whether the app chose the namespace (a `name`, or a `prefix` of its own). */
  chosen: boolean;
  /** Where the app called `rateLimit()`, when known. */
  createdAt: string | undefined;
  /** Set once a second limiter counts in the same namespace: both then guard against counting a request twice. */
  shared: { value: boolean };
}

/** Namespaces in use in this process, by `<prefix>\n<namespace>` (bounded: limiters made per request are a bug). */
const registry = new Map<string, RegisteredLimiter>();
const registryLimit = 1_000;

/** `rateLimit({ limit: 5, window: '1m' })` as a reader of the app would recognise it, and where it was made. */
export function describeLimiter(config: NamespaceInputs & { prefix: string }, createdAt: string | undefined): string {
  const limit = Array.isArray(config.limit)
    ? config.limit.map((rule) => `${rule.limit} per ${durationName(rule.window)}`).join(' and ')
    : `${typeof config.limit === 'number' ? config.limit : 'limit()'} per ${durationName(config.window)}`;
  const name = config.name ? `name '${config.name}', ` : '';
  return `rateLimit(${name}${limit}, ${config.algorithm}, prefix '${config.prefix}')${createdAt ? ` at ${createdAt}` : ''}`;
}

/** The first frame of the stack outside this package: where the app called `rateLimit()`. */
export function callerLocation(): string | undefined {
  const frames = new Error().stack?.split('\n').slice(1) ?? [];
  const outside = frames.find((frame) => !/[\\/](lib|dist)[\\/]rate-limit[\\/]/.test(frame));
  return outside?.trim().replace(/^at /, '');
}

/**
 * Records a new limiter's namespace and returns the flag it shares with every other limiter of that namespace in
 * this process. Two limiters meeting in one namespace is what the app asked for when both chose it (the same
 * `name`, or the same `prefix`) for the same rules; otherwise the app is warned, naming both.
 */
export function registerNamespace(
  key: { prefix: string; namespace: string },
  limiter: Omit<RegisteredLimiter, 'shared'>,
  logger: Logger,
): { value: boolean } {
  const id = `${key.prefix}\n${key.namespace}`;
  const earlier = registry.get(id);
  if (!earlier) {
    if (registry.size >= registryLimit) registry.clear();
    const shared = { value: false };
    registry.set(id, { ...limiter, shared });
    return shared;
  }
  earlier.shared.value = true;
  // The same rules asked for by the app in both, or made by the same line of code (an app built twice in one
  // process, as tests do): the same limiter, meant to count together.
  const sameRules = earlier.fingerprint === limiter.fingerprint;
  const sameCode = limiter.createdAt !== undefined && earlier.createdAt === limiter.createdAt;
  const agreed = sameRules && ((earlier.chosen && limiter.chosen) || sameCode);
  if (!agreed) {
    const why =
      earlier.fingerprint === limiter.fingerprint
        ? 'they count the same rules, so each client has one budget for both'
        : 'their rules differ, yet each counts what the other counted';
    logger.warn(
      `redisware rateLimit: two limiters count under the same Redis keys ('${key.prefix}:${key.namespace}:…'): ${earlier.description} and ${limiter.description}; ${why}. A request they both see is counted once. Give each a 'name' of its own to count apart, or the same 'name' and rules to share on purpose.`,
    );
  }
  return earlier.shared;
}

/** The counters each request was counted under, by limiters whose namespace another limiter shares. */
const countedBy = new WeakMap<object, Set<string>>();

/**
 * Records that `req` is counted under `counter`; false when it already was (by another limiter of the same
 * namespace, as `app.use(rateLimit())` twice on one path would): that limiter lets it pass uncounted.
 */
export function firstCount(req: object, counter: string): boolean {
  let counted = countedBy.get(req);
  if (!counted) {
    counted = new Set();
    countedBy.set(req, counted);
  }
  if (counted.has(counter)) return false;
  counted.add(counter);
  return true;
}
