// Credentials never reach a log, an event or an error message, whatever form they take: in the query, quoted, in options.
import { afterEach, describe, expect, it } from 'vitest';
import { createRedis, type RedisClient, type RediswareEvent, rateLimit, SessionStore } from '../lib/index.js';
import { unusedPort } from './support/private-redis.js';
import { recordingLogger } from './support/redis.js';

const secret = 'Sup3rS3cretPw';

let opened: RedisClient[] = [];
afterEach(() => {
  for (const client of opened) client.disconnect();
  opened = [];
});

const messageOf = (work: () => unknown): string => {
  try {
    work();
  } catch (error) {
    return (error as Error).message;
  }
  return '';
};

describe('credentials in a Redis URL', () => {
  it('a password given in the query (redis://host?password=…, which ioredis honours) is not in the outage warning', async () => {
    const port = await unusedPort();
    const logger = recordingLogger();
    const events: RediswareEvent[] = [];
    const url = `redis://127.0.0.1:${port}/0?password=${secret}`;
    const client = createRedis({ url, logger, onEvent: (event) => void events.push(event), retry: { maxAttempts: 1 } });
    opened.push(client);
    // ioredis really takes the password from the query: the secret is a credential.
    expect((client.options as { password?: string }).password).toBe(secret);
    client.on('error', () => {});
    await new Promise((resolve) => client.once('end', resolve));
    expect(logger.warnings.join('\n')).toContain(`127.0.0.1:${port}`);
    const shown = [...logger.warnings, ...logger.errors, JSON.stringify(events)].join('\n');
    expect(shown).not.toContain(secret);
  });

  it.each([
    ['quoted (a Docker --env-file keeps the quotes)', `"redis://app:${secret}@cache.internal:6379"`],
    ['with a leading space', ` redis://app:${secret}@cache.internal:6379`],
    ['with a leading newline', `\nredis://app:${secret}@cache.internal:6379`],
  ])('a URL %s is refused without showing its password', (_what, url) => {
    const message = messageOf(() => createRedis(url));
    expect(message).toMatch(/option "url" is invalid/);
    expect(message).not.toContain(secret);
  });
});

describe('credentials in an option that expected a client', () => {
  it.each([
    ['rateLimit', () => rateLimit({ redis: { host: 'cache.internal', port: 6379, password: secret } as never })],
    ['SessionStore', () => new SessionStore({ redis: { host: 'cache.internal', password: secret } as never })],
  ])('%s given connection options instead of a client names the mistake without the password', (_factory, make) => {
    const message = messageOf(make);
    expect(message).toMatch(/option "redis" is invalid/);
    expect(message).not.toContain(secret);
  });
});
