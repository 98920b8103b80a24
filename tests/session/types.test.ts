import type { Request } from 'express';
import { describe, expectTypeOf, it } from 'vitest';
import type { Session, SessionMethods } from '../../lib/index.js';

// What an application writes to type its sessions (it would say 'redisware' instead of the relative path).
declare module '../../lib/index.js' {
  interface SessionData {
    userId: string;
    cart: { sku: string; quantity: number }[];
  }
}

describe('SessionData typing', () => {
  it('types req.session fields from the augmented SessionData, and its methods', () => {
    expectTypeOf<Request['session']>().toEqualTypeOf<Session>();
    expectTypeOf<Session['userId']>().toEqualTypeOf<string | undefined>();
    expectTypeOf<Session['cart']>().toEqualTypeOf<{ sku: string; quantity: number }[] | undefined>();
    expectTypeOf<Session['regenerate']>().toEqualTypeOf<SessionMethods['regenerate']>();
    expectTypeOf<Session['id']>().toEqualTypeOf<string>();
  });

  it('types each method as returning a Promise, or nothing when given an express-session style callback', () => {
    // Never called: only its types are checked.
    const calls = (session: Session) => {
      expectTypeOf(session.destroy()).toEqualTypeOf<Promise<void>>();
      expectTypeOf(session.regenerate({ keepData: true })).toEqualTypeOf<Promise<void>>();
      expectTypeOf(session.save((error?: Error) => void error)).toEqualTypeOf<void>();
      expectTypeOf(session.regenerate(() => {})).toEqualTypeOf<void>();
    };
    expectTypeOf(calls).toBeFunction();
  });
});
