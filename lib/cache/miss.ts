// A MISS: concurrent misses for one entry run the handler once. In this process they share its flight; across
// processes the first takes the entry's lock and the others wait until it announces that it finished (at most
// `lock.wait`). A leader whose response will not be stored says so at once, so nobody waits for it.
import type { NextFunction, Request, Response } from 'express';
import { now as clock, since } from '../events.js';
import { answerFrom, sendAnswer } from './answer.js';
import type { Lookup, RouteContext } from './context.js';
import type { StoredResponse } from './entry.js';
import { varyValue } from './http.js';
import { produce } from './produce.js';

/** A stale entry found for the request: it may answer should the handler fail, and is revalidated with it. */
export interface StaleEntry {
  fallback?: StoredResponse;
  revalidate?: StoredResponse;
}

/** Whether `entry`'s variant is the one `req` asks for (the values of the request headers its `Vary` names). */
export function varyMatches(entry: StoredResponse, req: Request): boolean {
  if (!entry.vary) return true;
  for (const [name, value] of Object.entries(entry.vary)) {
    if (varyValue(req.headers, name) !== value) return false;
  }
  return true;
}

/** Answers with the entry another request produced, reporting the wait. */
function serveCoalesced(
  ctx: RouteContext,
  req: Request,
  res: Response,
  entry: StoredResponse,
  lookup: Lookup,
  across: 'process' | 'instances',
  started: number,
): void {
  const { route, path, eventKey: key } = lookup;
  ctx.emit?.({ type: 'cache.coalesced', route, path, key, across, durationMs: since(started) });
  sendAnswer(res, answerFrom(req, entry, 'HIT', ctx.rules.httpMode));
}

/** Resolves with `outcome`, or `undefined` after `waitMs`. */
async function within<T>(outcome: Promise<T | undefined>, waitMs: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), waitMs);
  });
  try {
    return await Promise.race([outcome, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Produces the response of a MISS (or a stale entry's revalidation), coalesced with concurrent ones. */
export async function missPath(
  ctx: RouteContext,
  req: Request,
  res: Response,
  next: NextFunction,
  lookup: Lookup,
  stale: StaleEntry = {},
): Promise<void> {
  const { store, coalescer, lock: lockConfig, emit } = ctx;
  const { fallback, revalidate } = stale;
  const produceOwn = (storeIt = true, onNotStored?: () => void) =>
    produce(ctx, req, res, next, lookup, { label: 'MISS', store: storeIt, fallback, revalidate, onNotStored });
  if (!lockConfig) {
    await produceOwn();
    return;
  }
  const running = coalescer.flight(lookup.base);
  if (running) {
    const started = emit ? clock() : 0;
    const shared = await within(running.outcome, lockConfig.wait);
    if (shared && varyMatches(shared, req)) return serveCoalesced(ctx, req, res, shared, lookup, 'process', started);
    // Not a response for this request (not stored, another variant, or too slow): produce and store its own.
    await produceOwn();
    return;
  }
  const flight = coalescer.begin(lookup.base);
  const lockKey = store.keys.lock(lookup.base);
  const lock = await coalescer.lock(lockKey, lockConfig.ttl);
  if (lock === undefined) {
    // Another process is producing it: wait until it says it finished, then use its entry, or produce ours.
    const started = emit ? clock() : 0;
    const finished = await coalescer.waitForHolder(lookup.base, lockKey, lockConfig.wait);
    const found = finished ? (await store.readResponse(lookup.base, req).catch(() => undefined))?.found : undefined;
    if (found && found.entry.freshUntil > Date.now() && varyMatches(found.entry, req)) {
      flight.settle(found.entry);
      return serveCoalesced(ctx, req, res, found.entry, lookup, 'instances', started);
    }
    // Finished without an entry for us: produce and store our own. Timed out: produce it, and leave the storing
    // to the process that holds the lock.
    const entry = await produceOwn(finished, () => flight.settle(undefined));
    flight.settle(entry);
    return;
  }
  let announced = false;
  const announce = () => {
    if (announced || !lock) return;
    announced = true;
    void coalescer.finish(lock, lookup.base);
  };
  try {
    const entry = await produceOwn(true, () => {
      flight.settle(undefined);
      announce();
    });
    flight.settle(entry);
  } finally {
    flight.settle(undefined);
    announce();
  }
}
