// Where a limiter counts: its own namespace under the prefix, so two limiters never share a counter by accident.
import { durationName } from '../duration.js';
import { encodePart, hashTag } from '../keys.js';
import type { Logger } from '../logger.js';
import type { RateLimitConfig } from './options.js';

const algorithmNames = { 'fixed-window': 'fixed', 'sliding-window': 'sliding', 'token-bucket': 'bucket' } as const;

type NamespaceInputs = Pick<RateLimitConfig, 'algorithm' | 'limit' | 'window' | 'name' | 'key' | 'cost'>;

/**
 * What a limiter counts, as a string: the algorithm, then each rule as `<limit>-<window>` (`fn` for a function
 * limit), then `cost<n>` (`costfn`) for a cost other than 1, then `custom` when the app keys clients itself:
 * `fixed.100-15m`, `sliding.10-1s.1000-1d`, `fixed.10-3m.cost5`. Two limiters with the same fingerprint count the
 * same thing the same way.
 */
export function rulesFingerprint(config: NamespaceInputs): string {
  const rules = Array.isArray(config.limit)
    ? config.limit.map((rule) => `${rule.limit}-${durationName(rule.window)}`)
    : [`${typeof config.limit === 'number' ? config.limit : 'fn'}-${durationName(config.window)}`];
  const cost = config.cost === 1 ? [] : [`cost${typeof config.cost === 'number' ? config.cost : 'fn'}`];
  return [algorithmNames[config.algorithm], ...rules, ...cost, ...(config.key ? ['custom'] : [])].join('.');
}

/**
 * The namespace of a limiter built from these options alone: its `name`, or its rules' fingerprint. A name has no
 * `.` and every fingerprint has one, so a named limiter never counts into an unnamed one's keys.
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
  /** Set once a second limiter counts in the same namespace: both then guard against counting a request twice. */
  shared: { value: boolean };
}

/** Namespaces chosen by the app in this process, by `<prefix>\n<namespace>` (bounded). */
const registry = new Map<string, RegisteredLimiter>();
/** How many limiters of each `<prefix>\n<fingerprint>` this process made without choosing a namespace. */
const unnamedCounts = new Map<string, number>();
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

/** Where a new limiter counts, and the flag it shares with every limiter of this process counting there too. */
export interface ClaimedNamespace {
  namespace: string;
  /** True once another limiter of this process counts in the same namespace (then none counts a request twice). */
  shared: { value: boolean };
}

/**
 * Gives a new limiter its namespace. Limiters share one only when the app says so: the same `name`, or the same
 * `prefix` of its own and the same rules. Any other limiter counts apart, also from limiters of the same rules:
 * the n-th one this process makes under the default prefix counts in `<fingerprint>~<n>` (the first in the
 * fingerprint itself), so a limiter built in a loop, by a helper of the app, or for another route never takes
 * another's budget, and each process of the app, making its limiters in the same order, names them alike. Two
 * limiters given one `name` but different rules count together all the same, and the app is warned, naming both.
 */
export function claimNamespace(
  config: NamespaceInputs & { prefix: string },
  chosenPrefix: boolean,
  description: string,
  logger: Logger,
): ClaimedNamespace {
  const fingerprint = rulesFingerprint(config);
  if (config.name === undefined && !chosenPrefix) {
    const id = `${config.prefix}\n${fingerprint}`;
    const made = (unnamedCounts.get(id) ?? 0) + 1;
    if (unnamedCounts.size >= registryLimit && !unnamedCounts.has(id)) unnamedCounts.clear();
    unnamedCounts.set(id, made);
    return { namespace: made === 1 ? fingerprint : `${fingerprint}~${made}`, shared: { value: false } };
  }
  const namespace = config.name ?? fingerprint;
  const id = `${config.prefix}\n${namespace}`;
  const earlier = registry.get(id);
  if (!earlier) {
    if (registry.size >= registryLimit) registry.clear();
    const shared = { value: false };
    registry.set(id, { fingerprint, description, shared });
    return { namespace, shared };
  }
  earlier.shared.value = true;
  if (earlier.fingerprint !== fingerprint) {
    logger.warn(
      `redisware rateLimit: two limiters named '${namespace}' count different rules under the same Redis keys ('${config.prefix}:${namespace}:…'): ${earlier.description} and ${description}. Each counts what the other counted, and a request they both see is counted once. Give each a 'name' of its own to count apart, or the same rules to share on purpose.`,
    );
  }
  return { namespace, shared: earlier.shared };
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
