// The cache's Lua scripts: storing an entry with its tags and variants unless an invalidation came first, reading
// an entry in one round trip, and invalidating a tag. Times in microseconds are Redis's own clock (`TIME`).
import { addToExpiringSet, RedisScript, redisNow } from '../redis/script.js';

/** The vary marker's magic (`varyMarkerMagic` in entry.ts) in Lua source, where `\0` is a NUL byte. */
const marker = '\\0RWV';

/** Lua that sets `micros` to Redis's clock in microseconds (after `redisNow`, which reads `time`). */
const redisMicros = `local micros = tonumber(time[1]) * 1000000 + tonumber(time[2])`;

/**
 * Lua `get(key)`: GET, reading a key of another type (not one of ours: another program's, or planted) as none, so
 * that it is replaced by the next write instead of failing every read.
 */
const lenientGet = `local function get(key)
  local value = redis.pcall('GET', key)
  if type(value) == 'table' then return false end
  return value
end`;

/** Lua that deletes the key KEYS[i] when it is not a sorted set (nor absent): a tag set of ours always is one. */
const repairTagSet = (key: string) =>
  `if type(redis.pcall('ZCARD', ${key})) == 'table' then redis.call('DEL', ${key}) end`;

/**
 * Lua (after {@link lenientGet}) that returns 0 (discarded) when producing the value began at ARGV[since] (µs; `''`:
 * unconditional, a plain `cache.set`) and, since then, more than ARGV[since + 2] µs passed or one of the tombstones
 * KEYS[first], KEYS[first + 2], … was set within ARGV[since + 1] µs (the margin for clocks of other Cluster nodes) of
 * it or later. A tombstone that is no time of this clock (not a number, or later than any production could last) is
 * not one of ours: it is deleted.
 */
const discardIfInvalidated = (since: number, first: number) => `
if ARGV[${since}] ~= '' then
  local since, margin, longest = tonumber(ARGV[${since}]), tonumber(ARGV[${since + 1}]), tonumber(ARGV[${since + 2}])
  if micros - since > longest then return 0 end
  for i = ${first}, #KEYS, 2 do
    local gone = get(KEYS[i])
    local at = gone and tonumber(gone)
    if gone and (not at or at > micros + longest) then
      redis.call('DEL', KEYS[i])
    elseif at and at + margin >= since then
      return 0
    end
  end
end`;

/**
 * Stores an entry, its place among the variants of its URL, and its membership of each tag set, in one atomic step
 * — or nothing (returning 0) when one of its tags was invalidated after producing it began.
 * KEYS = the URL's key, the entry's key (the same, or a variant's), then a tag set and its tombstone per tag;
 * ARGV = value, ttl ms, the request header names the response varies on ('' for none), the variant's id ('' for
 * none), the most variants to keep, since (µs, or ''), the margin (µs), the longest production (µs).
 * A URL whose responses vary holds a marker (names and kept variant ids, newest first); a variant dropped from it is
 * deleted (its key is the URL's key plus `:v:<id>`, as `CacheKeys.variant` builds it). A tag set is a sorted set
 * of entry keys scored by their expiry: it is trimmed of expired members on every store and lives as long as its
 * newest one.
 */
export const storeScript = new RedisScript(
  'cache-store',
  `
local value, ttl, names, id, most = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5])
${lenientGet}
${redisNow}
${redisMicros}
${discardIfInvalidated(6, 4)}
if id == '' then
  redis.call('SET', KEYS[1], value, 'PX', ttl)
else
  local kept = {id}
  local current = get(KEYS[1])
  if current and string.sub(current, 1, 4) == '${marker}' then
    local newline = string.find(current, '\\n', 5, true)
    if newline and string.sub(current, 5, newline - 1) == names then
      for old in string.gmatch(string.sub(current, newline + 1), '%S+') do
        if old ~= id then
          if #kept < most then kept[#kept + 1] = old else redis.call('DEL', KEYS[1] .. ':v:' .. old) end
        end
      end
    end
  end
  redis.call('SET', KEYS[2], value, 'PX', ttl)
  local left = redis.call('PTTL', KEYS[1])
  redis.call('SET', KEYS[1], '${marker}' .. names .. '\\n' .. table.concat(kept, ' '), 'PX', math.max(ttl, left))
end
for i = 3, #KEYS, 2 do
${repairTagSet('KEYS[i]')}
${addToExpiringSet('KEYS[i]', 'KEYS[2]', 'ttl')}
end
return 1
`,
);

/**
 * Adds an entry key to one tag set, unless the tag was invalidated after producing the entry began (Redis Cluster:
 * a tag set lives in another slot than its entries). KEYS = the tag set, its tombstone; ARGV = the entry key, ttl ms,
 * since, margin, longest production (see {@link storeScript}). Returns 1, or 0 when discarded.
 */
export const addToTagScript = new RedisScript(
  'cache-tag-add',
  `
local ttl = tonumber(ARGV[2])
${lenientGet}
${redisNow}
${redisMicros}
${discardIfInvalidated(3, 2)}
${repairTagSet('KEYS[1]')}
${addToExpiringSet('KEYS[1]', 'ARGV[1]', 'ttl')}
return 1
`,
);

/**
 * Reads an entry, or only confirms it: KEYS = the URL's key, the key this process expects the entry at (the same,
 * or a variant's); ARGV = the version of the copy this process already holds ('' for none), the variant's id ('' for
 * none). Returns `{answer, micros}`: the answer is 0 (none), 1 (the local copy is still the stored one), the entry's
 * bytes, or the URL's vary marker when the entry is not where it was expected (the caller then reads the variant the
 * marker points it to); `micros` is Redis's clock, from which a MISS's production is dated. A variant counts only
 * while the marker lists it, so deleting the URL's key deletes all its variants at once. One round trip for a HIT,
 * and a HIT on a large entry held locally moves a few bytes instead of the whole body.
 */
export const readScript = new RedisScript(
  'cache-read',
  `
local time = redis.call('TIME')
${redisMicros}
${lenientGet}
local function answer(stored)
  if ARGV[1] ~= '' and string.sub(stored, 5, 20) == ARGV[1] then return {1, micros} end
  return {stored, micros}
end
local base = get(KEYS[1])
if not base then return {0, micros} end
if string.sub(base, 1, 4) ~= '${marker}' then return answer(base) end
local newline = string.find(base, '\\n', 5, true)
local ids = newline and (' ' .. string.sub(base, newline + 1) .. ' ') or ''
if ARGV[2] == '' or not string.find(ids, ' ' .. ARGV[2] .. ' ', 1, true) then return {base, micros} end
local stored = get(KEYS[2])
if not stored then return {base, micros} end
return answer(stored)
`,
  { keys: 2, binary: true },
);

/** Reads a value of `set`/`wrap`: KEYS = its key. Returns `{value or 0, micros}` (see {@link readScript}). */
export const readValueScript = new RedisScript(
  'cache-read-value',
  `
local time = redis.call('TIME')
${redisMicros}
${lenientGet}
return {get(KEYS[1]) or 0, micros}
`,
  { keys: 1 },
);

/**
 * Begins invalidating a tag: its tombstone is set to now (kept for ARGV[1] ms; never moved back, unless it held no
 * time of this clock), so that no entry whose production began before this moment is stored with the tag from now
 * on. Returns the size of its set and its first ARGV[2] members, to be deleted (a set of another type is deleted
 * instead: it lists nothing of ours). KEYS = the tag set, its tombstone.
 */
export const invalidateScript = new RedisScript(
  'cache-invalidate',
  `
local time = redis.call('TIME')
${redisMicros}
${lenientGet}
local previous = tonumber(get(KEYS[2]) or '0') or 0
if previous > micros + tonumber(ARGV[1]) * 1000 then previous = 0 end
redis.call('SET', KEYS[2], string.format('%.0f', math.max(micros, previous)), 'PX', ARGV[1])
local size = redis.pcall('ZCARD', KEYS[1])
if type(size) == 'table' then
  redis.call('DEL', KEYS[1])
  return {0, {}}
end
return {size, redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)}
`,
);
