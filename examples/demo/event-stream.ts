// The demo's live view of the `onEvent` stream: every event, counted by type and sent to each open page as a
// server-sent event (GET /events).
import type { Request, Response } from 'express';
import type { RediswareEvent } from '../../lib/index.js';

/** What a page is sent of an event: its fields, with an error as its message (an Error has no JSON form). */
function forPage(event: RediswareEvent): Record<string, unknown> {
  return event.type === 'redis.error' ? { ...event, error: event.error.message } : { ...event };
}

/** Pages listening at once; more are refused (503), so the stream cannot be used to pile up connections. */
const maxPages = 50;
/** Bytes a page may fall behind by; a page that reads slower than events come is dropped. */
const maxBacklog = 256 * 1024;

export function createEventStream() {
  const counts: Record<string, number> = {};
  const pages = new Set<Response>();

  function send(res: Response, name: string, data: unknown): void {
    res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  return {
    /** The `onEvent` hook. */
    onEvent(event: RediswareEvent): void {
      counts[event.type] = (counts[event.type] ?? 0) + 1;
      if (pages.size === 0) return;
      const data = forPage(event);
      for (const page of pages) {
        if (page.writableLength > maxBacklog) {
          pages.delete(page);
          page.destroy();
        } else {
          send(page, 'redisware', data);
        }
      }
    },

    /** GET /events: the counts so far, then each event as it happens. */
    handler(req: Request, res: Response): void {
      if (pages.size >= maxPages) {
        res.status(503).set('Retry-After', '5').send('Too many open event streams.');
        return;
      }
      res.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        // no-transform: compression() in front leaves the stream alone, so a page that stops reading shows up
        // in `writableLength` (compressed, it would pile up inside zlib instead) and is dropped.
        'Cache-Control': 'no-store, no-transform',
        Connection: 'keep-alive',
      });
      send(res, 'counts', counts);
      pages.add(res);
      req.on('close', () => pages.delete(res));
    },
  };
}
