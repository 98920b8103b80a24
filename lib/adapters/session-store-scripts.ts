// The Lua scripts of `SessionStore`: each one key, so they batch on a standalone Redis and route on a Cluster.
import { RedisScript } from '../redis/script.js';

/**
 * Reads KEYS[1]: its value, or none when the key is missing or of another type (a key under the prefix that is not
 * a session is no session, never a WRONGTYPE error on every request of that cookie).
 */
export const getSessionScript = new RedisScript(
  'session-store get',
  `
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then return false end
return value
`,
  { keys: 1 },
);

/** Extends KEYS[1]'s expiry to ARGV[1] ms, never shortening it and never creating the key. */
export const touchSessionScript = new RedisScript(
  'session-store touch',
  `
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return 0 end
if ttl < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
`,
  { keys: 1 },
);
