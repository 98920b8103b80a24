import { parse, serialize } from 'cookie';
import type { Request } from 'express';
import type { SessionConfig } from './options.js';
import { signSessionId } from './signature.js';

/** Reads and writes the session cookie with the configured attributes. */
export function sessionCookie(config: Pick<SessionConfig, 'name' | 'cookie'> & { secrets: string[] }) {
  const { cookie, name } = config;
  const attributes = (req: Request) => ({
    httpOnly: cookie.httpOnly,
    sameSite: cookie.sameSite,
    path: cookie.path,
    domain: cookie.domain,
    secure: cookie.secure === 'auto' ? req.secure : cookie.secure,
  });
  return {
    /** The raw cookie value, if any (the first one when the header repeats the name). */
    read(req: Request): string | undefined {
      const header = req.headers.cookie ?? '';
      if (!header.includes(name)) return undefined;
      try {
        return parse(header)[name];
      } catch {
        return undefined;
      }
    },
    issue(req: Request, id: string): string {
      const maxAge = cookie.maxAge;
      return serialize(name, signSessionId(id, config.secrets[0]), {
        ...attributes(req),
        ...(maxAge !== undefined ? { maxAge: Math.floor(maxAge / 1000), expires: new Date(Date.now() + maxAge) } : {}),
      });
    },
    clear(req: Request): string {
      return serialize(name, '', { ...attributes(req), expires: new Date(0), maxAge: 0 });
    },
  };
}
