// `req.session.cookie`: the session's cookie as express-session shows it, and the lifetime a session can give itself.
import { maxLifetimeMs } from './lifetime.js';
import { lifetimeSet, type SessionState } from './state.js';

/**
 * `req.session.cookie`, as express-session has it: `maxAge` (milliseconds; `null` for a browser-session cookie) and
 * `expires` (a `Date`, or `null` / `false`) give this session a lifetime of its own — "remember me" — which its
 * cookie and its idle timeout on the server then follow (the absolute timeout still caps it). The other attributes
 * are the middleware's, read-only.
 */
export class SessionCookie {
  readonly #state: SessionState;

  constructor(state: SessionState) {
    this.#state = state;
  }

  /** This session's cookie lifetime in milliseconds, or `null` for a browser-session cookie. */
  get maxAge(): number | null {
    const s = this.#state;
    return s.lifetime !== undefined ? s.lifetime : (s.storage.config.cookie.maxAge ?? null);
  }

  set maxAge(value: number | null | undefined) {
    if (value === undefined) value = null; // express-session takes undefined for a browser-session cookie too
    if (
      value !== null &&
      !(typeof value === 'number' && Number.isFinite(value) && value > 0 && value <= maxLifetimeMs)
    ) {
      throw new TypeError(
        `req.session.cookie.maxAge is invalid: ${String(value)} (expected milliseconds > 0, or null for a browser-session cookie)`,
      );
    }
    const lifetime = value === null ? null : Math.round(value);
    if (lifetime === this.maxAge && this.#state.lifetime !== undefined) return;
    lifetimeSet(this.#state, lifetime);
  }

  /** When the cookie expires (from now), or `null` for a browser-session cookie. */
  get expires(): Date | null {
    const maxAge = this.maxAge;
    return maxAge === null ? null : new Date(Date.now() + maxAge);
  }

  set expires(value: Date | null | false | undefined) {
    if (value === null || value === false || value === undefined) {
      this.maxAge = null;
      return;
    }
    if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
      throw new TypeError(
        `req.session.cookie.expires is invalid: ${String(value)} (expected a Date, or null for a browser-session cookie)`,
      );
    }
    this.maxAge = Math.max(1, value.getTime() - Date.now());
  }

  /** The lifetime the session was given, as express-session names it. */
  get originalMaxAge(): number | null {
    return this.maxAge;
  }

  get httpOnly(): boolean {
    return this.#state.storage.config.cookie.httpOnly;
  }

  get secure(): boolean {
    const secure = this.#state.storage.config.cookie.secure;
    return secure === 'auto' ? this.#state.req.secure : secure;
  }

  get sameSite(): 'lax' | 'strict' | 'none' | boolean {
    return this.#state.storage.config.cookie.sameSite;
  }

  get path(): string {
    return this.#state.storage.config.cookie.path;
  }

  get domain(): string | undefined {
    return this.#state.storage.config.cookie.domain;
  }

  get partitioned(): boolean {
    return this.#state.storage.config.cookie.partitioned;
  }

  toJSON() {
    const { maxAge, expires, httpOnly, secure, sameSite, path, domain, partitioned } = this;
    return { maxAge, expires, httpOnly, secure, sameSite, path, domain, partitioned };
  }
}
