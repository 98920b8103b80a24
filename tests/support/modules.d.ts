// express-request-id ships types its package.json "exports" hides (and that declare Express.Request as a type
// alias, which would clash with every interface merged into it): what the tests use of it.
declare module 'express-request-id' {
  import type { RequestHandler } from 'express';
  export default function requestId(options?: { setHeader?: boolean; headerName?: string }): RequestHandler;
}
