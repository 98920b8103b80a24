// Walking the keys under a prefix without KEYS: SCAN on a single node, on every master of a Cluster. Every SCAN
// page and every pipeline is one bounded call (the store's `timeout`), sent once the client is ready.
import type { Cluster, Redis } from 'ioredis';
import { RedisUnavailableError } from '../errors.js';
import type { RedisCaller } from '../redis/bounded.js';
import { isCluster, type RedisClient } from '../redis/client.js';

/** `prefix` as a SCAN MATCH pattern that matches it literally, followed by anything. */
export function prefixPattern(prefix: string): string {
  return `${prefix.replace(/[*?[\]\\]/g, (char) => `\\${char}`)}*`;
}

/** The connections that hold keys: the client itself, or each master of a Cluster (known once it is ready). */
function keyHolders(client: RedisClient): Redis[] {
  if (!isCluster(client)) return [client as Redis];
  const masters = (client as Cluster).nodes('master');
  if (masters.length === 0) throw new RedisUnavailableError('the Cluster has no known master');
  return masters;
}

/** Keys found on one node: as that node's commands take them, and as the store named them (its prefix first). */
export interface ScannedKeys {
  node: Redis;
  /** The keys as commands on `node` take them (without the node's own ioredis `keyPrefix`, which it adds). */
  keys: string[];
  /** The keys as the store wrote them: `prefix` + id (without any ioredis `keyPrefix`). */
  names: string[];
}

/**
 * Every key under `prefix`, each once (SCAN may return a key twice), one node at a time. An ioredis `keyPrefix` of
 * the client is matched too, and stripped from what is returned.
 */
export async function* scanPrefix(call: RedisCaller, prefix: string, count: number): AsyncGenerator<ScannedKeys> {
  const client = await call(async (redis) => redis); // waits (bounded) until the client is ready
  const clientPrefix = isCluster(client) ? (client as Cluster).options.keyPrefix : undefined;
  const seen = new Set<string>();
  for (const node of keyHolders(client)) {
    const nodePrefix = node.options.keyPrefix ?? '';
    const fullPrefix = clientPrefix ?? nodePrefix;
    let cursor = '0';
    do {
      const [next, found] = await call(() =>
        node.scan(cursor, 'MATCH', prefixPattern(fullPrefix + prefix), 'COUNT', count),
      );
      cursor = next;
      const fresh = found.filter((key) => !seen.has(key));
      for (const key of fresh) seen.add(key);
      if (fresh.length) {
        yield {
          node,
          keys: fresh.map((key) => (key.startsWith(nodePrefix) ? key.slice(nodePrefix.length) : key)),
          names: fresh.map((key) => key.slice(fullPrefix.length)),
        };
      }
    } while (cursor !== '0');
  }
}

/**
 * Runs one single-key command per key, pipelined on `node`, the node that holds them (keys from one node's SCAN may
 * sit in different slots, so a multi-key command could be refused with CROSSSLOT on a Cluster); one bounded call.
 * A GET of a key of another type answers `null`: under the prefix, it is no value of the store's.
 */
export async function perKey<T>(
  call: RedisCaller,
  node: Redis,
  keys: string[],
  command: 'get' | 'unlink',
): Promise<(T | null)[]> {
  const pipeline = node.pipeline();
  for (const key of keys) pipeline[command](key);
  const replies = (await call(() => pipeline.exec())) ?? [];
  return replies.map(([error, reply]) => {
    if (error && command === 'get' && error.message.startsWith('WRONGTYPE')) return null;
    if (error) throw error;
    return reply as T | null;
  });
}
