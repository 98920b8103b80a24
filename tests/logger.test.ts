// The `logger` option with pino, the logger most Express apps pass: an instance, a child, its methods bound, and
// its methods passed unbound (which pino cannot run without `this`: the message then goes to the console).
import { Writable } from 'node:stream';
import express from 'express';
import pino from 'pino';
import request from 'supertest';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { createRedis, type Logger, rateLimit } from '../lib/index.js';
import { silentLogger } from './support/redis.js';

/** A pino logger writing its JSON lines into `lines`. */
function pinoInto(lines: { level: number; msg: string }[]) {
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return pino({ level: 'info' }, destination);
}

const down = createRedis({ url: 'redis://127.0.0.1:1', logger: silentLogger, retry: { maxDelay: 100 } });
afterEach(() => vi.restoreAllMocks());

/** An app whose limiter cannot reach Redis (a warning) and whose hook throws on the way (an error). */
async function warnAndError(logger: Logger) {
  const app = express();
  app.use(
    rateLimit({
      redis: down,
      timeout: '50ms',
      logger,
      onEvent: () => {
        throw new Error('hook failed');
      },
    }),
  );
  app.get('/', (_req, res) => res.send('ok'));
  await request(app).get('/').expect(200);
}

describe('the logger option with pino', () => {
  it.each([
    ['a pino instance', (log: pino.Logger) => log],
    ['a child logger', (log: pino.Logger) => log.child({ module: 'redisware' })],
    ['its methods bound', (log: pino.Logger) => ({ warn: log.warn.bind(log), error: log.error.bind(log) })],
  ])('writes warnings and errors through %s', async (_name, asLogger) => {
    const lines: { level: number; msg: string }[] = [];
    await warnAndError(asLogger(pinoInto(lines)));
    expect(lines.map(({ level, msg }) => [level, msg])).toEqual([
      [40, expect.stringMatching(/^redisware: rateLimit could not use Redis \(down, slow or refusing\)/)],
      [
        50,
        'redisware: the onEvent hook threw on redis.error (hook failed); further throws of this hook are not logged',
      ],
    ]);
  });

  it('falls back to the console for pino methods passed unbound, instead of throwing inside Redis listeners', async () => {
    const lines: { level: number; msg: string }[] = [];
    const log = pinoInto(lines);
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    await warnAndError({ warn: log.warn, error: log.error });
    expect(lines).toEqual([]);
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/^redisware: rateLimit could not use Redis/));
    expect(error).toHaveBeenCalledWith(expect.stringMatching(/the onEvent hook threw on redis.error \(hook failed\)/));
  });
});

afterAll(() => down.disconnect());
