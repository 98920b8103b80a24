// What this process knows of one client's Redis, shared by every middleware using that client: whether a call may be
// sent now, should wait for the first connection, or must fail at once (the connection is down, or a circuit opened
// by consecutive timeouts); and the writes held back while it is down, applied before their kind is read again.
import { RedisTimeoutError, RedisUnavailableError } from '../errors.js';
import { isCluster, type RedisClient } from './client.js';
import { closedByApp } from './closing.js';
import { isOutage, withTimeout } from './failures.js';
import { type DeferredWrite, type HeldSource, HeldWrites } from './held-writes.js';

export { isOutage } from './failures.js';
export type { DeferredWrite, HeldSource } from './held-writes.js';
export { maxDeferredWrites } from './held-writes.js';

/**
 * What {@link RedisHealth.gate} decides for a call: send it, send it as the one trial of an open circuit (see
 * {@link RedisHealth.trialEnded}), wait for the first connection, or fail at once.
 */
export type Gate = 'go' | 'probe' | 'wait' | 'fail';

/** Consecutive timeouts of a connected client that open the circuit (Redis up but not answering in time). */
export const openAfterFailures = 3;
/** The first wait before probing an open circuit; it doubles after each failed probe, up to the maximum. */
export const firstProbeDelayMs = 100;
export const maxProbeDelayMs = 500;
/** How long a probe (or a drain of held writes) may take when no call's timeout applies. */
export const probeTimeoutMs = 1000;

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * The health of one client. States: *up* (calls go), *down* (calls fail at once: the connection is lost, or the
 * circuit is open). Transitions: the client's `close` → down; consecutive timeouts of a connected client → down
 * (circuit open); the client's `ready`, a probe's reply, or a round of held writes applied → up. Writes held during
 * an outage (see {@link defer}) are applied as soon as Redis answers, and until they are, the readers of their kind
 * still fail at once (a cache read waits for held invalidations, a session load for held logouts; see {@link gate}).
 * A probe is one real call let through when the circuit's wait is over (half-open: every other call still fails at
 * once), so it is answered only when Redis would answer that kind of command (a PING is answered under `CLIENT PAUSE
 * WRITE`, a script is not); its reply closes the circuit even when it comes after the call's deadline. A client that
 * never connected yet makes calls wait for its first connection (within their timeout); once it failed, they fail
 * at once.
 */
export class RedisHealth {
  readonly #client: RedisClient;
  #down = false;
  #closedOnce = false;
  #failures = 0;
  #probeAt = 0;
  #probeDelay = firstProbeDelayMs;
  #probing = false;
  #probeTimer: NodeJS.Timeout | undefined;
  readonly #held = new HeldWrites();
  readonly #waiters = new Set<Waiter>();

  constructor(client: RedisClient) {
    this.#client = client;
    client.on('ready', () => this.#connected());
    client.on('close', () => this.#lost());
    client.on('end', () => this.#lost());
  }

  /** Whether anything fails at once now (the connection is down, the circuit open, or writes are held). */
  get down(): boolean {
    return this.#down || this.#held.size > 0 || this.#client.status !== 'ready';
  }

  /**
   * Whether a call fails at once now, without side effects: when the connection is down or the circuit open, and,
   * for a caller that serves what `waitFor` writes (see {@link gate}), while `waitFor` holds writes.
   */
  failsNow(waitFor: HeldSource | undefined): boolean {
    return this.#down || this.#waits(waitFor) || this.#client.status !== 'ready';
  }

  /** Whether a caller that serves what `waitFor` writes must wait for held writes now. */
  #waits(waitFor: HeldSource | undefined): boolean {
    return waitFor !== undefined && this.#held.count(waitFor) > 0;
  }

  /** How many writes are held. */
  get held(): number {
    return this.#held.size;
  }

  /** How many writes `source` holds (each source has its own bound: see `maxDeferredWrites`). */
  heldBy(source: HeldSource): number {
    return this.#held.count(source);
  }

  /**
   * What to do with a call now; see {@link Gate}. May start a probe (never more than one at a time). A call that
   * serves what Redis holds (a cache read waits for held invalidations, a session load for held logouts: `waitFor`)
   * fails at once until they are applied; one that only counts (a rate limit) does not wait for any.
   */
  gate(timeoutMs: number, waitFor?: HeldSource): Gate {
    const status = this.#client.status;
    if (status === 'ready') {
      const held = this.#waits(waitFor);
      if (!this.#down && !held) return 'go';
      if (this.#held.size > 0) {
        this.#probeIfDue(timeoutMs);
        return 'fail';
      }
      if (this.#probing || Date.now() < this.#probeAt) return 'fail';
      this.#probing = true;
      return 'probe';
    }
    if (status === 'wait') {
      // A lazyConnect client only connects on its first command, which is withheld until it is ready.
      this.#client.connect().catch(() => {});
      return 'wait';
    }
    if ((status === 'connecting' || status === 'connect') && !this.#closedOnce) return 'wait';
    return 'fail';
  }

  /**
   * Whether {@link gate} would fail a call now, without its side effects (it never takes the circuit's trial): for
   * a middleware to skip all of its work on a Redis known to be down.
   */
  wouldFail(waitFor?: HeldSource): boolean {
    const status = this.#client.status;
    if (status === 'ready') {
      const held = this.#waits(waitFor);
      if (!this.#down && !held) return false;
      if (this.#held.size > 0) return true;
      return this.#probing || Date.now() < this.#probeAt;
    }
    if (status === 'wait') return false;
    return !((status === 'connecting' || status === 'connect') && !this.#closedOnce);
  }

  /**
   * The error a call gets when {@link gate} says `'fail'`: made without a stack trace (it would show where the
   * call was made, which the caller knows, and capturing it was the largest cost of failing fast).
   */
  unavailable(): RedisUnavailableError {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return new RedisUnavailableError(this.#failureReason());
    } finally {
      Error.stackTraceLimit = limit;
    }
  }

  #failureReason(): string {
    const status = this.#client.status;
    if (status === 'end') return 'Redis connection is closed';
    if (status !== 'ready') return `Redis is ${status}`;
    if (!this.#down) return 'Redis: applying held writes first';
    return 'Redis is not answering (failing fast until a probe gets a reply)';
  }

  /** Resolves once the client first connects, or rejects within `timeoutMs` (or when its connection fails). */
  whenConnected(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(new RedisUnavailableError(`Redis is ${this.#client.status}`));
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /**
   * Told how the trial call (a `'probe'` of {@link gate}) ended within its deadline; `replied` is told of its reply
   * whenever it comes, so a late reply still ends the outage.
   */
  trialEnded(error: unknown): void {
    this.#probing = false;
    if (error === undefined || !isOutage(error)) this.#replied();
    else if (this.#down) this.#probeFailed();
  }

  /** Redis replied to a trial call (possibly after its deadline, possibly with an error reply): it answers again. */
  trialReplied(): void {
    this.#replied();
  }

  #replied(): void {
    if (!this.#down || this.#client.status !== 'ready') return;
    if (this.#held.size === 0) {
      this.#up();
      return;
    }
    // Redis answers: apply what is held now (the circuit's wait is over), then serve again.
    this.#probeAt = 0;
    this.#probeIfDue(probeTimeoutMs);
  }

  /** Told how each call ended (`undefined`: it succeeded). */
  settled(error: unknown): void {
    if (error === undefined) {
      this.#failures = 0;
      return;
    }
    // Only a wait is worth cutting short: an error reply (BUSY, LOADING) comes at once, and a lost connection
    // says so itself (`close`).
    if (this.#down || !(error instanceof RedisTimeoutError)) return;
    // On a Cluster a failure is one node's: the circuit would cut off the healthy ones too. There, only the
    // cluster's own connection state fails calls at once (see the README).
    if (isCluster(this.#client)) return;
    this.#failures += 1;
    if (this.#failures >= openAfterFailures) this.#goDown();
  }

  /**
   * Holds `write` until Redis answers again (applied before any call is sent), or applies it now if Redis is up.
   * Returns how many writes its source holds, or 0 when it was dropped (that source's bound reached, or the app closed
   * the client).
   */
  defer(write: DeferredWrite): number {
    // A client the app closed will never apply it.
    if (closedByApp(this.#client)) return 0;
    const held = this.#held.add(write);
    if (held === 0) return 0;
    if (this.#client.status === 'ready') this.#probeIfDue(probeTimeoutMs);
    // Applied when the circuit's wait is over, with or without traffic.
    if (!this.#probing) this.#scheduleProbe();
    return held;
  }

  #goDown(): void {
    this.#down = true;
    this.#probeAt = Date.now() + this.#probeDelay;
    this.#scheduleProbe();
  }

  #lost(): void {
    this.#closedOnce = true;
    this.#failures = 0;
    this.#goDown();
    const error = new RedisUnavailableError('Redis connection closed');
    for (const waiter of this.#waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    this.#waiters.clear();
  }

  #connected(): void {
    if (this.#held.size === 0) {
      this.#up();
      return;
    }
    this.#probeAt = 0;
    this.#probeIfDue(probeTimeoutMs);
  }

  /** Applies the held writes if no probe runs and the circuit's wait is over. */
  #probeIfDue(timeoutMs: number): void {
    if (this.#probing || Date.now() < this.#probeAt || this.#client.status !== 'ready') return;
    if (this.#held.size === 0) return;
    this.#probing = true;
    this.#apply(timeoutMs).then(
      () => {
        this.#probing = false;
        // Redis answered: the circuit closes. Writes held while these were applied go next, and only the readers
        // of their kind wait for them (a steady stream of new writes must not keep everything else down).
        this.#up();
        if (this.#held.size > 0) this.#probeIfDue(timeoutMs);
      },
      () => {
        this.#probing = false;
        // On a Cluster the failure is the node's of a held write: the others answer, so only what waits for held
        // writes (see `gate`) keeps failing until it is applied.
        if (isCluster(this.#client)) this.#retryLater();
        else this.#probeFailed();
      },
    );
  }

  #probeFailed(): void {
    this.#down = true;
    this.#retryLater();
  }

  #retryLater(): void {
    this.#probeDelay = Math.min(this.#probeDelay * 2, maxProbeDelayMs);
    this.#probeAt = Date.now() + this.#probeDelay;
    this.#scheduleProbe();
  }

  /** Applies the held writes (in one pipeline, as ioredis auto-pipelines them); rejects if any met an outage. */
  async #apply(timeoutMs: number): Promise<void> {
    const writes = this.#held.snapshot();
    const results = await Promise.allSettled(writes.map(({ held }) => withTimeout(held.run(this.#client), timeoutMs)));
    let outage: unknown;
    results.forEach((result, i) => {
      const { held, version } = writes[i] as (typeof writes)[number];
      if (result.status === 'rejected' && isOutage(result.reason)) {
        outage ??= result.reason;
        return;
      }
      this.#held.settle(held, version, result.status === 'rejected' ? (result.reason as Error) : undefined);
    });
    if (outage !== undefined) throw outage;
  }

  #up(): void {
    this.#down = false;
    this.#failures = 0;
    this.#probeDelay = firstProbeDelayMs;
    this.#probeAt = 0;
    if (this.#probeTimer) clearTimeout(this.#probeTimer);
    this.#probeTimer = undefined;
    for (const waiter of this.#waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve();
    }
    this.#waiters.clear();
  }

  /**
   * While writes are held, a timer probes when the circuit's wait is over, so they are applied without waiting for
   * traffic; it never keeps the process alive.
   */
  #scheduleProbe(): void {
    if (this.#held.size === 0) return;
    if (closedByApp(this.#client)) {
      if (this.#probeTimer) clearTimeout(this.#probeTimer);
      this.#probeTimer = undefined;
      this.#abandonHeld();
      return;
    }
    if (this.#probeTimer) return;
    const delay = Math.max(this.#probeAt - Date.now(), 0);
    this.#probeTimer = setTimeout(() => {
      this.#probeTimer = undefined;
      if (this.#client.status !== 'ready') return this.#scheduleProbe();
      // The wait is over: a timer may fire a millisecond before `Date.now()` says so, and a probe skipped here would
      // leave the held writes waiting for traffic.
      this.#probeAt = Math.min(this.#probeAt, Date.now());
      this.#probeIfDue(probeTimeoutMs);
      // Still held (a probe was running): try again later.
      if (!this.#probing) this.#scheduleProbe();
    }, delay || firstProbeDelayMs);
    this.#probeTimer.unref();
  }

  /**
   * The app closed the client (`quit()`, `disconnect()`, or it ended): held writes can never be applied through it.
   * Each is told so (its caller reports it lost) and nothing polls on.
   */
  #abandonHeld(): void {
    this.#held.abandon(new RedisUnavailableError('the Redis client was closed before these writes could be applied'));
  }
}

const healthByClient = new WeakMap<RedisClient, RedisHealth>();

/** The one {@link RedisHealth} of `client`. */
export function healthOf(client: RedisClient): RedisHealth {
  let health = healthByClient.get(client);
  if (!health) {
    health = new RedisHealth(client);
    healthByClient.set(client, health);
  }
  return health;
}

/**
 * Holds `write` until `client`'s Redis answers again (see {@link RedisHealth.defer}): for a write that failed
 * because Redis was down or slow and must not be lost. Returns how many writes are held (0: the queue was full and
 * `write` was dropped).
 */
export function deferUntilRecovered(client: RedisClient, write: DeferredWrite): number {
  return healthOf(client).defer(write);
}
