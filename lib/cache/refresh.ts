// Refreshing a stale entry in the background: the request is replayed through the whole app as a GET of the same
// URL and headers, whose response is captured and stored (as the entry it refreshes, and only that), and sent to
// no one.
import { IncomingMessage, ServerResponse } from 'node:http';
import { Duplex } from 'node:stream';
import type { Application, Request } from 'express';
import { markBackground } from '../http/marks.js';
import type { Lookup, RouteContext } from './context.js';
import type { StoredResponse } from './entry.js';
import { conditionalRequestHeaders } from './http.js';

/** The work a background replay of a request carries to the cache middleware that started it. */
const jobs = new WeakMap<IncomingMessage, unknown>();

/** The job `req` was replayed for, when it is one of {@link replayInBackground}'s requests. */
export function backgroundJob<T>(req: IncomingMessage): T | undefined {
  return jobs.get(req) as T | undefined;
}

/** What a replay keeps of the connection `req` came on, which may be closed by the time the replay runs. */
export interface ConnectionFacts {
  remoteAddress: string | undefined;
  remoteFamily: string | undefined;
  remotePort: number | undefined;
  localAddress: string | undefined;
  localPort: number | undefined;
  encrypted: boolean;
}

/** The facts of `req`'s connection now, while it is open (see {@link replayInBackground}). */
export function connectionFacts(req: Request): ConnectionFacts {
  const socket = req.socket;
  return {
    remoteAddress: socket?.remoteAddress,
    remoteFamily: socket?.remoteFamily,
    remotePort: socket?.remotePort,
    localAddress: socket?.localAddress,
    localPort: socket?.localPort,
    encrypted: (socket as { encrypted?: boolean } | undefined)?.encrypted === true,
  };
}

/**
 * A socket that takes every byte and sends none: the replay's response is written to it (see below). It never
 * pushes back (a response with no HTTP server behind it would wait for a `'drain'` nobody forwards), and it needs
 * not: each chunk is dropped as soon as it is written.
 */
function sink(): Duplex {
  return new Duplex({
    writableHighWaterMark: 2 ** 30,
    read() {},
    write(_chunk, _encoding, done) {
      done();
    },
  });
}

/**
 * Replays `req` through the app it came through (the top one, so that every middleware in front runs as for the
 * request itself): a GET of the same URL with the same headers, but no conditional ones (the entry is produced in
 * full), marked as a background request (rate limiters do not count it; a session is loaded, read-only, only when
 * `needs.session`: the refresh of one session's entry), whose
 * response goes to a socket that discards it — so streams, `res.sendFile` and anything waiting for `'finish'` work
 * as on any response. `job` travels with it to the cache middleware. `ended` is called once, whatever happens:
 * when the response ends or closes, when no handler answered, or after `limitMs` at the latest.
 */
function replayInBackground(
  req: Request,
  connection: ConnectionFacts,
  job: unknown,
  needs: { session: boolean },
  limitMs: number,
  ended: (error?: unknown) => void,
): void {
  let app = req.app as Application & { parent?: Application };
  while (app.parent) app = app.parent as Application & { parent?: Application };
  // A socket of its own, with the facts the request's connection had (client address, port, TLS) when the request
  // came: never the client's, which may serve its next request by now, and which a replayed handler that fails
  // mid-response would otherwise destroy.
  const socket = sink();
  Object.defineProperties(socket, {
    remoteAddress: { value: connection.remoteAddress },
    remoteFamily: { value: connection.remoteFamily },
    remotePort: { value: connection.remotePort },
    localAddress: { value: connection.localAddress },
    localPort: { value: connection.localPort },
    encrypted: { value: connection.encrypted },
  });
  // What handlers call on a request's socket besides reading and writing (req.setTimeout and the like): nothing to do.
  for (const name of ['setTimeout', 'setNoDelay', 'setKeepAlive', 'ref', 'unref']) {
    Object.defineProperty(socket, name, { value: () => socket });
  }
  const replay = new IncomingMessage(socket as never);
  replay.method = 'GET';
  replay.url = req.originalUrl ?? req.url;
  replay.httpVersionMajor = req.httpVersionMajor;
  replay.httpVersionMinor = req.httpVersionMinor;
  replay.httpVersion = req.httpVersion;
  const headers = { ...req.headers };
  for (const name of conditionalRequestHeaders) delete headers[name];
  replay.headers = headers;
  replay.push(null); // no body
  replay.complete = true;
  markBackground(replay, needs);
  jobs.set(replay, job);
  const response = new ServerResponse(replay);
  response.assignSocket(socket as never);
  let done = false;
  const end = (error?: unknown) => {
    if (done) return;
    done = true;
    clearTimeout(limit);
    ended(error);
  };
  const limit = setTimeout(() => end(new Error(`the background refresh did not end within ${limitMs} ms`)), limitMs);
  limit.unref();
  response.once('finish', () => end());
  response.once('close', () => end());
  try {
    (app as unknown as { handle(req: unknown, res: unknown, done: (error?: unknown) => void): void }).handle(
      replay,
      response,
      (error?: unknown) => end(error ?? new Error('no handler answered the background refresh')),
    );
  } catch (error) {
    end(error);
  }
}

/** What a background refresh carries to the cache middleware on its replay (see {@link refreshInBackground}). */
export interface RefreshJob {
  /** The lookup of the request that found the entry stale: the entry the refresh may write, and only it. */
  lookup: Lookup;
  /** The stale entry: the handler is asked with its validators, so that a 304 freshens it. */
  stale: StoredResponse;
  /**
   * Set by the middleware as it starts producing the entry: whether it was stored. The replay's response ends
   * before the entry is stored, so the lock is released (or abandoned) once this settles.
   */
  stored?: Promise<boolean>;
}

/**
 * Has the stale `entry` found for `req` refreshed in the background, by one request across processes (whoever
 * takes the entry's lock): `req` is replayed through the app (see {@link replayInBackground}) on `connection`'s
 * facts (read while the request's connection was open), with its session when
 * the entry is one session's. Refreshed, the lock is released and the next request finds the new entry; not
 * refreshed (an error, or nothing storable came back), the lock is left to expire, so the stale entry is served
 * meanwhile without a refresh on every request.
 */
export async function refreshInBackground(
  ctx: RouteContext,
  req: Request,
  connection: ConnectionFacts,
  lookup: Lookup,
  entry: StoredResponse,
): Promise<void> {
  const { store, coalescer } = ctx;
  const leaseMs = ctx.lock?.ttl ?? 10_000;
  // A lock of its own, apart from the one misses coalesce under: a refresh that failed keeps it until its lease
  // ends (no new refresh meanwhile), and a miss (after an invalidation, say) never waits for it.
  const lock = await coalescer.lock(store.keys.refreshLock(lookup.base), leaseMs);
  if (!lock) return;
  const job: RefreshJob = { lookup, stale: entry };
  const needs = { session: lookup.perSession && lookup.cameWith !== '' };
  replayInBackground(req, connection, job, needs, leaseMs, (error) => {
    if (error) store.logger.error(`redisware cache: a background refresh failed: ${String(error)}`);
    const stored = error || !job.stored ? Promise.resolve(false) : job.stored;
    void stored.then((refreshed) => {
      if (refreshed) void coalescer.finish(lock, lookup.base);
      else lock.abandon();
    });
  });
}
