// Requests whose response depends on who asks: a middleware that hands out per-client data (the session) marks
// them, and the response cache never shares what they produce. Neither imports the other: both import this.
import type { IncomingMessage } from 'node:http';

const personal = new WeakSet<IncomingMessage>();

/** Marks `req`: what it responds with was made from data of this client's (its session). */
export function markPersonal(req: IncomingMessage): void {
  personal.add(req);
}

/** Whether {@link markPersonal} marked `req`. */
export function isPersonal(req: IncomingMessage): boolean {
  return personal.has(req);
}
