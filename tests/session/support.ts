import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type { RedisSessionMiddleware } from '../../lib/index.js';

export const secret = 'a-test-secret-that-is-long-enough-0001';

/**
 * Test routes behind `session`: set/get fields, login/logout, save/reload/touch. `configure` runs before the
 * session middleware (app settings), `routes` after it (extra routes that use req.session).
 */
export function sessionApp(
  session: RedisSessionMiddleware,
  configure?: (app: Express) => void,
  routes?: (app: Express) => void,
): Express {
  const app = express();
  configure?.(app);
  app.use(session);
  routes?.(app);
  app.get('/', (req, res) => {
    res.json({ id: req.session.id, data: { ...req.session } });
  });
  app.get('/peek', (req, res) => {
    res.json({ data: { ...req.session } });
  });
  app.get('/set', (req, res) => {
    const session = req.session as unknown as Record<string, unknown>;
    for (const [field, value] of Object.entries(req.query)) session[field] = value;
    res.json({ id: req.session.id });
  });
  app.get('/unset/:field', (req, res) => {
    delete (req.session as unknown as Record<string, unknown>)[req.params.field];
    res.send('ok');
  });
  app.get('/count', (req, res) => {
    const session = req.session as unknown as { count?: number };
    session.count = (session.count ?? 0) + 1;
    res.json({ count: session.count });
  });
  app.get('/login/:user', async (req, res) => {
    await req.session.regenerate();
    (req.session as unknown as Record<string, unknown>).userId = req.params.user;
    res.redirect('/');
  });
  app.get('/regenerate-keep', async (req, res) => {
    await req.session.regenerate({ keepData: true });
    res.send('ok');
  });
  app.get('/logout', async (req, res) => {
    await req.session.destroy();
    res.redirect('/');
  });
  app.get('/save-then-reload', async (req, res) => {
    const session = req.session as unknown as Record<string, unknown>;
    session.saved = 'yes';
    await req.session.save();
    session.saved = 'changed-but-reloaded';
    await req.session.reload();
    res.json({ data: { ...req.session } });
  });
  app.get('/touch', async (req, res) => {
    await req.session.touch();
    res.send('ok');
  });
  app.get('/redirect-after-write', (req, res) => {
    (req.session as unknown as Record<string, unknown>).written = 'before-redirect';
    res.redirect('/');
  });
  // As apps commonly write it: an error's own status and headers (a SessionUnavailableError's 503), else 500.
  app.use(
    (
      error: Error & { status?: number; headers?: Record<string, string> },
      _req: Request,
      res: Response,
      _next: NextFunction,
    ) => {
      res.set(error.headers ?? {});
      res.status(error.status ?? 500).json({ error: error.message });
    },
  );
  return app;
}

/** The `name=value` part of the Set-Cookie for `name`, if any. */
export function setCookie(response: { headers: Record<string, unknown> }, name = 'sid'): string | undefined {
  const headers = (response.headers['set-cookie'] as string[] | undefined) ?? [];
  return headers.find((header) => header.startsWith(`${name}=`));
}

export function cookiePair(response: { headers: Record<string, unknown> }, name = 'sid'): string {
  const header = setCookie(response, name);
  if (!header) throw new Error('no Set-Cookie in the response');
  return header.split(';')[0];
}
