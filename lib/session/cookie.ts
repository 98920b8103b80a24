import { parse, serialize } from 'cookie';
import type { Request } from 'express';
import type { Lifetime } from './lifetime.js';
import type { SessionConfig } from './options.js';
import { signSessionId } from './signature.js';

/** Reads and writes the session cookie (and the `header` option's header) with the configured attributes. */
export function sessionCookie(config: Pick<SessionConfig, 'name' | 'cookie' | 'header' | 'secrets'>) {
  const { cookie, name, header } = config;
  const attributes = (req: Request) => ({
    httpOnly: cookie.httpOnly,
    sameSite: cookie.sameSite,
    path: cookie.path,
    domain: cookie.domain,
    secure: cookie.secure === 'auto' ? req.secure : cookie.secure,
    partitioned: cookie.partitioned || undefined,
  });
  return {
    /** The signed id the request carries: in the `header` option's header, else in the cookie. */
    read(req: Request): string | undefined {
      if (header !== undefined) {
        const carried = req.headers[header];
        if (typeof carried === 'string' && carried !== '') return carried;
      }
      const cookies = req.headers.cookie ?? '';
      if (!cookies.includes(name)) return undefined;
      try {
        return parse(cookies)[name];
      } catch {
        return undefined;
      }
    },
    /** The signed value of `id` (the cookie value, and the `header` option's header). */
    value(id: string): string {
      return signSessionId(id, config.secrets[0]);
    },
    /** A Set-Cookie for `signed`: persistent for a lifetime in ms, a browser-session cookie for `null`. */
    issue(req: Request, signed: string, lifetime: Lifetime): string {
      const maxAge = lifetime === undefined ? cookie.maxAge : (lifetime ?? undefined);
      return serialize(name, signed, {
        ...attributes(req),
        ...(maxAge !== undefined ? { maxAge: Math.floor(maxAge / 1000), expires: new Date(Date.now() + maxAge) } : {}),
      });
    },
    clear(req: Request): string {
      return serialize(name, '', { ...attributes(req), expires: new Date(0), maxAge: 0 });
    },
  };
}
