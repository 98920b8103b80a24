// The error a session's data gives while Redis cannot be reached (`onRedisError: 'fail'`).

/**
 * The session the request's cookie names could not be read (Redis down or slower than `timeout`, with
 * `onRedisError: 'fail'`), and the route used its data: read or wrote a field, or called `save()`, `reload()`,
 * `touch()` or `regenerate({ keepData: true })`. Carries `status` / `statusCode` 503 and a `Retry-After` header, so
 * Express's own error handler (and any that honours `err.status`) answers `503 Service Unavailable`. `destroy()` and
 * `regenerate()` need no data and work all the same. `cause` is the Redis error.
 */
export class SessionUnavailableError extends Error {
  readonly code = 'SESSION_UNAVAILABLE';
  /** The HTTP status Express's error handler answers with. */
  readonly status = 503;
  readonly statusCode = 503;
  /** The message is safe to show (it names no session). */
  readonly expose = true;
  /** Sent by Express's error handler with the 503. */
  readonly headers: Readonly<Record<string, string>> = { 'Retry-After': '1' };

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'SessionUnavailableError';
  }
}

/** What using the data of a session that could not be read throws (see {@link SessionUnavailableError}). */
export function sessionUnreadable(cause: Error | undefined): SessionUnavailableError {
  // No stack trace: Express's error handler prints it for every such 503, a log line per request during an outage,
  // and it would only show where the route read its session.
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new SessionUnavailableError(
      'redisSession: the session could not be read (Redis cannot be reached); destroy() and regenerate() still work',
      { cause },
    );
  } finally {
    Error.stackTraceLimit = limit;
  }
}
