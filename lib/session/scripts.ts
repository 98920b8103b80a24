import { addToExpiringSet, forEachBatchedCall, RedisScript, redisNow } from '../redis/script.js';

/*
 * A session is one hash, `session:<id>`: `_c` (created, ms), `_s` (last seen, ms), `_m` (its own cookie lifetime,
 * ms, when `req.session.cookie` gave it one; `0`: a browser-session cookie) and one field `d:<name>` per top-level
 * data property (its JSON). Writing only changed fields is what lets concurrent requests that change different
 * properties both keep their change. Times come from Redis (TIME), so app-server clocks do not matter.
 * Every script keeps the key's TTL at min(idle timeout, time left before the absolute timeout); a session with a
 * lifetime of its own has that lifetime as its idle timeout.
 */

/** Lua: `finite(value)`, the number a stored string holds, or nil when it holds none (NaN and infinities included). */
const finiteFunction = `local function finite(value)
  local number = tonumber(value)
  if number and number == number and number > -math.huge and number < math.huge then return number end
  return nil
end`;

/**
 * Loads a session: KEYS[1]; ARGV = idle ms, absolute ms, '1' to extend the idle timeout (rolling), its user field.
 * Returns the session's own lifetime ('' when it has none), then its data fields as name (without its \`d:\`
 * prefix) and JSON, name and JSON, …; or 0 when the session is missing or past either timeout, or when the key is
 * not a session of ours: another type, or bookkeeping fields that are not numbers (then it deletes the key).
 * The bookkeeping fields stay in Redis: every bulk string in the reply costs the app a parse and an allocation.
 *
 * The user's index entry: `_i` is when it was last known to be written. When the session has a user and that is
 * older than the same resolution (or unknown: a session written before `_i` existed), the lifetime comes back
 * prefixed with '!' and `_i` is set to now: the app then adds the entry unless it is there (a repair: one call
 * per session and resolution at most), so an index that misses a session gets it back on a load.
 *
 * Extending the idle timeout is a PEXPIRE, every time. The stored last-seen time `_s` is only rewritten once it is
 * older than its resolution (a tenth of the idle timeout, at most a minute), so a read-only request normally
 * rewrites nothing in the hash. The key's TTL enforces the idle timeout exactly; `_s` enforces it too, should the
 * TTL ever be lost, with at most that resolution as slack.
 */
const loadFunction = `
${finiteFunction}
local function load(key, now, idle, absolute, rolling, userField)
  local fields = redis.pcall('HGETALL', key)
  if fields.err then
    -- Not a hash (another program's value, or an old one's): no session of ours. Deleted, never obeyed.
    if string.find(fields.err, 'WRONGTYPE', 1, true) then
      redis.call('DEL', key)
      return 0
    end
    return fields
  end
  if #fields == 0 then return 0 end
  local created, seen, indexed, user, malformed, data = nil, nil, nil, false, false, {''}
  for i = 1, #fields, 2 do
    local name = fields[i]
    if name == '_c' then created = finite(fields[i + 1])
    elseif name == '_s' then seen = finite(fields[i + 1])
    elseif name == '_i' then indexed = finite(fields[i + 1])
    elseif name == '_m' then
      data[1] = fields[i + 1]
      local lifetime = finite(fields[i + 1])
      if not lifetime or lifetime < 0 then malformed = true
      elseif lifetime > 0 then idle = lifetime end
    elseif string.sub(name, 1, 2) == 'd:' then
      data[#data + 1] = string.sub(name, 3)
      data[#data + 1] = fields[i + 1]
      -- A user: a non-empty JSON string, or a number.
      if name == userField then user = string.find(fields[i + 1], '^"[^"]') or string.find(fields[i + 1], '^-?%d') end
    end
  end
  local resolution = math.min(60000, math.floor(idle / 10))
  -- A creation or last-seen time ahead of Redis's clock (by more than a failover's skew) is no time of ours: a
  -- session from the future would never meet its absolute timeout.
  if created and created > now + 60000 or seen and seen > now + 60000 then malformed = true end
  if malformed or not created or not seen or now - created >= absolute or now - seen >= idle + resolution then
    redis.call('DEL', key)
    return 0
  end
  if rolling == '1' then
    if now - seen >= resolution then redis.call('HSET', key, '_s', now) end
    redis.call('PEXPIRE', key, math.min(idle, absolute - (now - created)))
  end
  if user and (not indexed or now - indexed >= resolution or indexed > now + 60000) then
    redis.call('HSET', key, '_i', now)
    data[1] = '!' .. data[1]
  end
  return data
end
${redisNow}
`;

/**
 * Runs on every request that has a session, so its batched form is written out: the clock is read once per
 * batch, and no call runs under pcall or gets tables of its own (about a third less Redis CPU per load).
 */
export const loadSessionScript = new RedisScript(
  'session-load',
  `${loadFunction}
return load(KEYS[1], now, tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4])`,
  {
    keys: 1,
    batchedSource: `${loadFunction}
${forEachBatchedCall(1, 'load(KEYS[i + 1], now, tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), ARGV[base + 3], ARGV[base + 4])')}`,
  },
);

/**
 * Saves changed fields: KEYS[1]; ARGV = idle ms (the session's own lifetime, if it has one), absolute ms, '1' if the
 * session is new, n, '1' if its user's index entry was just written (`_i` is then set: see the load script), then n
 * field/value pairs to set, then the fields to delete. An existing session that is gone
 * (destroyed or expired while the request ran, or replaced by a key that is not a session) is never brought back:
 * returns 0 and writes nothing; a new one whose id is taken: 2. Returns 1 when saved.
 */
export const saveSessionScript = new RedisScript(
  'session-save',
  `
${redisNow}
${finiteFunction}
local idle, absolute = tonumber(ARGV[1]), tonumber(ARGV[2])
local created
if ARGV[3] == '1' then
  -- A new id that is already taken (a genid that repeats itself) must not merge into another session.
  if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end
  created = now
  redis.call('HSET', KEYS[1], '_c', now)
else
  -- Gone, or replaced by something that is not a session of ours (another type, a creation time that is no number).
  local stored = redis.pcall('HGET', KEYS[1], '_c')
  if type(stored) == 'table' then return 0 end
  created = finite(stored)
  if not created or created > now + 60000 then return 0 end
end
local left = absolute - (now - created)
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
local n = tonumber(ARGV[4])
local set = {'_s', now}
if ARGV[5] == '1' then
  set[3] = '_i'
  set[4] = now
end
for i = 6, 5 + 2 * n do set[#set + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(set))
if #ARGV > 5 + 2 * n then redis.call('HDEL', KEYS[1], unpack(ARGV, 6 + 2 * n)) end
-- A lifetime of the session's own is its idle timeout, whichever request set it (this one, or one meanwhile).
local lifetime = tonumber(redis.call('HGET', KEYS[1], '_m'))
if lifetime and lifetime > 0 then idle = lifetime end
redis.call('PEXPIRE', KEYS[1], math.min(idle, left))
return 1
`,
  { keys: 1 },
);

/**
 * The per-user index, a sorted set of session ids scored by the latest time each can still be alive:
 * KEYS[1]; ARGV = session id, absolute ms, then '1' to add, '0' to remove, or '2' to add unless it is there (a
 * repair: see the load script). The index lives at least as long as the newest session in it, and entries past
 * their absolute timeout are pruned on every add. Returns 1 when a repair added the entry, else 0. A key of another type is not an index of ours: it is replaced.
 */
export const userIndexScript = new RedisScript(
  'session-user-index',
  `
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'zset' and kind ~= 'none' then redis.call('DEL', KEYS[1]) end
if ARGV[3] == '0' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
if ARGV[3] == '2' and redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
${redisNow}
local absolute = tonumber(ARGV[2])
${addToExpiringSet('KEYS[1]', 'ARGV[1]', 'absolute')}
if ARGV[3] == '2' then return 1 end
return 0
`,
);

/**
 * Deletes a session and says whose it was, for its index entry to go too: KEYS[1]; ARGV[1] = its user field.
 * Returns the user field's JSON, or false when it has none (or the key is missing, or is not a session of ours,
 * which is deleted all the same).
 */
export const destroySessionScript = new RedisScript(
  'session-destroy',
  `
local user = redis.pcall('HGET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[1])
if type(user) ~= 'string' then return false end
return user
`,
  { keys: 1 },
);

/**
 * "Log out everywhere", one session at a time: KEYS[1] = the session; ARGV = its user field, then the stored forms
 * (JSON) of the user being logged out. Deletes the session only if it still belongs to that user: returns 1, else 0.
 */
export const destroyIfUserScript = new RedisScript(
  'session-destroy-if-user',
  `
local user = redis.pcall('HGET', KEYS[1], ARGV[1])
if not user or type(user) == 'table' then return 0 end
for i = 2, #ARGV do
  if user == ARGV[i] then
    redis.call('DEL', KEYS[1])
    return 1
  end
end
return 0
`,
);

/**
 * Reads a per-user index: KEYS[1]. Returns its session ids and scores (id, score, id, score, …); none when the key is
 * missing or of another type (the next login's {@link userIndexScript} replaces it).
 */
export const readUserIndexScript = new RedisScript(
  'session-read-user-index',
  `
if redis.call('TYPE', KEYS[1]).ok ~= 'zset' then return {} end
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
`,
  { keys: 1 },
);

/**
 * What `listByUser()` shows of a session: KEYS[1]; ARGV[1] = its user field. Returns created, last seen and the
 * user field's JSON (each false when absent); all false when the key is missing or not a session of ours.
 */
export const sessionSummaryScript = new RedisScript(
  'session-summary',
  `
local fields = redis.pcall('HMGET', KEYS[1], '_c', '_s', ARGV[1])
if fields.err then return {false, false, false} end
return fields
`,
  { keys: 1 },
);
