import { createHash } from 'node:crypto';

/** A stored response: status, headers in order (repeats included), body bytes, and timing. */
export interface StoredResponse {
  status: number;
  /** `[name, value]` pairs in the order they were sent, original casing. */
  headers: [string, string][];
  body: Buffer;
  /** When it was stored (ms since the epoch). */
  storedAt: number;
  /** Served as fresh until then (ms); after it, only as stale (`staleWhileRevalidate` / `staleIfError`). */
  freshUntil: number;
  etag: string;
  /** Values of the request headers named by the response's `Vary`, at the time it was stored. */
  vary?: Record<string, string>;
}

interface Meta {
  s: number;
  h: [string, string][];
  t: number;
  f: number;
  e: string;
  v?: Record<string, string>;
}

/** Marks a stored response (values stored by `cache.set` are JSON and never start with it). */
const magic = Buffer.from([0x00, 0x52, 0x57, 0x31]); // \0RW1

/**
 * Encodes an entry as `\0RW1` + 4-byte metadata length + metadata JSON + the body bytes verbatim:
 * binary safe, and about 200 bytes over the body.
 */
export function encodeResponse(entry: StoredResponse): Buffer {
  const meta: Meta = { s: entry.status, h: entry.headers, t: entry.storedAt, f: entry.freshUntil, e: entry.etag };
  if (entry.vary) meta.v = entry.vary;
  const json = Buffer.from(JSON.stringify(meta));
  const length = Buffer.allocUnsafe(4);
  length.writeUInt32BE(json.length);
  return Buffer.concat([magic, length, json, entry.body]);
}

/** Decodes an entry, or `undefined` when the bytes are not one (a JSON value, or corrupt). */
export function decodeResponse(stored: Buffer): StoredResponse | undefined {
  if (stored.length < 8 || !stored.subarray(0, 4).equals(magic)) return undefined;
  const length = stored.readUInt32BE(4);
  if (8 + length > stored.length) return undefined;
  try {
    const meta = JSON.parse(stored.subarray(8, 8 + length).toString()) as Meta;
    return {
      status: meta.s,
      headers: meta.h,
      storedAt: meta.t,
      freshUntil: meta.f,
      etag: meta.e,
      vary: meta.v,
      body: stored.subarray(8 + length),
    };
  } catch {
    return undefined;
  }
}

/** A weak ETag from the body's SHA-1, for responses that carry none. */
export function computeEtag(body: Buffer): string {
  return `W/"${body.length.toString(16)}-${createHash('sha1').update(body).digest('base64url').slice(0, 27)}"`;
}
