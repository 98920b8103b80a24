/** Redis could not be reached (not connected, connection closed) when a middleware needed it. */
export class RedisUnavailableError extends Error {
  readonly code = 'REDIS_UNAVAILABLE';
  constructor(message = 'Redis is unavailable', options?: ErrorOptions) {
    super(message, options);
    this.name = 'RedisUnavailableError';
  }
}

/** Redis did not answer within the middleware's `timeout` option. */
export class RedisTimeoutError extends Error {
  readonly code = 'REDIS_TIMEOUT';
  constructor(readonly timeoutMs: number) {
    super(`Redis did not answer within ${timeoutMs} ms (see the 'timeout' option)`);
    this.name = 'RedisTimeoutError';
  }
}

/** `withLock()` could not acquire its lock within `waitTimeout`. */
export class LockTimeoutError extends Error {
  readonly code = 'LOCK_TIMEOUT';
  constructor(
    readonly resource: string,
    readonly waitTimeoutMs: number,
  ) {
    super(`could not acquire lock "${resource}" within ${waitTimeoutMs} ms (see the 'waitTimeout' option)`);
    this.name = 'LockTimeoutError';
  }
}
