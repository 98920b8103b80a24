import type { Response } from 'express';
import { isStoredHeader } from './http.js';

/** What a handler sent, as far as it can be stored. */
export interface CapturedResponse {
  status: number;
  headers: [string, string][];
  body: Buffer;
}

/** Decides, when the handler starts its response, whether to let it through or send something else. */
export type HeadHook = (status: number) => { status: number; headers: [string, string][]; body: Buffer } | undefined;

type Callback = (error?: Error | null) => void;

function toBuffer(chunk: unknown, encoding: unknown): Buffer | undefined {
  if (chunk === undefined || chunk === null || typeof chunk === 'function') return undefined;
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return Buffer.from(String(chunk), typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
}

/** The response headers as `[name, value]` pairs with their original casing, repeated headers kept apart. */
function headerPairs(res: Response): [string, string][] {
  const pairs: [string, string][] = [];
  // Node has had getRawHeaderNames() since 15.13; @types/node does not declare it on ServerResponse.
  const rawNames = (res as unknown as { getRawHeaderNames(): string[] }).getRawHeaderNames();
  for (const name of rawNames) {
    if (!isStoredHeader(name)) continue;
    const value = res.getHeader(name);
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) pairs.push([name, String(item)]);
    else pairs.push([name, String(value)]);
  }
  return pairs;
}

/**
 * Tees what the handler writes (`res.json`, `res.send`, `res.write`/`res.end`, a piped stream) while it still
 * streams to the client. Resolves with the response as soon as the handler has ended it, before its last bytes are
 * handed to the socket, so that storing it starts before the client can have it (and ask again); or with
 * `undefined` when it exceeded `maxBytes`, was aborted before its end, or was replaced by `onHead`.
 *
 * `onHead` runs when the status is known; if it returns a response, that one is sent instead and the handler's
 * own output is discarded (how `staleIfError` swaps a 5xx for the last good entry).
 */
export function captureResponse(
  res: Response,
  maxBytes: number,
  onHead?: HeadHook,
): Promise<CapturedResponse | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooBig = false;
  let replacement: ReturnType<HeadHook>;
  let headers: [string, string][] = [];
  const collect = (chunk: unknown, encoding: unknown) => {
    if (tooBig || replacement) return;
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

  const originalWriteHead = res.writeHead;
  const originalWrite = res.write;
  const originalEnd = res.end;

  res.writeHead = function writeHeadCaptured(this: Response, statusCode: number, ...rest: unknown[]) {
    replacement = onHead?.(statusCode);
    if (replacement) {
      for (const name of res.getHeaderNames()) res.removeHeader(name);
      for (const [name, value] of replacement.headers) res.appendHeader(name, value);
      return (originalWriteHead as (status: number) => Response).call(this, replacement.status);
    }
    const result = (originalWriteHead as (status: number, ...args: unknown[]) => Response).call(
      this,
      statusCode,
      ...rest,
    );
    headers = headerPairs(res);
    return result;
  } as typeof res.writeHead;

  res.write = function writeCaptured(this: Response, chunk: unknown, encoding?: unknown, callback?: unknown) {
    if (!res.headersSent) res.writeHead(res.statusCode);
    if (replacement) {
      const done = (typeof encoding === 'function' ? encoding : callback) as Callback | undefined;
      if (done) process.nextTick(done);
      return true;
    }
    collect(chunk, encoding);
    return (originalWrite as (...args: unknown[]) => boolean).call(this, chunk, encoding, callback);
  } as typeof res.write;

  let complete: (response: CapturedResponse | undefined) => void = () => {};
  const completed = new Promise<CapturedResponse | undefined>((resolve) => {
    complete = resolve;
  });

  res.end = function endCaptured(this: Response, chunk?: unknown, encoding?: unknown, callback?: unknown) {
    if (!res.headersSent) {
      // Let Node compute Content-Length for a single final chunk, as it would without us.
      const buffer = toBuffer(chunk, encoding);
      if (buffer && !res.hasHeader('Content-Length') && !res.hasHeader('Transfer-Encoding')) {
        res.setHeader('Content-Length', buffer.length);
      }
      res.writeHead(res.statusCode);
    }
    if (replacement) {
      complete(undefined);
      const done = [chunk, encoding, callback].find((arg) => typeof arg === 'function') as Callback | undefined;
      return (originalEnd as (...args: unknown[]) => Response).call(this, replacement.body, done);
    }
    collect(chunk, encoding);
    complete(tooBig ? undefined : { status: res.statusCode, headers, body: Buffer.concat(chunks, size) });
    return (originalEnd as (...args: unknown[]) => Response).call(this, chunk, encoding, callback);
  } as typeof res.end;

  // Closed before the handler ended it: nothing complete to store. (A no-op once it has resolved.)
  res.once('close', () => complete(undefined));
  return completed;
}
