import { createHash, randomBytes } from 'node:crypto';
import type { EntryPolicy } from './policy.js';

/** A stored response: status, headers in order (repeats included), body bytes, and timing. */
export interface StoredResponse {
  status: number;
  /** `[name, value]` pairs in the order they were sent, original casing. */
  headers: [string, string][];
  /** Headers outer middleware had set that the handler removed: removed again when it is served. */
  removed?: string[];
  body: Buffer;
  /** When it was stored (ms since the epoch). */
  storedAt: number;
  /** Served as fresh until then (ms); after it, only as stale (`staleWhileRevalidate` / `staleIfError`). */
  freshUntil: number;
  etag: string;
  /** The ETag is ours (the handler sent none): the handler cannot be asked whether it still matches. */
  etagGenerated?: boolean;
  /** Values of the request headers named by the response's `Vary`, at the time it was stored. */
  vary?: Record<string, string>;
  /** 16 characters identifying this stored copy (new on every store), for revalidating a local copy. */
  version: string;
  /** Its age when stored, in seconds (`freshness: 'http'`); else its stored `Age` header counts. */
  initialAge?: number;
  /** What its directives allow (`freshness: 'http'`); else the route's options decide. */
  policy?: EntryPolicy;
}

interface Meta {
  s: number;
  h: [string, string][];
  t: number;
  f: number;
  e: string;
  v?: Record<string, string>;
  r?: string[];
  g?: 1;
  a?: number;
  /** Policy: no-cache, must-revalidate, stale-while-revalidate ms, stale-if-error ms, shared with Authorization. */
  p?: [0 | 1, 0 | 1, number, number, 0 | 1];
}

/** Marks a stored response (values stored by `cache.set` are JSON and never start with it). */
const magic = Buffer.from([0x00, 0x52, 0x57, 0x32]); // \0RW2
/**
 * Marks the record kept at a URL's key when its responses vary (`Vary`): `\0RWV`, the request header names
 * (comma-separated), a newline, and the ids of the variants kept, newest first (written by the store script).
 */
export const varyMarkerMagic = '\u0000RWV';
/** Layout: magic (4 bytes), version (16 ASCII characters), metadata length (4 bytes), metadata JSON, body. */
const versionEnd = 4 + 16;
const headerEnd = versionEnd + 4;

/** A new version tag for an entry about to be stored. */
export function newVersion(): string {
  return randomBytes(12).toString('base64url');
}

/**
 * Encodes an entry as `\0RW2` + its 16-character version + 4-byte metadata length + metadata JSON + the body
 * bytes verbatim: binary safe, and about 250 bytes over the body. The version sits at a fixed offset so a Lua
 * script can compare it without decoding anything.
 */
export function encodeResponse(entry: StoredResponse): Buffer {
  const meta: Meta = { s: entry.status, h: entry.headers, t: entry.storedAt, f: entry.freshUntil, e: entry.etag };
  if (entry.vary) meta.v = entry.vary;
  if (entry.removed) meta.r = entry.removed;
  if (entry.etagGenerated) meta.g = 1;
  if (entry.initialAge !== undefined) meta.a = entry.initialAge;
  const policy = entry.policy;
  if (policy) {
    meta.p = [
      policy.noCache ? 1 : 0,
      policy.mustRevalidate ? 1 : 0,
      policy.staleWhileRevalidate,
      policy.staleIfError,
      policy.shareAuthorized ? 1 : 0,
    ];
  }
  const json = Buffer.from(JSON.stringify(meta));
  const header = Buffer.allocUnsafe(headerEnd);
  magic.copy(header, 0);
  header.write(entry.version, 4, 16, 'latin1');
  header.writeUInt32BE(json.length, versionEnd);
  return Buffer.concat([header, json, entry.body]);
}

/** RFC 9110 §5.1: a field name is a token. */
const fieldName = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** What Node accepts in a field value (no CR, LF, NUL or other controls but tab; nothing past Latin-1). */
const fieldValue = /^[\t\x20-\x7e\x80-\xff]*$/;

const isNumber = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);
const isFieldValue = (value: unknown): value is string => typeof value === 'string' && fieldValue.test(value);
const isFieldName = (value: unknown): value is string => typeof value === 'string' && fieldName.test(value);

/**
 * Whether decoded metadata has the shape {@link encodeResponse} writes, every field of the right type and every
 * header a valid name and value: anything else under a cache key (another program's, a corrupted or planted value)
 * is no entry, never something sent to a client.
 */
function isMeta(meta: unknown): meta is Meta {
  if (typeof meta !== 'object' || meta === null) return false;
  const m = meta as Record<string, unknown>;
  if (!Number.isInteger(m.s) || (m.s as number) < 100 || (m.s as number) > 999) return false;
  if (
    !Array.isArray(m.h) ||
    !m.h.every((line) => Array.isArray(line) && line.length === 2 && isFieldName(line[0]) && isFieldValue(line[1]))
  ) {
    return false;
  }
  if (!isNumber(m.t) || !isNumber(m.f) || !isFieldValue(m.e)) return false;
  if (
    m.v !== undefined &&
    (typeof m.v !== 'object' || m.v === null || !Object.values(m.v).every((v) => typeof v === 'string'))
  ) {
    return false;
  }
  if (m.r !== undefined && !(Array.isArray(m.r) && m.r.every(isFieldName))) return false;
  if (m.g !== undefined && m.g !== 1) return false;
  if (m.a !== undefined && !(isNumber(m.a) && m.a >= 0)) return false;
  const p = m.p;
  return (
    p === undefined ||
    (Array.isArray(p) &&
      p.length === 5 &&
      [p[0], p[1], p[4]].every((flag) => flag === 0 || flag === 1) &&
      isNumber(p[2]) &&
      isNumber(p[3]))
  );
}

/** Decodes an entry, or `undefined` when the bytes are not one (a JSON value, or corrupt, or of another shape). */
export function decodeResponse(stored: Buffer): StoredResponse | undefined {
  if (stored.length < headerEnd || !stored.subarray(0, 4).equals(magic)) return undefined;
  const length = stored.readUInt32BE(versionEnd);
  if (headerEnd + length > stored.length) return undefined;
  try {
    const meta: unknown = JSON.parse(stored.subarray(headerEnd, headerEnd + length).toString());
    if (!isMeta(meta)) return undefined;
    return {
      status: meta.s,
      headers: meta.h,
      storedAt: meta.t,
      freshUntil: meta.f,
      etag: meta.e,
      etagGenerated: meta.g === 1 ? true : undefined,
      vary: meta.v,
      removed: meta.r,
      initialAge: meta.a,
      policy: meta.p && {
        noCache: meta.p[0] === 1 || undefined,
        mustRevalidate: meta.p[1] === 1 || undefined,
        staleWhileRevalidate: meta.p[2],
        staleIfError: meta.p[3],
        shareAuthorized: meta.p[4] === 1 || undefined,
      },
      version: stored.toString('latin1', 4, versionEnd),
      body: stored.subarray(headerEnd + length),
    };
  } catch {
    return undefined;
  }
}

/** The request header names of a vary marker (see {@link varyMarkerMagic}), or `undefined` for anything else. */
export function decodeVaryMarker(stored: Buffer): string[] | undefined {
  if (stored.length < 4 || stored.toString('latin1', 0, 4) !== varyMarkerMagic) return undefined;
  const end = stored.indexOf(0x0a, 4);
  const names = stored.toString('latin1', 4, end === -1 ? stored.length : end);
  return names === '' ? [] : names.split(',');
}

/** A weak ETag from the body's SHA-1, for responses that carry none. */
export function computeEtag(body: Buffer): string {
  return `W/"${body.length.toString(16)}-${createHash('sha1').update(body).digest('base64url').slice(0, 27)}"`;
}
