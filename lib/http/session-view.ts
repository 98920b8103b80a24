// The session of a request as the response cache sees it, whichever middleware in front gave it: redisSession()
// (which says so through the marks) or express-session with any store (its `req.session` and `req.sessionID`,
// watched from the moment the cache lets the handler run).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isPersonal, sessionIdentity, sessionIssued } from './marks.js';

/** What a response made of the session, known once its head is final. */
export interface SessionOutcome {
  /** It read or wrote the session (a data field, its id), or was made while the session held data of its own. */
  personal: boolean;
  /** The session id the response gives its client, when it issues one (`''`: it clears it); else `undefined`. */
  issued: string | undefined;
  /** The stored session the request has now (see {@link sessionIdOf}); `current()` leaves it out. */
  identity?: string | undefined;
}

/** A request's session, from the moment the cache lets the handler run. */
export interface SessionWatch {
  /** What the response has made of the session so far. */
  current(): SessionOutcome;
  /** What the response made of the session, once it is complete: the watch ends. */
  settle(): SessionOutcome;
}

/**
 * The stored session `req` came with: its id, `''` when it has none (yet), `undefined` when no session middleware
 * in front gave it one.
 */
export function sessionIdOf(req: IncomingMessage): string | undefined {
  if (!isExpressSession(req)) return sessionIdentity(req);
  const id = (req as ExpressSessionRequest).sessionID;
  return typeof id === 'string' && cookieCarries(req, id) ? id : '';
}

/** Read-only views of express-session stores, one per store; and the views themselves. */
const readOnlyStores = new WeakMap<object, object>();
const readOnlyViews = new WeakSet<object>();

/** A store method that changes nothing and answers at once, as a store does (a callback as its last argument). */
function changeNothing(...args: unknown[]): void {
  const done = args.at(-1);
  if (typeof done === 'function') process.nextTick(done);
}

/**
 * Makes the session of `req` read-only for the rest of the request: for a background refresh, which must change no
 * session. redisSession loads it read-only itself. express-session writes through `req.sessionStore` (the
 * session's save(), regenerate() and destroy()): it is given a view of its store that reads and never writes.
 * Its own end writes through a store of its own, so {@link leaveSessionAlone} ends the request's session too.
 */
export function keepSessionReadOnly(req: IncomingMessage): void {
  const request = req as ExpressSessionRequest;
  if (!isExpressSession(req)) return;
  const store = request.sessionStore as object;
  let readOnly = readOnlyStores.get(store);
  if (!readOnly) {
    readOnly = Object.create(store, {
      set: { value: changeNothing },
      destroy: { value: changeNothing },
      touch: { value: changeNothing },
    }) as object;
    readOnlyStores.set(store, readOnly);
    readOnlyViews.add(readOnly);
  }
  request.sessionStore = readOnly;
}

/**
 * Keeps express-session in front from saving, extending or (with `unset: 'destroy'`) destroying the session of a
 * background refresh as its response ends: its session and id are taken away first.
 */
export function leaveSessionAlone(req: IncomingMessage): void {
  const request = req as ExpressSessionRequest;
  if (!readOnlyViews.has(request.sessionStore as object)) return;
  request.session = null;
  request.sessionID = undefined;
}

/** Starts watching what the handler does with the session of `req` (see {@link SessionWatch}). */
export function watchSession(req: IncomingMessage, res: ServerResponse): SessionWatch {
  if (isExpressSession(req)) return watchExpressSession(req, res);
  // redisSession marks what reads its session, wherever it is mounted. express-session gives no such marks: mounted
  // behind the cache, its session could not be watched, so a response made behind it counts as made from it.
  return {
    current: () => ({ personal: isPersonal(req), issued: sessionIssued(req) }),
    settle: () => ({
      personal: isPersonal(req) || isExpressSession(req),
      issued: sessionIssued(req),
      identity: sessionIdOf(req),
    }),
  };
}

/** A request behind express-session. */
interface ExpressSessionRequest extends IncomingMessage {
  session?: object | null;
  sessionID?: unknown;
  sessionStore?: unknown;
}

/**
 * Whether express-session (or a middleware of its shape: a `req.sessionStore`) gave `req` its session, and not
 * redisSession. Reads `req.sessionStore` first: a property read on an Express `req` is slow, and most apps have none.
 */
function isExpressSession(req: IncomingMessage): boolean {
  const candidate = req as ExpressSessionRequest;
  if (typeof candidate.sessionStore !== 'object' || candidate.sessionStore === null) return false;
  return isObject(candidate.session) && sessionIdentity(req) === undefined;
}

const isObject = (value: unknown): value is object => typeof value === 'object' && value !== null;

/**
 * Whether the request's cookies carry session `id`: express-session keeps the id of a session it loaded, and makes a
 * new one for a session it could not (no cookie, a forged or unknown one). Its cookie holds the id signed,
 * URI-encoded (`s%3A<id>.<signature>`).
 */
function cookieCarries(req: IncomingMessage, id: string): boolean {
  const cookie = req.headers.cookie;
  return typeof cookie === 'string' && id !== '' && (cookie.includes(id) || cookie.includes(encodeURIComponent(id)));
}

/** What express-session's Session has besides data: its methods, its request, its cookie settings. */
const sessionMachinery = new Set([
  'touch',
  'resetMaxAge',
  'save',
  'reload',
  'destroy',
  'regenerate',
  'req',
  'cookie',
  'constructor',
  'then',
  'toJSON',
]);

/** Whether a session holds data of its own (a field besides its cookie). */
const holdsData = (session: object | null | undefined) =>
  isObject(session) && Object.keys(session).some((key) => key !== 'cookie');

/**
 * Watches express-session's `req.session` (every Session assigned to it, as regenerate and reload do) and
 * `req.sessionID`: any read of data or of the id, and any write, counts, except while the head goes out (when
 * express-session and the middleware in front do their own work on it) and after the response ended.
 */
function watchExpressSession(req: IncomingMessage, res: ServerResponse): SessionWatch {
  const request = req as ExpressSessionRequest;
  let personal = holdsData(request.session);
  let watching = true;
  let headsGoingOut = 0;
  const counts = () => watching && headsGoingOut === 0;
  const watched = new WeakMap<object, object>();
  const handler: ProxyHandler<object> = {
    get(target, key) {
      if (typeof key === 'string' && !sessionMachinery.has(key) && counts()) personal = true;
      return Reflect.get(target, key);
    },
    has(target, key) {
      if (counts()) personal = true;
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      if (counts()) personal = true;
      return Reflect.ownKeys(target);
    },
    getOwnPropertyDescriptor(target, key) {
      if (typeof key === 'string' && !sessionMachinery.has(key) && counts()) personal = true;
      return Reflect.getOwnPropertyDescriptor(target, key);
    },
    set(target, key, value) {
      if (counts()) personal = true;
      return Reflect.set(target, key, value, target);
    },
    deleteProperty(target, key) {
      if (counts()) personal = true;
      return Reflect.deleteProperty(target, key);
    },
    defineProperty(target, key, descriptor) {
      if (counts()) personal = true;
      return Reflect.defineProperty(target, key, descriptor);
    },
  };
  function proxyOf(session: object): object {
    let proxy = watched.get(session);
    if (!proxy) {
      proxy = new Proxy(session, handler);
      watched.set(session, proxy);
    }
    return proxy;
  }
  let session = request.session;
  let sessionId = request.sessionID;
  Object.defineProperty(request, 'session', {
    configurable: true,
    enumerable: true,
    get: () => (isObject(session) ? proxyOf(session) : session),
    set(value: object | null | undefined) {
      session = value;
    },
  });
  Object.defineProperty(request, 'sessionID', {
    configurable: true,
    enumerable: true,
    get() {
      if (counts()) personal = true;
      return sessionId;
    },
    set(value: unknown) {
      sessionId = value;
    },
  });
  const writeHead = res.writeHead;
  res.writeHead = function writeHeadUnwatched(this: ServerResponse, ...args: unknown[]) {
    headsGoingOut++;
    try {
      return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
    } finally {
      headsGoingOut--;
    }
  } as typeof res.writeHead;
  const outcome = () => {
    const id = typeof sessionId === 'string' ? sessionId : '';
    // Marks count too: a cache behind this one answering from one session's entry marks the request.
    return { personal: personal || isPersonal(req), issued: id !== '' && setsCookieWith(res, id) ? id : undefined };
  };
  return {
    current: outcome,
    settle() {
      watching = false;
      return { ...outcome(), identity: sessionIdOf(req) };
    },
  };
}

/** Whether a Set-Cookie of the response carries `id` (express-session's, for a new or refreshed session). */
function setsCookieWith(res: ServerResponse, id: string): boolean {
  const value = res.getHeader('set-cookie');
  if (value === undefined) return false;
  const encoded = encodeURIComponent(id);
  return [value].flat().some((line) => String(line).includes(id) || String(line).includes(encoded));
}
