// The demo left running where others can reach it: the event page shows a visitor only what their own requests
// caused (anything else with its ids hashed), login takes a demo user's password, and no visitor is shown another's
// session ids, keys, IPs or paths.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { createDemoApp } from '../../examples/demo/app.js';
import { createEventStream } from '../../examples/demo/event-stream.js';
import { useTestRedis } from '../support/redis.js';

/** The README's demo users. */
const ada = { user: 'ada', password: 'lovelace' };
const grace = { user: 'grace', password: 'hopper' };

const servers: Server[] = [];
const streams: AbortController[] = [];
afterEach(() => {
  for (const stream of streams.splice(0)) stream.abort();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

async function listen(app: express.Express): Promise<string> {
  const server = await new Promise<Server>((resolve) => {
    const listening = app.listen(0, '127.0.0.1', () => resolve(listening));
  });
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface StreamMessage {
  event: string;
  data: Record<string, unknown>;
}

/** An open `GET /events`: what it was sent so far, raw and parsed. */
class EventLog {
  raw = '';
  messages: StreamMessage[] = [];

  /** The `redisware` events so far. */
  get events() {
    return this.messages.filter((m) => m.event === 'redisware').map((m) => m.data);
  }

  async waitFor(what: string, predicate: (log: EventLog) => boolean): Promise<void> {
    const until = Date.now() + 5_000;
    while (!predicate(this)) {
      if (Date.now() > until) throw new Error(`no ${what} in the stream: ${this.raw}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** A browser: keeps its cookies, sends `headers` on every request, opens the event stream. */
class Visitor {
  readonly cookies = new Map<string, string>();
  constructor(
    private readonly base: string,
    private readonly headers: Record<string, string> = {},
  ) {}

  async fetch(path: string, init: { method?: string; json?: unknown; headers?: Record<string, string> } = {}) {
    const headers = new Headers({ Accept: 'application/json', ...this.headers, ...init.headers });
    if (this.cookies.size > 0) {
      headers.set('Cookie', [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; '));
    }
    if (init.json !== undefined) headers.set('Content-Type', 'application/json');
    const response = await fetch(`${this.base}${path}`, {
      method: init.method ?? 'GET',
      headers,
      body: init.json === undefined ? undefined : JSON.stringify(init.json),
      redirect: 'manual',
    });
    for (const cookie of response.headers.getSetCookie()) {
      const [pair] = cookie.split(';');
      const at = pair.indexOf('=');
      const name = pair.slice(0, at).trim();
      const value = pair.slice(at + 1).trim();
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(cookie)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return response;
  }

  async json(path: string, init: { method?: string; json?: unknown; headers?: Record<string, string> } = {}) {
    const response = await this.fetch(path, init);
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  /** Opens `GET /events` as the page does, and resolves once its first message (the counts) is in. */
  async openEvents(): Promise<EventLog> {
    const abort = new AbortController();
    streams.push(abort);
    const response = await this.fetch('/events', { headers: { Accept: 'text/event-stream' } });
    expect(response.status).toBe(200);
    const log = new EventLog();
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    abort.signal.addEventListener('abort', () => void reader.cancel().catch(() => {}));
    let pending = '';
    void (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return;
          const text = decoder.decode(value, { stream: true });
          log.raw += text;
          pending += text;
          let end = pending.indexOf('\n\n');
          while (end !== -1) {
            const block = pending.slice(0, end);
            pending = pending.slice(end + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (data !== undefined) log.messages.push({ event, data: JSON.parse(data) });
            end = pending.indexOf('\n\n');
          }
        }
      } catch {
        // aborted
      }
    })();
    await log.waitFor('counts', (l) => l.messages.some((m) => m.event === 'counts'));
    return log;
  }
}

describe('the demo event page', () => {
  const redis = useTestRedis('demo-safety');

  it("shows a visitor only the events of their own requests, never another visitor's", async () => {
    const base = await listen(createDemoApp(redis.client(), { prefix: `${redis.prefix}:own` }));
    const alice = new Visitor(base);
    const bob = new Visitor(base);
    await alice.fetch('/', { headers: { Accept: 'text/html' } });
    await bob.fetch('/', { headers: { Accept: 'text/html' } });
    const aliceSees = await alice.openEvents();
    const bobSees = await bob.openEvents();

    // Bob logs in, is rate limited and caches a path with a query string; a client without any cookie (curl) too;
    // Alice's requests and Bob's reach the limiter at the same moment (the same turn of the event loop).
    expect((await bob.fetch('/login', { method: 'POST', json: grace })).status).toBe(200);
    await new Visitor(base).fetch('/limited');
    await Promise.all([alice.fetch('/limited'), bob.fetch('/limited'), alice.fetch('/limited'), bob.fetch('/limited')]);
    await bob.fetch('/cached?token=bobs-secret');
    // Then both read the cached route at once, ten times each: every answer is an event of the one who asked.
    await bob.fetch('/cached');
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? alice : bob).fetch('/cached')));

    const hits = (log: EventLog) => log.events.filter((e) => e.type === 'cache.hit').length;
    await bobSees.waitFor("Bob's cache hits", (log) => hits(log) >= 10);
    await aliceSees.waitFor("Alice's cache hits", (log) => hits(log) >= 10);
    await new Promise((resolve) => setTimeout(resolve, 200)); // anything else on its way
    const count = (log: EventLog) => {
      const counts: Record<string, number> = {};
      for (const { type } of log.events) counts[String(type)] = (counts[String(type)] ?? 0) + 1;
      return counts;
    };
    expect(count(aliceSees)).toEqual({ 'rateLimit.allowed': 2, 'cache.hit': 10 });
    expect(aliceSees.raw).not.toMatch(/grace|bobs-secret|session\./);
    // Bob's: his login (counted by the login limiter), his two calls of /limited, two misses and ten hits.
    expect(count(bobSees)).toMatchObject({
      'session.created': 1,
      'rateLimit.allowed': 3,
      'cache.miss': 2,
      'cache.stored': 2,
      'cache.hit': 10,
    });

    // A page opened later is sent the counts of its own visitor's events only.
    const aliceAgain = await alice.openEvents();
    expect(aliceAgain.messages[0]).toEqual({ event: 'counts', data: { 'rateLimit.allowed': 2, 'cache.hit': 10 } });
  });

  it("counts an API client's requests (no cookies) for the page that gave it its viewer header", async () => {
    const base = await listen(createDemoApp(redis.client(), { prefix: `${redis.prefix}:device` }));
    const page = new Visitor(base);
    await page.fetch('/', { headers: { Accept: 'text/html' } });
    const sees = await page.openEvents();
    const viewer = sees.messages.find((m) => m.event === 'viewer')?.data;
    expect(viewer).toEqual({ header: 'x-demo-viewer', value: expect.any(String) });
    // The value only attributes requests to the page: it does not open the page's stream.
    expect(page.cookies.get('demo.viewer')).toBeDefined();
    expect(Object.values(Object.fromEntries(page.cookies))).not.toContain(viewer?.value);

    const device = new Visitor(base, { [String(viewer?.header)]: String(viewer?.value), 'x-session-id': '' });
    expect((await device.fetch('/login', { method: 'POST', json: ada })).status).toBe(200);
    await sees.waitFor('the device login', (log) => log.events.some((e) => e.type === 'session.created'));
    expect(sees.events.find((e) => e.type === 'session.created')).toMatchObject({ userId: 'ada' });

    const stranger = new Visitor(base, { 'x-demo-viewer': String(viewer?.value) });
    expect((await stranger.fetch('/events', { headers: { Accept: 'text/event-stream' } })).status).toBe(200);
    expect(stranger.cookies.get('demo.viewer')).not.toBe(page.cookies.get('demo.viewer'));
  });

  it('sends an event no request caused to every page, with its ids, keys, addresses and paths hashed', async () => {
    const stream = createEventStream();
    const app = express();
    app.use(stream.attribute);
    app.get('/events', stream.handler);
    const sees = await new Visitor(await listen(app)).openEvents();

    stream.onEvent({
      type: 'rateLimit.allowed',
      key: '203.0.113.7',
      limit: 5,
      used: 1,
      remaining: 4,
      durationMs: 1.5,
    });
    stream.onEvent({ type: 'session.destroyed', reason: 'destroyByUser', userId: 'ada', durationMs: 2 });
    stream.onEvent({
      type: 'cache.hit',
      route: '/report',
      path: '/report?token=s3cret',
      key: 'a1b2c3d4e5f60718',
      durationMs: 1,
    });
    await sees.waitFor('three events', (log) => log.events.length === 3);

    expect(sees.raw).not.toMatch(/203\.0\.113\.7|"ada"|s3cret|a1b2c3d4e5f60718/);
    const [limited, destroyed, hit] = sees.events;
    expect(limited).toMatchObject({ type: 'rateLimit.allowed', limit: 5, used: 1, remaining: 4, durationMs: 1.5 });
    expect(limited.key).toMatch(/^#[0-9a-f]{12}$/);
    expect(destroyed).toMatchObject({ type: 'session.destroyed', reason: 'destroyByUser' });
    expect(destroyed.userId).toMatch(/^#[0-9a-f]{12}$/);
    expect(hit.path).toMatch(/^#[0-9a-f]{12}$/);
    expect(hit.key).toMatch(/^#[0-9a-f]{12}$/);
    // Hashed the same way each time, so a page can still tell one client from another.
    stream.onEvent({ type: 'rateLimit.allowed', key: '203.0.113.7', limit: 5, used: 2, remaining: 3, durationMs: 1 });
    await sees.waitFor('a fourth event', (log) => log.events.length === 4);
    expect(sees.events[3].key).toBe(limited.key);
  });
});

describe('demo login', () => {
  const redis = useTestRedis('demo-login');

  it("logs in only with a demo user's password; a wrong one is a 401 with a clear error", async () => {
    const base = await listen(createDemoApp(redis.client(), { prefix: `${redis.prefix}:password` }));
    const visitor = new Visitor(base);
    // Four failures: the fifth in a minute would use up the client's budget (the next test).
    for (const attempt of [
      { user: 'ada', password: 'lovelace ' },
      { user: 'ada', password: grace.password },
      { user: 'nobody', password: 'lovelace' },
      { user: 'ada', password: ['lovelace'] },
    ]) {
      const { status, body } = await visitor.json('/login', { method: 'POST', json: attempt });
      expect(status, JSON.stringify(attempt)).toBe(401);
      expect(body).toEqual({ error: 'wrong user name or password (demo users: ada / lovelace, grace / hopper)' });
    }
    expect((await visitor.json('/me')).body.loggedIn).toBe(false);

    const { status, body } = await visitor.json('/login', { method: 'POST', json: ada });
    expect(status).toBe(200);
    expect(body).toMatchObject({ loggedIn: true, userId: 'ada' });
    // A form or curl without Accept: JSON is sent on to /me.
    const form = await new Visitor(base).fetch('/login', {
      method: 'POST',
      json: grace,
      headers: { Accept: 'text/html' },
    });
    expect(form.status).toBe(303);
    expect(form.headers.get('location')).toBe('/me');

    // No password, or the old way (a user name alone, in the query string), logs no one in either.
    const other = new Visitor(await listen(createDemoApp(redis.client(), { prefix: `${redis.prefix}:query` })));
    expect((await other.json('/login', { method: 'POST', json: { user: 'ada' } })).status).toBe(401);
    expect((await other.fetch('/login?user=ada', { method: 'POST' })).status).toBe(401);
    expect((await other.json('/me')).body.loggedIn).toBe(false);
  });

  it('rate limits wrong passwords: the sixth attempt within a minute is a 429', async () => {
    const base = await listen(createDemoApp(redis.client(), { prefix: `${redis.prefix}:limited` }));
    const visitor = new Visitor(base);
    // Logging in is not what uses the budget up.
    for (let i = 0; i < 6; i++) expect((await visitor.fetch('/login', { method: 'POST', json: ada })).status).toBe(200);
    for (let i = 0; i < 5; i++) {
      expect(
        (await visitor.fetch('/login', { method: 'POST', json: { user: 'ada', password: `guess${i}` } })).status,
      ).toBe(401);
    }
    const refused = await visitor.fetch('/login', { method: 'POST', json: ada });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it("lists a user's other sessions without their ids", async () => {
    const base = await listen(createDemoApp(redis.client(), { prefix: `${redis.prefix}:list` }));
    const first = new Visitor(base);
    const second = new Visitor(base);
    await first.fetch('/login', { method: 'POST', json: ada });
    const { body } = await second.json('/login', { method: 'POST', json: ada });
    const firstId = String(first.cookies.get('sid')).split('.')[0];
    const secondId = String(second.cookies.get('sid')).split('.')[0];
    expect(firstId).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    const listed = body.sessionsOfThisUser as { current: boolean }[];
    expect(listed).toHaveLength(2);
    expect(JSON.stringify(body)).not.toContain(firstId);
    expect(JSON.stringify(body)).not.toContain(secondId);
    expect(listed.filter((s) => s.current)).toHaveLength(1);
  });
});
