// A session's own cookie lifetime ("remember me", set through `req.session.cookie`).

/**
 * This session's own cookie lifetime, set through `req.session.cookie`: milliseconds of a persistent cookie (which
 * the idle timeout then follows), `null` for a browser-session cookie, `undefined` for the configured one.
 */
export type Lifetime = number | null | undefined;

/** The longest lifetime a cookie can be given: what Redis expiries and `Date` both hold comfortably. */
export const maxLifetimeMs = 1_000 * 365 * 86_400_000;
