// How a session is held in Redis (one hash; see scripts.ts), and the load script's reply read back into a session.
import type { Lifetime } from './lifetime.js';
import { isReservedField } from './reserved.js';

/** Prefix of the hash fields that hold session data (the others: `_c` created, `_s` last seen, `_m` lifetime). */
export const dataPrefix = 'd:';

/** The hash field holding a session's own cookie lifetime (ms; `0`: a browser-session cookie). */
export const lifetimeField = '_m';

/** A session as the load script returned it, read: its own lifetime and its data fields. */
export interface LoadedSession {
  lifetime: Lifetime;
  /** The session has a user whose index entry is due to be checked (see the load script): added unless it is there. */
  indexDue: boolean;
  /** The data fields' names (reserved names left out: see `isReservedField`). */
  names: string[];
  /** Each field's JSON, as Redis holds it. */
  json: string[];
  /** Each field's value. */
  values: unknown[];
}

/** What prefixes the lifetime in a load reply when the session's index entry is due to be checked. */
const indexDueMark = '!';

/**
 * A load reply (the lifetime, then field, JSON, field, JSON, …) read into a session, or `undefined` when there is
 * no session: the reply is 0 (missing, expired), or it is not a session of ours (a lifetime that is no number, a
 * field that is not JSON), which is then a missing session too, never half of one.
 */
export function readLoadReply(reply: unknown): LoadedSession | undefined {
  if (!Array.isArray(reply) || reply.length % 2 !== 1) return undefined;
  let head = reply[0];
  const indexDue = typeof head === 'string' && head.startsWith(indexDueMark);
  if (indexDue) head = head.slice(indexDueMark.length);
  const lifetime = readLifetime(head);
  if (lifetime === false) return undefined;
  const loaded: LoadedSession = { lifetime, indexDue, names: [], json: [], values: [] };
  for (let i = 1; i < reply.length; i += 2) {
    const name = reply[i] as string;
    if (isReservedField(name)) continue;
    const json = reply[i + 1] as string;
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch {
      return undefined;
    }
    loaded.names.push(name);
    loaded.json.push(json);
    loaded.values.push(value);
  }
  return loaded;
}

/** A stored lifetime: `''` none, `0` a browser-session cookie, else ms; `false` when it is not one. */
function readLifetime(stored: unknown): Lifetime | false {
  if (stored === '') return undefined;
  const ms = Number(stored);
  if (typeof stored !== 'string' || !Number.isFinite(ms) || ms < 0) return false;
  return ms > 0 ? ms : null;
}
