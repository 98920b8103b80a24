// What a session's data is made of, and what differs from what Redis holds of it: the change set a save writes.

/** A session's data: the own enumerable properties of the session object. */
export type Data = Record<string, unknown>;

/** What a request changed, for the save script. */
export interface Changes {
  /** Field, JSON, field, JSON, … */
  set: string[];
  remove: string[];
  count: number;
  /** Fields whose value JSON cannot hold (a cycle, a BigInt), with the reason: left as Redis has them. */
  unstorable: string[];
}

/** The data fields of a session (its own enumerable string keys). */
export function dataFields(data: Data): string[] {
  return Object.keys(data);
}

/** Removes every data field. */
export function clearData(data: Data): void {
  for (const field of dataFields(data)) delete data[field];
}

/** A fresh, empty change set (filled in place by changesOf). */
export function noChanges(): Changes {
  return { set: [], remove: [], count: 0, unstorable: [] };
}

/** Why some fields of a session cannot be saved, naming them. */
export function unstorableMessage(changes: Changes): string {
  return `redisSession: session fields cannot be stored as JSON, so they were not saved: ${changes.unstorable.join(', ')}`;
}

/**
 * How `field` would be stored: its JSON, `undefined` when the value is not stored (undefined, a function, a
 * symbol: the field is then removed), or the reason JSON cannot hold it (a cycle, a BigInt, a throwing getter).
 */
function storedForm(data: Data, field: string): string | undefined | { unstorable: string } {
  try {
    const value = data[field];
    if (value === undefined || typeof value === 'function') return undefined;
    return JSON.stringify(value);
  } catch (error) {
    return { unstorable: (error as Error).message.split('\n')[0] };
  }
}

/**
 * What differs between `data` and what Redis holds (`saved`: each field's JSON), or `undefined` when nothing does:
 * a read-only request (nothing changed, nothing removed) builds no change lists, and checks for removed fields only
 * when some stored field is missing.
 */
export function changesOf(data: Data, saved: ReadonlyMap<string, string>): Changes | undefined {
  let changes: Changes | undefined;
  // Fields JSON cannot hold are kept as stored (the caller reports them) rather than failing the response.
  let presentSaved = 0;
  for (const field of dataFields(data)) {
    const form = storedForm(data, field);
    if (form === undefined) continue;
    const before = saved.get(field);
    if (before !== undefined) presentSaved++;
    if (form === before) continue;
    changes ??= noChanges();
    if (typeof form === 'string') changes.set.push(field, form);
    else changes.unstorable.push(`"${field}" (${form.unstorable})`);
  }
  if (presentSaved < saved.size) {
    for (const field of saved.keys()) {
      if (Object.hasOwn(data, field) && storedForm(data, field) !== undefined) continue;
      changes ??= noChanges();
      changes.remove.push(field);
    }
  }
  if (changes) changes.count = changes.set.length / 2 + changes.remove.length;
  return changes;
}

/**
 * The canonical form of a user id, so that `42` and `'42'` are the same user whichever was stored and whichever is
 * asked for: a non-empty string as it is, a finite number as its decimal string; anything else is no user.
 */
export function canonicalUser(value: unknown): string | undefined {
  if (typeof value === 'string') return value === '' ? undefined : value;
  return typeof value === 'number' && Number.isFinite(value) ? String(value) : undefined;
}

/** The user a session is indexed under: its `userField`, canonical (see {@link canonicalUser}). */
export function userOf(data: Data, userField: string): string | undefined {
  try {
    return canonicalUser(data[userField]);
  } catch {
    return undefined; // a throwing getter: changesOf reports it
  }
}
