// Marks that middlewares put on a request for each other, without importing each other: both import this.
import type { IncomingMessage } from 'node:http';

// Requests whose response depends on who asks: a middleware that hands out per-client data (the session) marks
// them, and the response cache never shares what they produce.

const personal = new WeakSet<IncomingMessage>();

/** Marks `req`: what it responds with was made from data of this client's (its session). */
export function markPersonal(req: IncomingMessage): void {
  personal.add(req);
}

/** Whether {@link markPersonal} marked `req`. */
export function isPersonal(req: IncomingMessage): boolean {
  return personal.has(req);
}

// Requests the response cache replays through the app to refresh a stale entry in the background: no client
// made them, so a rate limiter does not count them. A refresh of one session's entry (`perSession`) needs that
// session, read-only: it is loaded for it, but never extended, saved or given a cookie.
const background = new WeakMap<IncomingMessage, { session: boolean }>();

/** Marks `req` as a background refresh of the response cache's (see {@link isBackground}). */
export function markBackground(req: IncomingMessage, needs: { session: boolean } = { session: false }): void {
  background.set(req, needs);
}

/** Whether `req` is a background refresh no client made. */
export function isBackground(req: IncomingMessage): boolean {
  return background.has(req);
}

/** Whether `req` is a background refresh of an entry of its session's, which must be read for it. */
export function backgroundNeedsSession(req: IncomingMessage): boolean {
  return background.get(req)?.session === true;
}

// The session a request has, as the response cache keys per-session entries by it (`perSession`): whoever hands
// out sessions says which one a request has.
type SessionIdentity = (req: IncomingMessage) => string | undefined;
const identities = new Set<SessionIdentity>();

/** Registers how to tell a request's session: its id when stored, `''` for none yet, `undefined` when not yours. */
export function provideSessionIdentity(identity: SessionIdentity): void {
  identities.add(identity);
}

/** The id of `req`'s stored session, `''` when it has none yet, `undefined` when no session middleware of ours ran. */
export function sessionIdentity(req: IncomingMessage): string | undefined {
  for (const identity of identities) {
    const id = identity(req);
    if (id !== undefined) return id;
  }
  return undefined;
}

// The session a response leaves its client with, when it issues one (a cookie or header carrying a new or
// refreshed session id) or clears it: whoever hands out sessions marks it, as the headers go out.
const issued = new WeakMap<IncomingMessage, string>();

/** Marks the response to `req` as issuing session `id` to its client (`''`: clearing the client's session). */
export function markSessionIssued(req: IncomingMessage, id: string): void {
  issued.set(req, id);
}

/** The session id the response to `req` issues (`''`: clears), or `undefined` when it issues none. */
export function sessionIssued(req: IncomingMessage): string | undefined {
  return issued.get(req);
}
