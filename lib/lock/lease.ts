// Taking a lock once, and holding it: its lease extended while held, its holder told (an aborted signal) as soon as
// the lease is lost, and its release by token — with what Redis may have applied behind a failed call cleaned up.
import { randomBytes } from 'node:crypto';
import { maxTimerMs } from '../options.js';
import { boundedCall } from '../redis/bounded.js';
import type { RedisClient } from '../redis/client.js';
import { LockLostError } from './errors.js';
import { type Announcement, type LockRelease, type ReleaseReporter, releaseIfTaken, releaseLock } from './release.js';
import { acquireScript, extendScript, fenceCounterMs } from './scripts.js';

/** A held lock: released token-checked, optionally announcing it (`message` on `channel`) in the same step. */
export interface HeldLock {
  readonly key: string;
  /** The fencing token of this acquisition (see {@link TryLockOptions.fencing}); 0 without fencing. */
  readonly fencingToken: number;
  /** Aborts, with a {@link LockLostError} as its reason, when the lease is lost while held. */
  readonly signal: AbortSignal;
  /**
   * Releases the lock (token-checked) and stops extending it. When Redis cannot be asked, the release is held until
   * it answers again; rejects with the failure all the same.
   */
  release(announce?: Announcement): Promise<void>;
  /** Stops extending the lease without releasing it: the lock ends by itself when its lease does. */
  abandon(): void;
}

/** Told what happens to a lock behind its holder's back. */
export interface LockReporter extends ReleaseReporter {
  /** The lease was lost while held (the holder's signal aborts with `error`). */
  lost?(error: LockLostError): void;
}

/** How {@link tryLock} takes a lock. */
export interface TryLockOptions {
  /**
   * Take a fencing token with the lock, in the same script: `counter` is the key of its counter (`fenceKey`), or
   * `undefined` when no key can share the lock's Cluster slot (the token is then Redis's clock alone).
   */
  fencing?: { counter: string | undefined };
  /** What the lock is of, as messages name it. @default the lock's key */
  resource?: string;
  report?: LockReporter;
}

/**
 * Tries once to take the lock at `key` for `ttlMs`; resolves to the held lock, or `undefined` if someone holds it.
 * While held, the lease is extended every third of `ttlMs`, until `release()`. If the acquisition fails on the way
 * (no reply within `timeoutMs`, the connection lost) after it was sent, it rejects, and the lock Redis may hold for
 * it is released as soon as that is known (see `releaseIfTaken`).
 */
export async function tryLock(
  redis: RedisClient,
  key: string,
  ttlMs: number,
  timeoutMs: number,
  options: TryLockOptions = {},
): Promise<HeldLock | undefined> {
  const token = randomBytes(16).toString('base64url');
  const { fencing, report } = options;
  const lock: LockRelease = { redis, key, token, timeoutMs, report };
  const keys = fencing?.counter === undefined ? [key] : [key, fencing.counter];
  const args = fencing ? [token, ttlMs, Math.max(ttlMs, fenceCounterMs)] : [token, ttlMs];
  let sentAt = 0;
  let sent: Promise<unknown> | undefined;
  let reply: unknown;
  try {
    reply = await boundedCall(redis, timeoutMs, () => {
      sentAt = Date.now(); // the lease runs from here at the earliest
      sent = acquireScript.run(redis, keys, args);
      return sent;
    });
  } catch (error) {
    if (sent) releaseIfTaken(lock, sent);
    throw error;
  }
  const taken = Number(reply); // a client with `stringNumbers` answers integers as strings
  if (!(taken > 0)) return undefined;
  return new Lease(lock, ttlMs, sentAt, fencing ? taken : 0, options.resource ?? key, report);
}

/**
 * A lock held: extended every third of its lease while held. The lease is known to last until the moment the last
 * successful extension (or the acquisition) was sent, plus `ttlMs`, by this process's clock — Redis applied it then or
 * later. It is lost when an extension finds the lock no longer holding the token, or when that moment passes without
 * a successful extension (Redis slow or unreachable): the signal aborts then, at once.
 */
class Lease implements HeldLock {
  readonly #controller = new AbortController();
  readonly signal = this.#controller.signal;
  readonly key: string;
  #leaseEnds: number;
  #lapse: NodeJS.Timeout | undefined;
  readonly #renew: NodeJS.Timeout;
  #extending = false;
  /** Released or abandoned: nothing more is extended. */
  #done = false;
  #abandoned = false;

  constructor(
    private readonly lock: LockRelease,
    private readonly ttlMs: number,
    takenAt: number,
    readonly fencingToken: number,
    private readonly resource: string,
    private readonly report: LockReporter | undefined,
  ) {
    this.key = lock.key;
    this.#leaseEnds = takenAt + ttlMs;
    this.#watchLapse();
    this.#renew = setInterval(() => this.#extend(), Math.min(maxTimerMs, Math.max(1, Math.floor(ttlMs / 3))));
    this.#renew.unref();
  }

  #watchLapse(): void {
    if (this.#lapse) clearTimeout(this.#lapse);
    this.#lapse = setTimeout(
      // After this turn's I/O: an extension's reply already received (the event loop was busy) is read first.
      () => setImmediate(() => this.#checkLapse()),
      Math.min(maxTimerMs, Math.max(0, this.#leaseEnds - Date.now())),
    );
    this.#lapse.unref();
  }

  #checkLapse(): void {
    if (this.#done || this.signal.aborted) return;
    if (Date.now() < this.#leaseEnds) {
      this.#watchLapse(); // extended meanwhile, or a timer that fired early
      return;
    }
    this.#lose(
      `the lease on lock "${this.resource}" lapsed: it could not be extended within its ${this.ttlMs} ms ` +
        '(Redis slow or unreachable), so another holder may have the lock now',
    );
  }

  #extend(): void {
    if (this.#extending || this.#done || this.signal.aborted) return;
    this.#extending = true;
    const { redis, key, token, timeoutMs } = this.lock;
    const sentAt = Date.now();
    let late = false;
    boundedCall(redis, timeoutMs, () => {
      const sent = extendScript.run(redis, [key], [token, this.ttlMs]);
      // Read whenever it comes: a reply after the call's deadline still says what Redis did.
      sent.then(
        (reply) => this.#extended(Number(reply) === 1, sentAt, late),
        () => {}, // no reply: the lapse timer decides
      );
      return sent;
    })
      .catch(() => {
        late = true;
      })
      .finally(() => {
        this.#extending = false;
      });
  }

  /** An extension sent at `sentAt` was answered (`late`: after its call's deadline). */
  #extended(extended: boolean, sentAt: number, late: boolean): void {
    if (this.#done) {
      // Applied after its holder gave up on it, it may have outlived the release (a command re-sent after a
      // reconnection, say): released again, by token.
      if (extended && late && !this.#abandoned) releaseLock(this.lock).catch(() => {});
      return;
    }
    if (this.signal.aborted) return;
    if (!extended) {
      this.#lose(
        `lock "${this.resource}" no longer holds this holder's token (its lease ended, or another holder took it ` +
          'over), so another holder may have the lock now',
      );
      return;
    }
    if (sentAt + this.ttlMs > this.#leaseEnds) {
      this.#leaseEnds = sentAt + this.ttlMs;
      this.#watchLapse();
    }
  }

  #lose(message: string): void {
    if (this.#done || this.signal.aborted) return;
    this.#stop();
    const error = new LockLostError(this.resource, message);
    this.#controller.abort(error);
    this.report?.lost?.(error);
  }

  #stop(): void {
    clearInterval(this.#renew);
    if (this.#lapse) clearTimeout(this.#lapse);
    this.#lapse = undefined;
  }

  abandon(): void {
    this.#done = true;
    this.#abandoned = true;
    this.#stop();
  }

  async release(announce?: Announcement): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    this.#stop();
    await releaseLock(this.lock, announce);
  }
}
