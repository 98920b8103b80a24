/**
 * Redis could not be reached (not connected, connection closed, or known to be down) when a middleware needed it.
 * Carries `status` 503 and a `Retry-After` header: a route that lets it reach Express's error handler (a `withLock`
 * job behind a request, say) answers `503 Service Unavailable`, not 500.
 */
export class RedisUnavailableError extends Error {
  readonly code = 'REDIS_UNAVAILABLE';
  readonly status = 503;
  readonly statusCode = 503;
  readonly headers: Readonly<Record<string, string>> = { 'Retry-After': '1' };
  constructor(message = 'Redis is unavailable', options?: ErrorOptions) {
    super(message, options);
    this.name = 'RedisUnavailableError';
  }
}

/** Redis did not answer within the middleware's `timeout` option. Carries `status` 503, as {@link RedisUnavailableError}. */
export class RedisTimeoutError extends Error {
  readonly code = 'REDIS_TIMEOUT';
  readonly status = 503;
  readonly statusCode = 503;
  readonly headers: Readonly<Record<string, string>> = { 'Retry-After': '1' };
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
