// The errors of withLock() beyond LockTimeoutError: a lease lost while its holder ran, and a lock asked for twice.

/**
 * The reason a holder's `signal` aborts with: its lease could not be extended before it ended, or the lock no longer
 * holds its token. Another holder may run now; the app decides what `fn` does about it.
 */
export class LockLostError extends Error {
  readonly code = 'LOCK_LOST';
  constructor(
    readonly resource: string,
    message: string,
  ) {
    super(message);
    this.name = 'LockLostError';
  }
}

/**
 * `withLock()` was asked, inside `fn` (or anything `fn` started while it held the lock), for the lock it already
 * holds: locks are not re-entrant, and waiting for itself would only end in a `LockTimeoutError`.
 */
export class LockReentryError extends Error {
  readonly code = 'LOCK_REENTRY';
  constructor(readonly resource: string) {
    super(
      `withLock: the lock on "${resource}" is already held by this call chain (locks are not re-entrant: a nested ` +
        'withLock on the same resource would wait for itself until waitTimeout)',
    );
    this.name = 'LockReentryError';
  }
}
