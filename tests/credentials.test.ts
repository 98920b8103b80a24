// Credentials in a Redis URL never reach a log line, an event or an error message, whatever characters the user
// name and password hold.
import { afterEach, describe, expect, it } from 'vitest';
import { createRedis, type RedisClient, type RediswareEvent } from '../lib/index.js';
import { withoutCredentials } from '../lib/options.js';
import { unusedPort } from './support/private-redis.js';
import { recordingLogger } from './support/redis.js';

/** User names and passwords as people write them into URLs: escaped, unescaped, with separators. */
const credentials = [
  ['alice', 'hunter2'],
  ['al@ice', 'hun@ter2'],
  ['alice', 'hun:ter:2'],
  ['al%40ice', 'hun%40ter%3A2%2Fbob'],
  ['al:ice', 'a@hunter@2'],
] as const;

/** Credentials no URL parser accepts (a raw `/` ends the address). */
const unparsable = [['', 'hunt/er@2']] as const;

/** Every piece of `secret` a log line might show: the whole, and each run of 3 or more between separators. */
const piecesOf = (secret: string) =>
  [secret, ...secret.split(/[@:/%]/).filter((piece) => piece.length >= 3)].filter(Boolean);

let opened: RedisClient[] = [];
afterEach(() => {
  for (const client of opened) client.disconnect();
  opened = [];
});

describe('a Redis URL with credentials', () => {
  it.each(credentials)('user %j, password %j: the outage warning and events show neither', async (user, password) => {
    const port = await unusedPort();
    const logger = recordingLogger();
    const events: RediswareEvent[] = [];
    const url = `redis://${user}:${password}@127.0.0.1:${port}/0`;
    const client = createRedis({ url, logger, onEvent: (event) => void events.push(event), retry: { maxAttempts: 1 } });
    opened.push(client);
    client.on('error', () => {});
    await new Promise((resolve) => client.once('end', resolve));
    const shown = [...logger.warnings, ...logger.errors, JSON.stringify(events)].join('\n');
    expect(logger.warnings.join('\n')).toContain(`127.0.0.1:${port}`);
    for (const piece of [...piecesOf(password), ...piecesOf(user)]) expect(shown).not.toContain(piece);
  });

  it.each([...credentials, ...unparsable])(
    'user %j, password %j: an invalid URL’s error message shows neither',
    (user, password) => {
      const url = `redis://${user}:${password}@127.0.0.1:99999`;
      let message = '';
      try {
        createRedis({ url });
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toMatch(/option "url" is invalid/);
      for (const piece of [...piecesOf(password), ...piecesOf(user)]) expect(message).not.toContain(piece);
    },
  );

  it('keeps the address readable', () => {
    expect(withoutCredentials('redis://user:p@ss@cache.internal:6380/2')).toBe('redis://***@cache.internal:6380/2');
    expect(withoutCredentials('rediss://cache.internal:6380')).toBe('rediss://cache.internal:6380');
    expect(withoutCredentials('not a url')).toBe('not a url');
  });
});
