// What this process knows of one client's Redis, shared by every middleware using that client: whether a call may be
// sent now, should wait for the first connection, or must fail at once (the connection is down, or a circuit opened
// by consecutive failures); and the writes held back while it is down, applied before anything is sent again.
import { RedisTimeoutError, RedisUnavailableError } from '../errors.js';
import { isCluster, type RedisClient } from './client.js';
import { closedByApp } from './closing.js';

/** A write that must not be lost (a logout, an invalidation, a lock's release), held while Redis is down. */
export interface DeferredWrite {
  /** Writes of the same key are one write: a later one replaces an earlier one still held. */
  key: string;
  /** Applies the write; must be idempotent (it may have been applied before the failure that deferred it). */
  run(redis: RedisClient): Promise<unknown>;
  /** Told once: when the write was applied (no error), or given up on (an error that is not an outage). */
  settled?(error?: Error): void;
}

/**
 * What {@link RedisHealth.gate} decides for a call: send it, send it as the one trial of an open circuit (see
 * {@link RedisHealth.trialEnded}), wait for the first connection, or fail at once.
 */
export type Gate = 'go' | 'probe' | 'wait' | 'fail';

/** The most writes held per client; past it a write is dropped (and its caller told so). */
export const maxDeferredWrites = 10_000;
/** Consecutive timeouts of a connected client that open the circuit (Redis up but not answering in time). */
export const openAfterFailures = 3;
/** The first wait before probing an open circuit; it doubles after each failed probe, up to the maximum. */
export const firstProbeDelayMs = 100;
export const maxProbeDelayMs = 500;
/** How long a probe (or a drain of held writes) may take when no call's timeout applies. */
export const probeTimeoutMs = 1000;

const outageReply = /^(LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN)\b/;
const outageMessage =
  /Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH/;

/**
 * Whether `error` says Redis is unusable (down, unreachable, not answering, loading, busy with a script), as opposed
 * to refusing one command (a WRONGTYPE, a script error): only the first kind opens the circuit.
 */
export function isOutage(error: unknown): boolean {
  if (error instanceof RedisTimeoutError || error instanceof RedisUnavailableError) return true;
  if (!(error instanceof Error)) return false;
  if (error.name === 'MaxRetriesPerRequestError' || error.name === 'ClusterAllFailedError') return true;
  return outageReply.test(error.message) || outageMessage.test(error.message);
}

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * The health of one client. States: *up* (calls go), *down* (calls fail at once: the connection is lost, or the
 * circuit is open), and on the way back *draining* (held writes are applied; calls still fail). Transitions: the
 * client's `close` → down; consecutive timeouts of a connected client → down (circuit open); the client's `ready`,
 * or a probe's reply, → draining → up once every held write is applied. A probe is one real call let through when
 * the circuit's wait is over (half-open: every other call still fails at once), so it is answered only when Redis
 * would answer that kind of command (a PING is answered under `CLIENT PAUSE WRITE`, a script is not); its reply
 * closes the circuit even when it comes after the call's deadline. A client that never connected yet makes calls
 * wait for its first connection (within their timeout); once it failed, they fail at once.
 */
export class RedisHealth {
  readonly #client: RedisClient;
  #down = false;
  #downSince = 0;
  #closedOnce = false;
  #failures = 0;
  #probeAt = 0;
  #probeDelay = firstProbeDelayMs;
  #probing = false;
  #probeTimer: NodeJS.Timeout | undefined;
  readonly #held = new Map<string, DeferredWrite>();
  readonly #waiters = new Set<Waiter>();

  constructor(client: RedisClient) {
    this.#client = client;
    client.on('ready', () => this.#connected());
    client.on('close', () => this.#lost());
    client.on('end', () => this.#lost());
  }

  /** Whether calls fail at once now (the connection is down, the circuit open, or held writes are being applied). */
  get down(): boolean {
    return this.failsNow(true);
  }

  /**
   * Whether a call fails at once now, without side effects: when the connection is down or the circuit open, and,
   * for a caller that serves what Redis holds (`heldWritesFirst`), while writes are held.
   */
  failsNow(heldWritesFirst: boolean): boolean {
    return this.#down || (heldWritesFirst && this.#held.size > 0) || this.#client.status !== 'ready';
  }

  /** How many writes are held. */
  get held(): number {
    return this.#held.size;
  }

  /**
   * What to do with a call now; see {@link Gate}. May start a probe (never more than one at a time). A call that
   * serves what Redis holds (a cache read, a session load: `heldWritesFirst`, the default) waits for the held writes
   * (an invalidation, a logout) to be applied; one that only counts (a rate limit) does not.
   */
  gate(timeoutMs: number, heldWritesFirst = true): Gate {
    const status = this.#client.status;
    if (status === 'ready') {
      const held = this.#held.size > 0;
      if (!this.#down && (!held || !heldWritesFirst)) return 'go';
      if (held) {
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
  wouldFail(heldWritesFirst = true): boolean {
    const status = this.#client.status;
    if (status === 'ready') {
      const held = this.#held.size > 0;
      if (!this.#down && (!held || !heldWritesFirst)) return false;
      if (held) return true;
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
    if (this.#held.size > 0 && !this.#down) return 'Redis: applying held writes first';
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
   * Returns the number of writes held, or 0 when the queue is full and `write` was dropped.
   */
  defer(write: DeferredWrite): number {
    const previous = this.#held.get(write.key);
    if (!previous && this.#held.size >= maxDeferredWrites) return 0;
    let kept = write;
    if (previous?.settled) {
      // The earlier write's caller is told when the one that replaced it is applied.
      const settled = write.settled;
      kept = {
        ...write,
        settled(error) {
          previous.settled?.(error);
          settled?.(error);
        },
      };
    }
    this.#held.delete(write.key); // a replaced write moves to the end: the order of the last request wins
    this.#held.set(write.key, kept);
    if (this.#client.status === 'ready') this.#probeIfDue(probeTimeoutMs);
    // Applied when the circuit's wait is over, with or without traffic.
    if (!this.#probing) this.#scheduleProbe();
    return this.#held.size;
  }

  #goDown(): void {
    if (!this.#down) {
      this.#down = true;
      this.#downSince = Date.now();
    }
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
    this.#apply([...this.#held.values()], timeoutMs).then(
      () => {
        this.#probing = false;
        // Writes held while these were applied go first.
        if (this.#held.size > 0) this.#probeIfDue(timeoutMs);
        else this.#up();
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
    if (!this.#down) {
      this.#down = true;
      this.#downSince = Date.now();
    }
    this.#retryLater();
  }

  #retryLater(): void {
    this.#probeDelay = Math.min(this.#probeDelay * 2, maxProbeDelayMs);
    this.#probeAt = Date.now() + this.#probeDelay;
    this.#scheduleProbe();
  }

  /** Applies `writes` (in one pipeline, as ioredis auto-pipelines them); rejects if any met an outage. */
  async #apply(writes: DeferredWrite[], timeoutMs: number): Promise<void> {
    const results = await Promise.allSettled(writes.map((write) => withTimeout(write.run(this.#client), timeoutMs)));
    let outage: unknown;
    results.forEach((result, i) => {
      const write = writes[i] as DeferredWrite;
      if (result.status === 'rejected' && isOutage(result.reason)) {
        outage ??= result.reason;
        return;
      }
      // A write replaced while it was applied is told through its replacement (which carries its `settled`).
      if (this.#held.get(write.key) !== write) return;
      this.#held.delete(write.key);
      write.settled?.(result.status === 'rejected' ? (result.reason as Error) : undefined);
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
    if (this.#held.size === 0 || this.#probeTimer) return;
    if (closedByApp(this.#client)) {
      this.#abandonHeld();
      return;
    }
    const delay = Math.max(this.#probeAt - Date.now(), 0);
    this.#probeTimer = setTimeout(() => {
      this.#probeTimer = undefined;
      if (this.#client.status === 'ready') this.#probeIfDue(probeTimeoutMs);
      else this.#scheduleProbe();
    }, delay || firstProbeDelayMs);
    this.#probeTimer.unref();
  }

  /**
   * The app closed the client (`quit()`, `disconnect()`, or it ended): held writes can never be applied through it.
   * Each is told so (its caller reports it lost) and nothing polls on.
   */
  #abandonHeld(): void {
    const held = [...this.#held.values()];
    this.#held.clear();
    const error = new RedisUnavailableError('the Redis client was closed before these writes could be applied');
    for (const write of held) write.settled?.(error);
  }

  /** When the current outage began (ms since the epoch), or 0 when up. */
  get downSince(): number {
    return this.down ? this.#downSince : 0;
  }
}

/** `work`, or a {@link RedisTimeoutError} after `timeoutMs`. */
function withTimeout<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new RedisTimeoutError(timeoutMs)), timeoutMs);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
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
