/** Where redisware reports warnings: `console`, pino and most loggers fit. */
export interface Logger {
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/** The logger used when none is given. */
export const consoleLogger: Logger = console;

/**
 * The logger to use for `given` (default: the console). A logger that throws (pino methods passed unbound, say)
 * falls back to the console for that message: logging runs inside Redis error listeners, where a throw would
 * crash the process.
 */
export function resolveLogger(given: Logger | undefined): Logger {
  if (given === undefined) return consoleLogger;
  return {
    warn(...args: unknown[]) {
      try {
        given.warn(...args);
      } catch {
        console.warn(...args);
      }
    },
    error(...args: unknown[]) {
      try {
        given.error(...args);
      } catch {
        console.error(...args);
      }
    },
  };
}

/**
 * Reports a failing dependency once per outage instead of once per failed call: `failed()` logs only on the first
 * failure after a success; `recovered()`, told of every success, logs (and reports, through `onRecovered`) the
 * first one after an outage, with how long it lasted.
 */
export class OutageReporter {
  private downSince = 0;

  /** The name the recovery line gives: the outage message's first word (`rateLimit`, `redisSession`, …). */
  private readonly who: string;

  constructor(
    private readonly logger: Logger,
    private readonly what: string,
    private readonly onRecovered?: (downMs: number) => void,
  ) {
    this.who = what.split(' ', 1)[0] as string;
  }

  failed(error: unknown): void {
    if (this.downSince !== 0) return;
    this.downSince = Date.now();
    const reason = error instanceof Error ? error.message : String(error);
    this.logger.warn(`redisware: ${this.what}: ${reason}`);
  }

  recovered(): void {
    if (this.downSince === 0) return;
    const downMs = Date.now() - this.downSince;
    this.downSince = 0;
    this.logger.warn(`redisware: ${this.who}: Redis answers again (after ${downMs} ms without it)`);
    this.onRecovered?.(downMs);
  }
}
