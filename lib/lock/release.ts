// Releasing a lock by its token — and, when the release (or an acquisition that failed on the client) may not have
// been applied, releasing it once Redis answers again, so that no lock is left behind that nobody owns.
import { boundedCall } from '../redis/bounded.js';
import type { RedisClient } from '../redis/client.js';
import { deferUntilRecovered, isOutage } from '../redis/health.js';
import { releaseScript } from './scripts.js';

/** Told what became of a release Redis could not be asked for now. */
export interface ReleaseReporter {
  /** The release is held until Redis answers again (`pending`: how many writes the client holds now). */
  deferred?(pending: number): void;
  /** The client's queue of held writes was full: the lock ends when its lease does. */
  dropped?(): void;
}

/** One lock taken with `token`, to release. */
export interface LockRelease {
  readonly redis: RedisClient;
  readonly key: string;
  readonly token: string;
  /** The longest one attempt waits for Redis. */
  readonly timeoutMs: number;
  readonly report?: ReleaseReporter;
}

/** A message published with the release, in the same step (see `releaseScript`). */
export interface Announcement {
  channel: string;
  message: string;
}

const argsOf = (lock: LockRelease, announce?: Announcement) =>
  announce ? [lock.token, announce.channel, announce.message] : [lock.token];

/**
 * Holds the release of `lock` until its client's Redis answers again, applied before anything else is sent (see
 * `deferUntilRecovered`); one per lock and token, however often it is held.
 */
export function holdRelease(lock: LockRelease, announce?: Announcement): void {
  const pending = deferUntilRecovered(lock.redis, {
    source: 'lock',
    key: `unlock:${lock.key}:${lock.token}`,
    run: (redis) => releaseScript.run(redis, [lock.key], argsOf(lock, announce)),
  });
  if (pending > 0) lock.report?.deferred?.(pending);
  else lock.report?.dropped?.();
}

/**
 * Runs `then` if `sent` (a command that reached the connection) ends without Redis's reply: its connection dropped,
 * so whether Redis applied it is unknown.
 */
function ifUnanswered(sent: Promise<unknown>, then: () => void): void {
  sent.then(
    () => {},
    (error: unknown) => {
      if (isOutage(error)) then();
    },
  );
}

/**
 * Releases `lock` (announcing `announce` with it), within its timeout. When Redis could not be asked (down, circuit
 * open), the release is held until it answers again; when it was asked but did not reply in time, it is left to
 * Redis (it applies it when it gets to it, a late reply changes nothing) unless its connection drops first, which
 * holds it too. Rejects with what went wrong, once that is arranged.
 */
export async function releaseLock(lock: LockRelease, announce?: Announcement): Promise<void> {
  let sent: Promise<unknown> | undefined;
  try {
    await boundedCall(lock.redis, lock.timeoutMs, () => {
      sent = releaseScript.run(lock.redis, [lock.key], argsOf(lock, announce));
      return sent;
    });
  } catch (error) {
    if (isOutage(error)) {
      if (sent) ifUnanswered(sent, () => holdRelease(lock, announce));
      else holdRelease(lock, announce);
    }
    throw error;
  }
}

/**
 * An acquisition of `lock` failed on the client after it was sent (`sent`): no reply in time, or none at all. Redis
 * may have applied it or may apply it yet, and then holds a lock nobody owns until its lease ends — so as soon as its
 * late reply says it was taken, it is released; and if the reply never comes (the connection dropped), the release
 * is held until Redis answers again. Both are token-checked: they never touch a lock someone else holds.
 */
export function releaseIfTaken(lock: LockRelease, sent: Promise<unknown>): void {
  sent.then(
    (reply) => {
      if (Number(reply) > 0) releaseLock(lock).catch(() => {}); // a failure is held, or leaves it to the lease
    },
    (error: unknown) => {
      if (isOutage(error)) holdRelease(lock);
    },
  );
}
