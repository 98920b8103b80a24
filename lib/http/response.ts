// Response interception, written once for every middleware that needs it: a listener for the moment the headers
// are written (jshttp's on-headers, which compression and express-session use too), and a hold on `res.end` until
// some work is done.
import type { ServerResponse } from 'node:http';
import onHeaders from 'on-headers';

/**
 * Calls `listener` once, right before the headers are written (`res.writeHead`, explicit or implicit), with the
 * headers still changeable. Listeners run in reverse order of registration: a middleware mounted after compression
 * sees the handler's headers before compression adds `Content-Encoding`.
 */
export function beforeHeaders(res: ServerResponse, listener: () => void): void {
  onHeaders(res, listener);
}

type End = (...args: unknown[]) => ServerResponse;

/**
 * Throws what Node's `res.write(chunk)` / `res.end(chunk)` would throw at once for a wrong chunk or status code:
 * called by every wrapper that defers or precedes the real call (holding the end, writing the head itself), so that
 * the handler's mistake surfaces where it was made — in the handler, which Express answers with a 500 — and not
 * later, inside a Redis callback, where nothing would answer the request.
 */
export function assertWritable(res: ServerResponse, chunk: unknown, call: 'write' | 'end'): void {
  // end() writes only a truthy chunk (end(0) and end(false) send nothing); write() checks whatever it is given.
  const checked = call === 'write' ? typeof chunk !== 'function' : Boolean(chunk) && typeof chunk !== 'function';
  if (checked && typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) {
    const error = new TypeError(
      `The "chunk" argument must be of type string or an instance of Buffer or Uint8Array. Received ${chunk === null ? 'null' : typeof chunk}`,
    );
    (error as NodeJS.ErrnoException).code = chunk === null ? 'ERR_STREAM_NULL_VALUES' : 'ERR_INVALID_ARG_TYPE';
    throw error;
  }
  if (!res.headersSent) {
    // As writeHead() has it: any value that is an integer from 100 to 999 once truncated ('201', 200.7).
    const status = (res.statusCode as unknown as number) | 0;
    if (status < 100 || status > 999) {
      const error = new RangeError(`Invalid status code: ${res.statusCode}`);
      (error as NodeJS.ErrnoException).code = 'ERR_HTTP_INVALID_STATUS_CODE';
      throw error;
    }
  }
}

/** Ends a held response: with the arguments of the held `end()` call, or with others given here. */
export type Proceed = (...replacement: unknown[]) => void;

/**
 * Holds `res.end` until `hold(proceed)` calls `proceed()` (at once or later), so that work such as saving a session
 * or deleting a cache entry is finished before the last byte goes out — a client that acts on the response (a
 * redirect, a read after its own write) never beats it. A second `end()` while the first is held changes nothing
 * (the first one's response goes out); `hold` runs for the first `end()` only.
 */
export function holdEnd(res: ServerResponse, hold: (proceed: Proceed) => void): void {
  const originalEnd = res.end as End;
  let phase: 'open' | 'holding' | 'ended' = 'open';
  res.end = function heldEnd(this: ServerResponse, ...args: unknown[]) {
    if (phase === 'ended') return originalEnd.apply(this, args);
    if (phase === 'holding') return this;
    assertWritable(res, args[0], 'end');
    phase = 'holding';
    let proceeded = false;
    const proceed: Proceed = (...replacement) => {
      if (proceeded) return;
      proceeded = true;
      phase = 'ended';
      try {
        originalEnd.apply(res, replacement.length ? replacement : args);
      } catch (error) {
        // Thrown by what runs as the headers go out (another middleware's listener, say), after the handler's
        // turn: nobody is left to answer the request, so it is closed rather than left hanging.
        process.emitWarning(error as Error);
        res.destroy();
      }
    };
    try {
      hold(proceed);
    } catch (error) {
      // A bug in the hold must not keep the response from ending.
      proceed();
      throw error;
    }
    return this;
  } as typeof res.end;
}
