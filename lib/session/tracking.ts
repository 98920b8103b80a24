// What user code holds as `req.session`: the session behind a Proxy that notices the first change, so that only a
// request that may change its session hooks its response.
import { markPersonal, markSessionIssued } from '../http/marks.js';
import { RedisSession, stateOf, type Tracked, trackedSession } from './model.js';
import { isReservedField } from './reserved.js';
import { mayChange, type SessionState } from './state.js';
import { sessionUnreadable } from './unavailable.js';

const isObject = (value: unknown): value is object => typeof value === 'object' && value !== null;

/**
 * What user code gets as `req.session`: the session behind a Proxy that calls {@link mayChange} on the first
 * operation that can change it: a write, a delete, a definition, or a read that hands out an object (which
 * could then be changed in place). A request that only reads strings, numbers and booleans never hooks its
 * response. Writes, definitions and deletions of a reserved name (see `isReservedField`) are ignored. Reading
 * anything of the session's (see `readsData`) marks the request personal (see `markPersonal`), so the response
 * cache never shares what it responds with. Everything else behaves as on the session itself. A session whose data
 * could not be read (`onRedisError: 'fail'`) throws a `SessionUnavailableError` on any of these but a read of its
 * id or of a method.
 */
const trackChanges: ProxyHandler<RedisSession> = {
  get(target, key) {
    if (key === trackedSession) return target;
    if (readsData(target, key)) {
      const s = stateOf(target);
      if (key !== 'id') dataUsed(s);
      markPersonal(s.req);
    }
    const value: unknown = Reflect.get(target, key, target);
    if (isObject(value)) mayChange(stateOf(target), false);
    return value;
  },
  getOwnPropertyDescriptor(target, key) {
    dataUsed(stateOf(target));
    const descriptor = Reflect.getOwnPropertyDescriptor(target, key);
    if (descriptor) markPersonal(stateOf(target).req);
    if (isObject(descriptor?.value)) mayChange(stateOf(target), false);
    return descriptor;
  },
  has(target, key) {
    if (readsData(target, key) && key !== 'id') dataUsed(stateOf(target));
    markPersonal(stateOf(target).req);
    return Reflect.has(target, key);
  },
  ownKeys(target) {
    dataUsed(stateOf(target));
    markPersonal(stateOf(target).req);
    return Reflect.ownKeys(target);
  },
  set(target, key, value) {
    if (typeof key === 'string' && isReservedField(key)) return true;
    written(target);
    return Reflect.set(target, key, value, target);
  },
  deleteProperty(target, key) {
    if (typeof key === 'string' && isReservedField(key)) return true;
    written(target);
    return Reflect.deleteProperty(target, key);
  },
  defineProperty(target, key, descriptor) {
    if (typeof key === 'string' && isReservedField(key)) return true;
    written(target);
    return Reflect.defineProperty(target, key, descriptor);
  },
};

/**
 * User code writes into the session: the request is personal, and the session may change. A new session written
 * while detached (read-only: a background refresh) is one this response would have given its client, had it been
 * a client's: it says so (see `markSessionIssued`), so that the response cache never shares what it made.
 */
function written(target: RedisSession): void {
  const s = stateOf(target);
  dataUsed(s);
  markPersonal(s.req);
  if (s.detached && s.isNew) markSessionIssued(s.req, target.id);
  mayChange(s, false);
}

/**
 * The session's data is used. When it could not be read (see `SessionState.unread`) and the use is synchronous
 * within the router's dispatch on Express 5 (a middleware or a route, an async one's first step included), this
 * throws: the route stops before acting on a session it could not read, and Express answers 503. Anywhere else a
 * throw would reach no error handler (Express 4 drops a rejected route; a callback, a timer or a `finish` listener
 * has none), and would end the process: there the data reads as empty instead, nothing written to it is saved, and
 * the response is answered 503 when it ends (see `commitBeforeEnd`), unless the route destroyed the session.
 */
function dataUsed(s: SessionState): void {
  const unread = s.unread;
  if (!unread?.error) return;
  if (unread.dispatching && routesCatchRejections(s.req)) throw sessionUnreadable(unread.error);
  unread.answerUnavailable = true;
  mayChange(s, false);
}

/** Express 4 apps have `lazyrouter()` (gone in Express 5, whose router passes a route's rejection to `next`). */
function routesCatchRejections(req: { app?: unknown }): boolean {
  const app = req.app as { lazyrouter?: unknown } | undefined;
  return app !== undefined && typeof app.lazyrouter !== 'function';
}

/**
 * Whether reading `key` hands out something of this session's: a data field, its id or its cookie (the methods do
 * not; a read of a missing field does too, since its absence is this session's as well).
 */
function readsData(target: RedisSession, key: PropertyKey): boolean {
  if (typeof key !== 'string') return false;
  switch (key) {
    case 'save':
    case 'reload':
    case 'touch':
    case 'regenerate':
    case 'destroy':
    case 'then':
    case 'toJSON':
    case 'constructor':
      return Object.hasOwn(target, key);
    default:
      return true;
  }
}

/**
 * `session` as user code should hold it (see {@link trackChanges}); `hookResponse` puts the middleware's hooks
 * on the response once they are needed.
 */
export function tracked(session: RedisSession, hookResponse: (hook: 'end' | 'headers') => void): RedisSession {
  stateOf(session).hookResponse = hookResponse;
  return new Proxy(session, trackChanges);
}

/**
 * What `perSession` caching keys by (see `provideSessionIdentity`): the id of the session behind `candidate` when it
 * is stored, `''` when it is new (nobody's yet) or destroyed, `undefined` when it is not one of ours.
 */
export function sessionIdentity(candidate: unknown): string | undefined {
  if (typeof candidate !== 'object' || candidate === null) return undefined;
  const session = (candidate as Tracked)[trackedSession];
  if (!(session instanceof RedisSession)) return undefined;
  const s = stateOf(session);
  // A detached session is either new (Redis failed: `'continue'`) or loaded read-only for a background refresh of
  // its own entry, which is this session's.
  return s.isNew || s.destroyed ? '' : (s.id ?? '');
}
