// What the handler behind the cache produced, teed while it streams to the client.
import type { OutgoingHttpHeaders } from 'node:http';
import type { Response } from 'express';
import { assertWritable, beforeHeaders } from '../http/response.js';
import { type Answer, applyAnswer } from './answer.js';
import { droppedBy304, hasNoBody, storedHeaderFilter } from './http.js';

/** What a handler sent, as far as it can be stored. */
export interface CapturedResponse {
  status: number;
  /** The headers the handler set (not those outer middleware set before the cache), original casing, in order. */
  headers: [string, string][];
  /** Headers outer middleware had set that the handler removed (lower case): removed again on every HIT. */
  removed: string[];
  body: Buffer;
}

/** The response at the moment its headers are written, for the caller to decide on. */
export interface Head {
  status: number;
  /** The headers the handler set, as they will be stored. */
  handlerHeaders: [string, string][];
  /** Every header on the response at that moment (outer middleware's included), lower-case names. */
  all: OutgoingHttpHeaders;
}

/**
 * What to do with a response whose headers are about to go out: send it on (`pass`), or answer the client 304 Not
 * Modified (its validator matches) — keeping its bytes for storage, or not (`keep: false`: it will not be stored,
 * so nothing of it is held in memory);
 */
export type HeadDecision =
  | { kind: 'pass' | 'not-modified'; keep: boolean }
  /**
   * Send this answer from an entry instead, discarding the handler's output (how `staleIfError` swaps a 5xx for the
   * last good entry, and how a 304 from the handler to the cache's own conditional request serves the entry).
   */
  | { kind: 'replace'; answer: Answer };

/** What the cache does as a response goes out. */
export interface CaptureHooks {
  /** Right before the headers are written, with the handler's head: what to do with the response. */
  atHead(head: Head): HeadDecision;
  /**
   * Once the handler ends the response, its head written (every middleware's header work done) and its body
   * complete, right before the end reaches the middleware in front: the last moment to look at the whole exchange.
   */
  atEnd?(): void;
}

type Callback = (error?: Error | null) => void;

function toBuffer(chunk: unknown, encoding: unknown): Buffer | undefined {
  // As Node's end(): a falsy chunk (end(0), end(false), end('')) writes nothing.
  if (!chunk || typeof chunk === 'function') return undefined;
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return Buffer.from(String(chunk), typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
}

/** A header value as it is compared with the one outer middleware set (`'a, b'` for a list). */
function comparable(value: OutgoingHttpHeaders[string]): string {
  return Array.isArray(value) ? value.join('\n') : String(value);
}

/**
 * The headers on `res` now (lower-case names), to tell apart later which ones the handler set: called when the
 * cache is entered, before the handler runs.
 */
export function headerSnapshot(res: Response): Map<string, string> {
  const snapshot = new Map<string, string>();
  const headers = res.getHeaders();
  for (const name of Object.keys(headers)) snapshot.set(name, comparable(headers[name]));
  return snapshot;
}

/**
 * The headers the handler set or changed since `snapshot`, as `[name, value]` pairs with their original casing,
 * repeated headers kept apart, without those that are never stored (hop-by-hop, Connection-listed).
 */
function handlerHeaders(res: Response, snapshot: Map<string, string>): [string, string][] {
  // (Removed ones are found by `removedHeaders`.)
  const stored = storedHeaderFilter(res.getHeader('connection'));
  const pairs: [string, string][] = [];
  // Node has had getRawHeaderNames() since 15.13; @types/node does not declare it on ServerResponse.
  for (const name of (res as unknown as { getRawHeaderNames(): string[] }).getRawHeaderNames()) {
    const value = res.getHeader(name);
    if (value === undefined || !stored(name)) continue;
    if (snapshot.get(name.toLowerCase()) === comparable(value)) continue; // set by outer middleware, untouched
    if (Array.isArray(value)) for (const item of value) pairs.push([name, String(item)]);
    else pairs.push([name, String(value)]);
  }
  return pairs;
}

/** The headers outer middleware had set (in `snapshot`) that are gone now: the handler removed them. */
function removedHeaders(res: Response, snapshot: Map<string, string>): string[] {
  return [...snapshot.keys()].filter((name) => !res.hasHeader(name));
}

/**
 * Tees what the handler writes (`res.json`, `res.send`, `res.write`/`res.end`, a piped stream) while it streams to
 * the client. `hooks.atHead` runs right before the headers go out — before any outer middleware's own header
 * listeners (compression's, say), so it sees the handler's headers and the body bytes before they are encoded — and
 * may have the client answered 304, or sent something else; `hooks.atEnd` once the response is complete.
 *
 * Resolves as soon as the handler has ended the response, before its last bytes are handed to the socket, so that
 * storing it starts before the client can have it (and ask again): with the response, or `undefined` when it
 * exceeded `maxBytes`, was aborted before its end, or was replaced.
 */
export function captureResponse(
  res: Response,
  snapshot: Map<string, string>,
  maxBytes: number,
  hooks: CaptureHooks,
): Promise<CapturedResponse | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooBig = false;
  let decision: HeadDecision = { kind: 'pass', keep: true };
  let atEndCalled = false;
  let status = 200;
  let headers: [string, string][] = [];
  let removed: string[] = [];
  const keeping = () => decision.kind !== 'replace' && decision.keep;
  const collect = (chunk: unknown, encoding: unknown) => {
    if (tooBig || !keeping()) return;
    const buffer = toBuffer(chunk, encoding);
    if (!buffer || buffer.length === 0) return;
    size += buffer.length;
    if (size > maxBytes) {
      tooBig = true;
      chunks.length = 0;
      return;
    }
    chunks.push(buffer);
  };
  /** Whether the handler's bytes go to the client (not for a 304 answer, nor a replaced response). */
  const passesBody = () => decision.kind === 'pass';

  beforeHeaders(res, () => {
    status = res.statusCode;
    headers = handlerHeaders(res, snapshot);
    removed = removedHeaders(res, snapshot);
    decision = hooks.atHead({ status, handlerHeaders: headers, all: res.getHeaders() });
    if (!keeping()) chunks.length = 0;
    if (decision.kind === 'not-modified') {
      res.statusCode = 304;
      for (const name of droppedBy304) res.removeHeader(name);
    } else if (decision.kind === 'replace') {
      // The handler's response is swapped; what outer middleware set on it (CORS, helmet, …) stays.
      for (const [name] of headers) res.removeHeader(name);
      applyAnswer(res, decision.answer);
    }
  });

  const originalWrite = res.write as (...args: unknown[]) => boolean;
  const originalEnd = res.end as (...args: unknown[]) => Response;

  res.write = function writeCaptured(this: Response, chunk: unknown, encoding?: unknown, callback?: unknown) {
    assertWritable(res, chunk, 'write');
    if (!res.headersSent) res.writeHead(res.statusCode);
    collect(chunk, encoding);
    if (!passesBody()) {
      const done = (typeof encoding === 'function' ? encoding : callback) as Callback | undefined;
      if (done) process.nextTick(done);
      return true;
    }
    return originalWrite.call(this, chunk, encoding, callback);
  } as typeof res.write;

  let complete: (response: CapturedResponse | undefined) => void = () => {};
  const completed = new Promise<CapturedResponse | undefined>((resolve) => {
    complete = resolve;
  });

  res.end = function endCaptured(this: Response, chunk?: unknown, encoding?: unknown, callback?: unknown) {
    assertWritable(res, chunk, 'end');
    if (!res.headersSent) {
      // Let the client get the Content-Length Node would have computed for a single final chunk, as without us;
      // never on a response that has no body (a 204 or 304 with `Content-Length: 0` is wrong, RFC 9110 §8.6).
      const buffer = toBuffer(chunk, encoding);
      if (
        buffer &&
        !hasNoBody(res.statusCode) &&
        !res.hasHeader('Content-Length') &&
        !res.hasHeader('Transfer-Encoding')
      ) {
        res.setHeader('Content-Length', buffer.length);
      }
      res.writeHead(res.statusCode);
    }
    collect(chunk, encoding);
    if (!atEndCalled) {
      atEndCalled = true;
      hooks.atEnd?.();
    }
    const done = [chunk, encoding, callback].find((arg) => typeof arg === 'function') as Callback | undefined;
    if (decision.kind === 'replace') {
      complete(undefined);
      return originalEnd.call(this, decision.answer.body, done);
    }
    complete(tooBig || !keeping() ? undefined : { status, headers, removed, body: Buffer.concat(chunks, size) });
    if (!passesBody()) return originalEnd.call(this, done);
    return originalEnd.call(this, chunk, encoding, callback);
  } as typeof res.end;

  // Closed before the handler ended it: nothing complete to store. (A no-op once it has resolved.)
  res.once('close', () => complete(undefined));
  return completed;
}
