// The demo's live view of the `onEvent` stream, sent to each open page as server-sent events (GET /events). The
// demo may be left running where others reach it, so a page is sent only what its own visitor caused:
//
// - `attribute` (in front of every route) runs each request with the visitor it comes from: the browser's
//   `demo.viewer` cookie (HttpOnly, issued by GET /events), or the `x-demo-viewer` header the page gives its API
//   client (which sends no cookies). That value only attributes requests: it does not open the page's stream.
// - An event raised while a request of a visitor is handled goes to that visitor's pages, and is counted for them.
//   One of a request without a visitor (curl, another site) goes to no page.
// - An event no request raised (Redis dropped, a background job) goes to every page, with every string in it that
//   is not a fixed label (keys, ids, addresses, paths, tags, error messages) replaced by a salted hash: pages can
//   tell two clients apart, and read neither.
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { RediswareEvent } from '../../lib/index.js';

/** The cookie that names a browser's visitor (a random token; the visitor's id is its hash). */
export const viewerCookie = 'demo.viewer';
/** The header an API client of the page sends the visitor's id in. */
export const viewerHeader = 'x-demo-viewer';

/** Pages listening at once; more are refused (503), so the stream cannot be used to pile up connections. */
const maxPages = 50;
/** Bytes a page may fall behind by; a page that reads slower than events come is dropped. */
const maxBacklog = 256 * 1024;
/** Visitors whose counts are kept; the least recently seen is forgotten first. */
const maxViewers = 1000;

const tokenPattern = /^[A-Za-z0-9_-]{32}$/;
const viewerIdPattern = /^[A-Za-z0-9_-]{22}$/;
/** Fields of an event that hold one of a few fixed labels, never a value a request chose. */
const labels = new Set(['type', 'reason', 'action', 'source', 'operation', 'across', 'route']);

const viewerIdOf = (token: string) => createHash('sha256').update(token).digest('base64url').slice(0, 22);

function cookieToken(req: Request): string | undefined {
  for (const pair of (req.headers.cookie ?? '').split(';')) {
    const at = pair.indexOf('=');
    if (pair.slice(0, at).trim() !== viewerCookie) continue;
    const value = pair.slice(at + 1).trim();
    if (tokenPattern.test(value)) return value;
  }
  return undefined;
}

/** The visitor a request comes from: its cookie, else its header; `undefined` for neither. */
function viewerOf(req: Request): string | undefined {
  const token = cookieToken(req);
  if (token) return viewerIdOf(token);
  const header = req.headers[viewerHeader];
  return typeof header === 'string' && viewerIdPattern.test(header) ? header : undefined;
}

/** What the visitor's own page is sent of an event: its fields, with an error as its message. */
function forOwnPage(event: RediswareEvent): Record<string, unknown> {
  return event.type === 'redis.error' ? { ...event, error: event.error.message } : { ...event };
}

interface Viewer {
  counts: Record<string, number>;
  pages: Set<Response>;
}

export function createEventStream() {
  /** The visitor of the request being handled (`undefined`: a request without one); no store: no request. */
  const requests = new AsyncLocalStorage<{ viewer: string | undefined }>();
  const viewers = new Map<string, Viewer>();
  /** Counts of the events no request caused (every page is sent those). */
  const unattributed: Record<string, number> = {};
  const pages = new Set<Response>();
  const salt = randomBytes(32);
  const hash = (value: string) => `#${createHmac('sha256', salt).update(value).digest('hex').slice(0, 12)}`;

  /** The visitor's record, made the most recently seen (and created, forgetting the oldest past the cap). */
  function viewer(id: string, create: boolean): Viewer | undefined {
    let found = viewers.get(id);
    if (found) viewers.delete(id);
    else if (create) found = { counts: {}, pages: new Set() };
    else return undefined;
    viewers.set(id, found);
    if (viewers.size > maxViewers) {
      for (const [oldId, old] of viewers) {
        if (old.pages.size > 0) continue;
        viewers.delete(oldId);
        break;
      }
    }
    return found;
  }

  /** An event no request caused, as every page is sent it: fixed labels and numbers kept, other values hashed. */
  function hashed(event: RediswareEvent): Record<string, unknown> {
    const shown: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(event)) {
      if (typeof value === 'number' || typeof value === 'boolean') shown[name] = value;
      else if (typeof value === 'string') shown[name] = labels.has(name) ? value : hash(value);
      else if (Array.isArray(value)) shown[name] = value.map((item) => hash(String(item)));
      else if (value instanceof Error) shown[name] = value.name;
    }
    return shown;
  }

  function send(res: Response, name: string, data: unknown): void {
    res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  function sendTo(targets: Iterable<Response>, data: unknown): void {
    for (const page of targets) {
      if (page.writableLength > maxBacklog) {
        drop(page);
        page.destroy();
      } else {
        send(page, 'redisware', data);
      }
    }
  }

  function drop(page: Response): void {
    pages.delete(page);
    const id = page.locals.viewer as string;
    viewers.get(id)?.pages.delete(page);
  }

  return {
    /** Middleware in front of every route: runs the request as its visitor's, so its events reach their pages. */
    attribute(req: Request, _res: Response, next: NextFunction): void {
      requests.run({ viewer: viewerOf(req) }, next);
    },

    /** The `onEvent` hook. */
    onEvent(event: RediswareEvent): void {
      const request = requests.getStore();
      if (request === undefined) {
        unattributed[event.type] = (unattributed[event.type] ?? 0) + 1;
        if (pages.size > 0) sendTo([...pages], hashed(event));
        return;
      }
      if (request.viewer === undefined) return;
      const own = viewer(request.viewer, false);
      if (!own) return; // an id no page of this process was given
      own.counts[event.type] = (own.counts[event.type] ?? 0) + 1;
      if (own.pages.size > 0) sendTo([...own.pages], forOwnPage(event));
    },

    /**
     * GET /events: the counts of this visitor's events so far (and of those no request caused), the header its API
     * clients send, then each event as it happens.
     */
    handler(req: Request, res: Response): void {
      if (pages.size >= maxPages) {
        res.status(503).set('Retry-After', '5').send('Too many open event streams.');
        return;
      }
      let token = cookieToken(req);
      const headers: Record<string, string> = {
        'Content-Type': 'text/event-stream; charset=utf-8',
        // no-transform: compression() in front leaves the stream alone, so a page that stops reading shows up
        // in `writableLength` (compressed, it would pile up inside zlib instead) and is dropped.
        'Cache-Control': 'no-store, no-transform',
        Connection: 'keep-alive',
      };
      if (!token) {
        token = randomBytes(24).toString('base64url');
        headers['Set-Cookie'] =
          `${viewerCookie}=${token}; Path=/; HttpOnly; SameSite=Strict${req.secure ? '; Secure' : ''}`;
      }
      const id = viewerIdOf(token);
      const own = viewer(id, true) as Viewer;
      res.writeHead(200, headers);
      const counts = { ...unattributed };
      for (const [type, count] of Object.entries(own.counts)) counts[type] = (counts[type] ?? 0) + count;
      send(res, 'counts', counts);
      send(res, 'viewer', { header: viewerHeader, value: id });
      res.locals.viewer = id;
      pages.add(res);
      own.pages.add(res);
      req.on('close', () => drop(res));
    },
  };
}
