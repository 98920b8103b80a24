// What the cache tests share: an app with the middleware a real app puts in front of the cache, and small helpers.
import compression from 'compression';
import cors from 'cors';
import express, { type Express } from 'express';
import helmet from 'helmet';
import type request from 'supertest';

/** An Express app with compression(), cors() and helmet() in front, as most apps mount them. */
export function stackApp(configure?: (app: Express) => void): Express {
  const app = express();
  configure?.(app);
  app.use(compression({ threshold: 0 }));
  app.use(cors());
  app.use(helmet());
  return app;
}

/** The `name=value` of the first cookie a response sets. */
export const cookieOf = (response: request.Response): string => String(response.headers['set-cookie']).split(';')[0];

/** A promise with its resolver, to hold a handler until a test lets it go on. */
export function gate(): { opened: Promise<void>; open(): void } {
  let open = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
