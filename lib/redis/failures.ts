// What a failed Redis call says: an outage (down, unreachable, not answering in time) or a refusal of one command.
import { RedisTimeoutError, RedisUnavailableError } from '../errors.js';

const outageReply = /^(LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN)\b/;
const outageMessage =
  /Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH/;

/**
 * Whether `error` says Redis is unusable (down, unreachable, not answering, loading, busy with a script), as opposed
 * to refusing one command (a WRONGTYPE, a script error): a held write that meets the first kind stays held.
 */
export function isOutage(error: unknown): boolean {
  if (error instanceof RedisTimeoutError || error instanceof RedisUnavailableError) return true;
  if (!(error instanceof Error)) return false;
  if (error.name === 'MaxRetriesPerRequestError' || error.name === 'ClusterAllFailedError') return true;
  return outageReply.test(error.message) || outageMessage.test(error.message);
}

/** `work`, or a {@link RedisTimeoutError} after `timeoutMs`. */
export function withTimeout<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
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
