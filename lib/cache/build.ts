// Entries made from what a handler produced: a whole response, or a stored entry its handler confirmed with a 304.
import type { Request } from 'express';
import type { CapturedResponse } from './capture.js';
import { computeEtag, newVersion, type StoredResponse } from './entry.js';
import { freshUntil } from './freshness.js';
import { droppedBy304, firstHeader, type HeaderLines, varyValue } from './http.js';
import type { HttpStorage } from './policy.js';

/**
 * The entry of a response that may be stored (`http`: how its directives say, with `freshness: 'http'`): its
 * headers (less the fields `private="…"`/`no-cache="…"` name), an ETag (the handler's, or computed), its `Date`
 * (the handler's, or now), its freshness, and the values of the request headers its `Vary` names.
 */
export function entryFrom(
  req: Request,
  captured: CapturedResponse,
  varyOn: readonly string[],
  http: HttpStorage | undefined,
  ttlMs: number,
): StoredResponse {
  const strip = http?.strip ?? [];
  const headers = strip.length
    ? captured.headers.filter(([name]) => !strip.includes(name.toLowerCase()))
    : captured.headers;
  let etag = firstHeader(headers, 'etag');
  const etagGenerated = !etag;
  if (!etag) {
    etag = computeEtag(captured.body);
    headers.push(['ETag', etag]);
  }
  const now = Date.now();
  // Before a Date of ours is added: it is whole seconds, and an Expires would be counted from up to 1 s early.
  const fresh = http ? http.freshUntil : freshUntil(headers, now, ttlMs);
  // The stored Date is the response's own, replayed on every HIT (RFC 9111 §5): the handler's, or when it
  // generated it.
  if (firstHeader(headers, 'date') === undefined) headers.push(['Date', new Date(now).toUTCString()]);
  const entry: StoredResponse = {
    status: captured.status,
    headers,
    removed: captured.removed.length ? captured.removed : undefined,
    body: captured.body,
    storedAt: now,
    freshUntil: fresh,
    etag,
    etagGenerated: etagGenerated || undefined,
    version: newVersion(),
  };
  if (http) {
    entry.storedAt = http.responseTime;
    entry.initialAge = http.initialAge;
    entry.policy = http.policy;
  }
  if (varyOn.length) entry.vary = Object.fromEntries(varyOn.map((name) => [name, varyValue(req.headers, name)]));
  return entry;
}

/**
 * The stored entry `stale`, freshened by the handler's 304 to the conditional request made with its validators
 * (RFC 9111 §4.3.4): the 304's headers replace the stored ones of the same names (content headers aside), its age
 * is the 304's (none: just validated), its `Date` the 304's or now, and it is fresh again from now for as long as
 * its headers say (`ttlMs` at most). With `freshness: 'http'`, {@link withHttpStorage} then applies its directives.
 */
export function freshenedEntry(stale: StoredResponse, notModifiedHeaders: HeaderLines, ttlMs: number): StoredResponse {
  const replaced = new Set(
    notModifiedHeaders.map(([name]) => name.toLowerCase()).filter((name) => !droppedBy304.has(name)),
  );
  const headers: [string, string][] = [
    ...stale.headers.filter(([name]) => {
      const lower = name.toLowerCase();
      return !replaced.has(lower) && lower !== 'age' && lower !== 'date';
    }),
    ...notModifiedHeaders.filter(([name]) => replaced.has(name.toLowerCase())),
  ];
  const now = Date.now();
  const fresh = freshUntil(headers, now, ttlMs);
  if (!replaced.has('date')) headers.push(['Date', new Date(now).toUTCString()]);
  return {
    ...stale,
    headers,
    storedAt: now,
    freshUntil: fresh,
    initialAge: undefined,
    etag: firstHeader(headers, 'etag') ?? stale.etag,
    version: newVersion(),
  };
}

/** `entry` as a shared cache keeps it under its directives (`freshness: 'http'`): their freshness and fields. */
export function withHttpStorage(entry: StoredResponse, http: HttpStorage | undefined): StoredResponse {
  if (!http) return { ...entry, freshUntil: entry.storedAt, policy: undefined };
  const strip = http.strip;
  return {
    ...entry,
    freshUntil: http.freshUntil,
    initialAge: http.initialAge,
    policy: http.policy,
    headers: strip.length ? entry.headers.filter(([name]) => !strip.includes(name.toLowerCase())) : entry.headers,
  };
}
