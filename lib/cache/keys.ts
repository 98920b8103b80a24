// Every Redis key one cache writes, and the channel it announces on, built by one injective encoder from validated
// parts: two different tuples of parts never give the same key, whatever characters the parts hold.
import { createHash } from 'node:crypto';
import { encodePart } from '../keys.js';

export { encodePart };

/** Parts joined by `:`; each is escaped (see {@link encodePart}), so the list can be read back from the string. */
const encodeParts = (parts: readonly string[]) => parts.map(encodePart).join(':');

/** Where a request was sent: scheme, host and port as validated (see `requestTarget`), path, canonical query. */
export interface Target {
  scheme: string;
  host: string;
  /** `''` for the scheme's default port (or the one the server listens on). */
  port: string;
  path: string;
  /** Canonical query without its `?`; `''` for none. */
  query: string;
}

/**
 * Whose copy a stored response is: everyone's (`shared`), or, with `perSession`, the visitors' without a session
 * (`anonymous`) or one session's (its id, which the key holds only as a hash).
 */
export type Audience = { kind: 'shared' } | { kind: 'anonymous' } | { kind: 'session'; id: string };

/** What names a stored response: the request it answers (or the app's `key`), its audience, the `vary` headers. */
export interface ResponseName {
  /** The request's target (the default key), or the app's own key for it. */
  request: { target: Target } | { key: string };
  audience: Audience;
  /** The values of the route's `vary` option headers, by lower-case name, in the option's order. */
  vary: readonly (readonly [string, string])[];
}

/**
 * What an entry can be invalidated by: the URL it was requested at (path and query, in the form invalidation
 * compares: see `invalidationUrl`), the key it was stored under (`cache.set`/`wrap`, or the route's `key`), or a tag
 * the app gave it.
 */
export type Tag = { kind: 'url'; url: string } | { kind: 'key'; key: string } | { kind: 'tag'; tag: string };

/** The parts of a tag, as its keys hold them. */
const tagParts = (tag: Tag): string[] =>
  tag.kind === 'url' ? ['url', tag.url] : tag.kind === 'key' ? ['key', tag.key] : ['tag', tag.tag];

/** The parts of the audience: one part, `*`, `-`, or `s` and a hash of the session id. */
function audiencePart(audience: Audience): string {
  if (audience.kind === 'shared') return '*';
  if (audience.kind === 'anonymous') return '-';
  return `s${createHash('sha256').update(audience.id).digest('hex')}`;
}

/**
 * The keys of one cache, all under `<prefix>:` and each of one kind:
 * - a response: `<prefix>:r:{<request parts>:<audience>:<vary parts>}`, the request parts being `url`, the method
 *   class, scheme, host, port, path and query, or `key` and the app's key; its variants (a response `Vary`) add
 *   `:v:<id>` after the `}`, so they share its Redis Cluster slot;
 * - a value of `set`/`wrap`: `<prefix>:d:<key>`;
 * - a tag set: `<prefix>:t:{<kind>:<tag>}`, and the time of its last invalidation `<prefix>:t:{<kind>:<tag>}:gone`;
 * - the lock on producing a response or a value: `<prefix>:lock:` and that key without its `<prefix>:`, as one part;
 *   the lock on refreshing a response in the background likewise, under `<prefix>:refresh:`.
 * The first parts of a kind determine how many follow (a request part list has a fixed length for `url` and for
 * `key`; the audience is one part), so a key can be read back into the tuple it came from: no two tuples share one.
 * Nor do two caches whose prefixes nest (`cache` and `cache:lock`): after a kind comes a `{` or one escaped part
 * with no `:` in it, never another kind.
 */
export interface CacheKeys {
  readonly prefix: string;
  response(name: ResponseName): string;
  /** The key of a variant of the response at `base` (see `variantId`). Mirrored in the store script. */
  variant(base: string, id: string): string;
  value(key: string): string;
  tagSet(tag: Tag): string;
  /** When `tag` was last invalidated (see the store's scripts): in the slot of its tag set. */
  tombstone(tag: Tag): string;
  /** The lock on producing the entry at `key` (a response's base key, or a value's key). */
  lock(key: string): string;
  /** The lock on refreshing the response at `key` in the background (one refresh at a time, apart from misses). */
  refreshLock(key: string): string;
  /** Whether `key` is the key of an entry of this cache (a response, a variant, a value): what invalidation deletes. */
  isEntry(key: string): boolean;
  /** The pub/sub channel on which a producer announces that it finished. */
  readonly filledChannel: string;
}

/** The keys of the cache under `prefix` (see {@link CacheKeys}). */
export function cacheKeys(prefix: string): CacheKeys {
  const head = `${prefix}:`;
  /**
   * A lock of `kind` on one of this cache's keys, as one escaped part: no `:` follows `<kind>:`, so no key of a
   * cache whose prefix is `<prefix>:<kind>` (which has a kind and a `:` there) is ever one of these.
   */
  const lockOf = (kind: string, key: string) => {
    if (!key.startsWith(head)) throw new TypeError(`not a key of the cache "${prefix}": ${key}`);
    return `${head}${kind}:${encodePart(key.slice(head.length))}`;
  };
  return {
    prefix,
    response(name) {
      const request =
        'key' in name.request
          ? ['key', name.request.key]
          : (({ scheme, host, port, path, query }) => ['url', 'GET', scheme, host, port, path, query])(
              name.request.target,
            );
      const parts = [...request, audiencePart(name.audience), ...name.vary.flat()];
      return `${head}r:{${encodeParts(parts)}}`;
    },
    variant: (base, id) => `${base}:v:${encodePart(id)}`,
    value: (key) => `${head}d:${encodePart(key)}`,
    tagSet: (tag) => `${head}t:{${encodeParts(tagParts(tag))}}`,
    tombstone: (tag) => `${head}t:{${encodeParts(tagParts(tag))}}:gone`,
    lock: (key) => lockOf('lock', key),
    refreshLock: (key) => lockOf('refresh', key),
    isEntry(key) {
      if (!key.startsWith(head)) return false;
      const rest = key.slice(head.length);
      if (rest.startsWith('d:')) return !rest.includes(':', 2);
      if (!rest.startsWith('r:{')) return false;
      const close = rest.indexOf('}');
      // Its parts hold no `{` of their own (they are escaped): one there is another cache's prefix (`<prefix>:r:{a`).
      if (close === -1 || rest.slice(3, close).includes('{')) return false;
      const after = rest.slice(close + 1);
      return after === '' || (after.startsWith(':v:') && !after.includes(':', 3) && !after.includes('{'));
    },
    filledChannel: `${head}filled`,
  };
}
