// Answering a request from a stored entry: its status and headers, `Age`, 304 for a matching validator, 206 for
// one byte range — the same answer whether the entry was found fresh or confirmed by the handler's 304.
import type { ServerResponse } from 'node:http';
import type { Request } from 'express';
import parseRange from 'range-parser';
import type { StoredResponse } from './entry.js';
import { acceptsEncoding, droppedBy304, firstHeader, hasNoBody, notModified } from './http.js';

/** A response made from an entry, ready to send. */
export interface Answer {
  status: number;
  /** `[name, value]` lines, repeats as separate lines: they replace what outer middleware set under those names. */
  headers: [string, string][];
  body: Buffer;
  /** Headers the entry's handler removed from what outer middleware had set: removed again. */
  removed?: string[];
}

/** The `Age` of a stored response now, in whole seconds: its age when stored plus the time since. */
export function ageOf(entry: StoredResponse, now: number): number {
  const initial = entry.initialAge ?? (Number(firstHeader(entry.headers, 'age')) || 0);
  return Math.floor(initial + Math.max(0, (now - entry.storedAt) / 1000));
}

/** The `Last-Modified` a client's `If-Modified-Since` is compared with (with `'http'`, else its `Date`). */
function lastModifiedOf(entry: StoredResponse, httpMode: boolean): string | undefined {
  return firstHeader(entry.headers, 'last-modified') ?? (httpMode ? firstHeader(entry.headers, 'date') : undefined);
}

/**
 * The one byte range a GET asks of a stored 200 (RFC 9110 §14), served as 206 from the stored body; `undefined`
 * to send it whole (no Range, an `If-Range` that does not match, several ranges, or one that cannot be met).
 */
function requestedRange(req: Request, entry: StoredResponse): { start: number; end: number } | undefined {
  const header = req.headers.range;
  if (header === undefined || entry.body.length === 0) return undefined;
  // Byte ranges are of the stored bytes: a client that accepts a content coding may get the response encoded by
  // middleware in front (compression()), whose bytes a Content-Range of ours would not describe. It gets it whole.
  if (acceptsEncoding(req.headers['accept-encoding'])) return undefined;
  if (firstHeader(entry.headers, 'accept-ranges')?.trim().toLowerCase() === 'none') return undefined;
  const ifRange = req.headers['if-range'];
  if (ifRange !== undefined) {
    const strongEtag = entry.etagGenerated || entry.etag.startsWith('W/') ? undefined : entry.etag;
    // A date is a strong validator only if Last-Modified is at least a second before Date (RFC 9110 §13.1.5).
    const lastModified = firstHeader(entry.headers, 'last-modified');
    const strongDate =
      lastModified !== undefined &&
      Date.parse(firstHeader(entry.headers, 'date') ?? '') - Date.parse(lastModified) >= 1000 &&
      ifRange === lastModified;
    if (ifRange !== strongEtag && !strongDate) return undefined;
  }
  const ranges = parseRange(entry.body.length, header, { combine: true });
  if (!Array.isArray(ranges) || ranges.type !== 'bytes' || ranges.length !== 1) return undefined;
  return ranges[0];
}

const empty = Buffer.alloc(0);

/**
 * The answer to `req` from `entry`: its status and headers (with `Age` now and the stored body's length, whatever
 * the handler's own response was framed as), labelled `X-Cache: <label>`; 304 when the client's validator matches
 * a 200 or 203; 206 for one satisfiable byte range of a GET; no body for HEAD.
 */
export function answerFrom(
  req: Request,
  entry: StoredResponse,
  label: 'HIT' | 'STALE',
  httpMode: boolean,
  now = Date.now(),
): Answer {
  const headers: [string, string][] = entry.headers.filter(([name]) => {
    const lower = name.toLowerCase();
    return lower !== 'age' && lower !== 'content-length';
  });
  headers.push(['X-Cache', label], ['Age', String(ageOf(entry, now))]);
  const { removed } = entry;
  if (
    (entry.status === 200 || entry.status === 203) &&
    notModified(req.headers, entry.etag, lastModifiedOf(entry, httpMode))
  ) {
    return {
      status: 304,
      headers: headers.filter(([name]) => !droppedBy304.has(name.toLowerCase())),
      body: empty,
      removed,
    };
  }
  const range = entry.status === 200 && req.method === 'GET' ? requestedRange(req, entry) : undefined;
  if (range) {
    headers.push(
      ['Content-Range', `bytes ${range.start}-${range.end}/${entry.body.length}`],
      ['Content-Length', String(range.end - range.start + 1)],
    );
    return { status: 206, headers, body: entry.body.subarray(range.start, range.end + 1), removed };
  }
  if (!hasNoBody(entry.status)) headers.push(['Content-Length', String(entry.body.length)]);
  return { status: entry.status, headers, body: req.method === 'HEAD' ? empty : entry.body, removed };
}

/**
 * Puts `answer`'s status and headers on `res`, replacing what outer middleware set under the same names, as the
 * handler's own would have. A 304 keeps none of their content headers; a 206 carries `no-transform`, so that no
 * middleware in front (compression() with `enforceEncoding`) nor proxy encodes the range its Content-Range describes.
 */
export function applyAnswer(res: ServerResponse, answer: Answer): void {
  res.statusCode = answer.status;
  const grouped = new Map<string, string[]>();
  for (const [name, value] of answer.headers) {
    const values = grouped.get(name);
    if (values) values.push(value);
    else grouped.set(name, [value]);
  }
  for (const [name, values] of grouped) res.setHeader(name, values.length === 1 ? values[0] : values);
  for (const name of answer.removed ?? []) res.removeHeader(name);
  if (answer.status === 304) for (const name of droppedBy304) res.removeHeader(name);
  if (answer.status === 206) {
    const cacheControl = res.getHeader('Cache-Control');
    const directives = cacheControl === undefined ? '' : [cacheControl].flat().join(', ');
    if (!/(^|,)\s*no-transform\s*(,|$)/i.test(directives)) {
      res.setHeader('Cache-Control', directives ? `${directives}, no-transform` : 'no-transform');
    }
  }
}

/** Sends `answer` on `res` (see {@link applyAnswer}). */
export function sendAnswer(res: ServerResponse, answer: Answer): void {
  applyAnswer(res, answer);
  res.end(answer.body);
}
