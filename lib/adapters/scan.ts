// Walking the keys under a prefix without KEYS: SCAN on a single node, on every master of a Cluster.
import type { Cluster, Redis } from 'ioredis';
import { isCluster, type RedisClient } from '../redis/client.js';

/** `prefix` as a SCAN MATCH pattern that matches it literally, followed by anything. */
export function prefixPattern(prefix: string): string {
  return `${prefix.replace(/[*?[\]\\]/g, (char) => `\\${char}`)}*`;
}

/** The connections that hold keys: the client itself, or each master of a Cluster. */
export function keyHolders(client: RedisClient): Redis[] {
  return isCluster(client) ? (client as Cluster).nodes('master') : [client as Redis];
}

/** Every key under `prefix`, each once (SCAN may return a key twice), one node at a time, with its node. */
export async function* scanPrefix(
  client: RedisClient,
  prefix: string,
  count: number,
): AsyncGenerator<{ node: Redis; keys: string[] }> {
  const seen = new Set<string>();
  for (const node of keyHolders(client)) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', prefixPattern(prefix), 'COUNT', count);
      cursor = next;
      const fresh = keys.filter((key) => !seen.has(key));
      for (const key of fresh) seen.add(key);
      if (fresh.length) yield { node, keys: fresh };
    } while (cursor !== '0');
  }
}

/**
 * Runs one single-key command per key, pipelined on `node`, the node that holds them (keys from one node's SCAN may
 * sit in different slots, so a multi-key command could be refused with CROSSSLOT on a Cluster).
 */
export async function perKey<T>(node: Redis, keys: string[], command: 'get' | 'unlink'): Promise<(T | null)[]> {
  const pipeline = node.pipeline();
  for (const key of keys) pipeline[command](key);
  const replies = (await pipeline.exec()) ?? [];
  return replies.map(([error, reply]) => {
    if (error) throw error;
    return reply as T | null;
  });
}
