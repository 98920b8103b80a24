// The Lua scripts of a lock: each one round trip, each token-checked, so no step ever touches a lock someone else
// holds now, and each safe to apply twice (a late or repeated release deletes nothing of anyone else's).
import { RedisScript } from '../redis/script.js';

/** How long a fencing counter is kept after its last acquisition (it is only a guard: see `acquireScript`). */
export const fenceCounterMs = 24 * 60 * 60 * 1000;

/**
 * Takes the lock: KEYS[1] = the lock, KEYS[2] = its fencing counter (optional); ARGV = a token, the lease (ms), and
 * with fencing the counter's lifetime (ms). Sets the lock to the token with the lease unless someone holds it; a key
 * there without a lease is no lock (every lock is written with one: another program's key, or one left by a bug),
 * and waiting for it would be waiting forever, so it is taken over; one that holds our token already is ours (the
 * same acquisition sent again: a Cluster client re-sends commands a dropped connection left unanswered), so a reply
 * of 0 always means that someone else holds the lock. Returns 0 when someone holds the lock; else,
 * without fencing, 1; with fencing, the fencing token: Redis's clock in microseconds, or one more than the last
 * token given for this lock when that is larger (a clock that went back, two acquisitions within a microsecond), so
 * it grows with each acquisition even after the counter expired or was lost (a restart without persistence).
 * A counter that holds no number below 2^53 is replaced.
 */
export const acquireScript = new RedisScript(
  'lock-acquire',
  `if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then
  local ours = redis.pcall('GET', KEYS[1]) == ARGV[1]
  if not ours and redis.call('PTTL', KEYS[1]) ~= -1 then return 0 end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if not ARGV[3] then return 1 end
local time = redis.call('TIME')
local token = tonumber(time[1]) * 1000000 + tonumber(time[2])
if KEYS[2] then
  local last = redis.pcall('GET', KEYS[2])
  last = type(last) == 'string' and tonumber(last) or nil
  if last and last >= token and last < 9007199254740991 then token = last + 1 end
  redis.call('SET', KEYS[2], string.format('%.0f', token), 'PX', ARGV[3])
end
return token`,
);

/** Extends the lease (ARGV[2] ms) only if the lock still holds our token (ARGV[1]): 1 extended, 0 no longer ours. */
export const extendScript = new RedisScript(
  'lock-extend',
  `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`,
);

/**
 * Deletes the lock only if it still holds our token (ARGV[1]): never releases a lock someone else holds now. With
 * ARGV[2] (a channel) and ARGV[3] (a message), also publishes that message, in the same step: whoever waits for the
 * lock's holder to finish hears of it at once. Returns 1 when it deleted the lock.
 */
export const releaseScript = new RedisScript(
  'lock-release',
  `local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then released = redis.call('DEL', KEYS[1]) end
if ARGV[2] then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return released`,
);
