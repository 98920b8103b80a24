import { RedisScript, redisNow, type ScriptOptions } from '../redis/script.js';

/*
 * Every hit script takes KEYS[1] = the client's key and
 *   ARGV[1] = cost, ARGV[2] = window (ms), ARGV[3] = limit, ARGV[4] = '1' to only look (no write)
 * and returns { allowed (1/0), used, ms until reset, exists (1/0), repaired (1/0) }.
 * Each touches one key, sets its expiry in the same atomic step, and reads time from Redis (TIME or PTTL),
 * never from the app server, so clock skew between servers does not matter.
 *
 * What lies under a key is never obeyed blindly (another program, an older version, a hand-made value): a key of
 * the wrong type, a count that is no whole number ≥ 0, a counter without an expiry, a bucket's state that is not
 * finite or lies in the future — each is replaced in the same script (counting goes on from a fresh state) and
 * the reply says `repaired`. Only looking (`get()`) writes nothing: it reads such a value as no count.
 */

/** Lua: whether `x` is a finite number (not nil, NaN or ±inf). */
const finiteNumber = 'local function finite(x) return x ~= nil and x == x and x > -math.huge and x < math.huge end';
const hitScriptOptions: ScriptOptions = { keys: 1 };

/**
 * Lua that sets `wait` to the ms until a blocked sliding-window client may send `cost` again: until the previous
 * window's weight (`p`) has decayed enough, or past the current window (`c`), or the next one's (used by the
 * one-rule and the several-rules scripts alike).
 */
const slidingWindowWait = `if c + cost <= limit and p > 0 then
  wait = math.ceil(window * (1 - (limit - cost - c) / p)) - elapsed
elseif limit - cost >= 0 and c > 0 then
  wait = window - elapsed + math.ceil(window * (1 - (limit - cost) / c))
else
  wait = 2 * window - elapsed
end
if wait < 1 then wait = 1 end`;

/** INCRBY + PEXPIRE semantics: the window starts at the client's first request. */
export const fixedWindowScript = new RedisScript(
  'fixed-window',
  `
local cost, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if ARGV[4] == '1' then
  local used = tonumber(redis.pcall('GET', KEYS[1]))
  if not used or used < 0 or used % 1 ~= 0 then return {1, 0, window, 0, 0} end
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 or ttl > window then return {1, 0, window, 0, 0} end
  return {used <= limit and 1 or 0, used, ttl, 1, 0}
end
local repaired = 0
local used = redis.pcall('INCRBY', KEYS[1], cost)
if type(used) == 'table' then
  -- Another type, or a value INCRBY cannot read: start again.
  redis.call('DEL', KEYS[1])
  used = redis.call('INCRBY', KEYS[1], cost)
  repaired = 1
end
local ttl = redis.call('PTTL', KEYS[1])
if used < cost or ttl > window or (ttl < 0 and used > cost) then
  -- Below zero before this request, or an old count no window of this limiter bounds (another store's, or this
  -- limiter's own before its window was shortened): a new window.
  used = cost
  redis.call('SET', KEYS[1], cost, 'PX', window)
  ttl = window
  repaired = 1
elseif ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], window)
  ttl = window
end
return {used <= limit and 1 or 0, used, ttl, 1, repaired}
`,
  hitScriptOptions,
);

/**
 * Sliding window (the weighted two-window estimate): the previous window's count, weighted by how much of it
 * still overlaps the sliding window, plus the current window's count. One hash per client: w (window number),
 * c (count in it), p (count in the one before). Only allowed requests are counted.
 */
export const slidingWindowScript = new RedisScript(
  'sliding-window',
  `
local cost, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
${redisNow}
local current = math.floor(now / window)
local elapsed = now - current * window
${finiteNumber}
local repaired = 0
local state = redis.pcall('HMGET', KEYS[1], 'w', 'c', 'p')
if state.err then state, repaired = {}, 1 end
local w, c, p = tonumber(state[1]), tonumber(state[2]) or 0, tonumber(state[3]) or 0
if not (finite(w) and finite(c) and finite(p) and c >= 0 and p >= 0) and (state[1] or state[2] or state[3]) then
  w, c, p, repaired = nil, 0, 0, 1
end
if not w and ARGV[4] == '1' then return {1, 0, window - elapsed, 0, 0} end
if repaired == 1 and ARGV[4] ~= '1' then redis.call('DEL', KEYS[1]) end
if w ~= current then
  if w == current - 1 then p = c else p = 0 end
  c = 0
end
local estimate = p * (window - elapsed) / window + c
if ARGV[4] ~= '1' and estimate + cost <= limit then
  c = c + cost
  estimate = estimate + cost
  redis.call('HSET', KEYS[1], 'w', current, 'c', c, 'p', p)
  redis.call('PEXPIRE', KEYS[1], 2 * window - elapsed)
  return {1, math.ceil(estimate), window - elapsed, 1, repaired}
end
if estimate + cost <= limit then return {1, math.ceil(estimate), window - elapsed, 1, repaired} end
-- Blocked: how long until the estimate has decayed enough to admit cost?
local wait
${slidingWindowWait}
return {0, math.ceil(estimate), wait, 1, repaired}
`,
  hitScriptOptions,
);

/**
 * Token bucket: holds up to \`limit\` tokens, refilled continuously at \`limit\` per window; a request takes \`cost\`.
 * One hash per client: t (tokens), ts (ms of the last update). The key expires once the bucket would be full again.
 */
export const tokenBucketScript = new RedisScript(
  'token-bucket',
  `
local cost, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
${redisNow}
${finiteNumber}
local repaired = 0
local state = redis.pcall('HMGET', KEYS[1], 't', 'ts')
if state.err then state, repaired = {}, 1 end
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if (state[1] or state[2]) and not (finite(tokens) and finite(ts) and tokens >= 0 and ts <= now) then
  tokens, ts, repaired = nil, nil, 1
end
local exists = 1
if not tokens then
  if ARGV[4] == '1' then return {1, 0, 0, 0, 0} end
  if repaired == 1 then redis.call('DEL', KEYS[1]) end
  tokens, ts, exists = limit, now, 0
end
if limit > 0 then tokens = math.min(limit, tokens + (now - ts) * limit / window) end
local allowed = 0
if ARGV[4] ~= '1' and tokens >= cost then
  tokens = tokens - cost
  allowed = 1
  local refill = 1
  if limit > 0 then refill = math.max(1, math.ceil((limit - tokens) * window / limit)) end
  redis.call('HSET', KEYS[1], 't', tokens, 'ts', now)
  redis.call('PEXPIRE', KEYS[1], refill)
elseif ARGV[4] == '1' and tokens >= cost then
  allowed = 1
end
local used = math.ceil(limit - tokens)
if allowed == 1 then
  local full = 0
  if limit > 0 then full = math.ceil((limit - tokens) * window / limit) end
  return {1, used, full, 1, repaired}
end
local wait = window
if limit > 0 and cost <= limit then wait = math.max(1, math.ceil((cost - tokens) * window / limit)) end
return {0, used, wait, exists, repaired}
`,
  hitScriptOptions,
);

/*
 * Refund scripts (skipFailedRequests / skipSuccessfulRequests): KEYS = the request's counters (one per rule);
 * ARGV[1] = cost, then per key: window, limit, and the most time its window can have left if it is still the window
 * that counted the request (the time to reset it was counted with, less the time since, plus 1 ms of rounding): a
 * window with more left than that began after the request, and is not refunded. They only ever change an existing
 * key (so never create one without a TTL) and never go below zero.
 */

export const fixedWindowRefundScript = new RedisScript(
  'fixed-window-refund',
  `
local cost = tonumber(ARGV[1])
for i = 1, #KEYS do
  local left = redis.call('PTTL', KEYS[i])
  if left >= 0 and left <= tonumber(ARGV[3 * i + 1]) then
    local used = tonumber(redis.pcall('GET', KEYS[i]))
    if used and used > 0 and used % 1 == 0 then redis.call('DECRBY', KEYS[i], math.min(used, cost)) end
  end
end
return 0
`,
);

export const slidingWindowRefundScript = new RedisScript(
  'sliding-window-refund',
  `
local cost = tonumber(ARGV[1])
${redisNow}
for i = 1, #KEYS do
  local window = tonumber(ARGV[3 * i - 1])
  local current = math.floor(now / window)
  local left = window - (now - current * window)
  local state = redis.pcall('HMGET', KEYS[i], 'w', 'c')
  if state.err then state = {} end
  if left <= tonumber(ARGV[3 * i + 1]) and tonumber(state[1]) == current and tonumber(state[2]) then
    redis.call('HSET', KEYS[i], 'c', math.max(0, tonumber(state[2]) - cost))
  end
end
return 0
`,
);

export const tokenBucketRefundScript = new RedisScript(
  'token-bucket-refund',
  `
local cost = tonumber(ARGV[1])
for i = 1, #KEYS do
  local tokens = tonumber(redis.pcall('HGET', KEYS[i], 't'))
  if tokens then redis.call('HSET', KEYS[i], 't', math.min(tonumber(ARGV[3 * i]), tokens + cost)) end
end
return 0
`,
);

/*
 * Several rules in one limiter (10 a second and 1,000 a day): KEYS = one key per rule, all in one Cluster slot;
 * ARGV = cost, '1' to only look, then window (ms) and limit of each rule. Every rule is checked before any is
 * counted, and a request is counted against all of them or, blocked by any, against none. Returns
 * { allowed (1/0), then per rule: used, ms until reset (until the request would be admitted, for a rule that
 * blocks it), exists (1/0) }. Each key gets its expiry in the same step that creates it.
 */

/**
 * The several-rules script: each rule is checked by `check` (which sets `reply` for it and clears `allowed` when the
 * request does not fit), and only if every rule lets it through is each counted by `apply`. Both run with `window`,
 * `limit`, `i` (the rule) and `now` (Redis time, ms) in scope, and may keep per-rule state in `states[i]`.
 */
function rulesSource(check: string, apply: string): string {
  return `
local cost, look = tonumber(ARGV[1]), ARGV[2] == '1'
${redisNow}
${finiteNumber}
local reply, allowed, states, repaired = {1}, true, {}, 0
-- A malformed value under a rule's key (see the hit scripts) is deleted, unless only looking, and read as none.
local function malformed(key)
  repaired = 1
  if not look then redis.call('DEL', key) end
end
for i = 1, #KEYS do
  local window, limit = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
${check}
end
if not allowed then reply[1] = 0 end
if look or not allowed then
  reply[3 * #KEYS + 2] = look and 0 or repaired
  return reply
end
for i = 1, #KEYS do
  local window, limit = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
${apply}
end
reply[3 * #KEYS + 2] = repaired
return reply
`;
}

/** Fixed windows: a counter per rule, each window starting at the client's first request under it. */
export const fixedWindowRulesSource = rulesSource(
  `
  local raw = redis.pcall('GET', KEYS[i])
  local used = tonumber(raw)
  local left = window
  if raw and not (used and used >= 0 and used % 1 == 0) then
    malformed(KEYS[i])
    used = nil
  elseif used then
    left = redis.call('PTTL', KEYS[i])
    if left < 0 or left > window then
      -- A count no window of this rule bounds (another store's, or one from before the window was shortened).
      malformed(KEYS[i])
      used, left = nil, window
    end
  end
  reply[3 * i - 1], reply[3 * i], reply[3 * i + 1] = used or 0, left, used and 1 or 0
  if (used or 0) + cost > limit then allowed = false end`,
  `
  local used = redis.call('INCRBY', KEYS[i], cost)
  local left = redis.call('PTTL', KEYS[i])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[i], window)
    left = window
  end
  reply[3 * i - 1], reply[3 * i], reply[3 * i + 1] = used, left, 1`,
);

/** Sliding windows: the weighted two-window estimate of each rule, as `slidingWindowScript` computes it. */
export const slidingWindowRulesSource = rulesSource(
  `
  local current = math.floor(now / window)
  local elapsed = now - current * window
  local state = redis.pcall('HMGET', KEYS[i], 'w', 'c', 'p')
  if state.err then
    malformed(KEYS[i])
    state = {}
  end
  local w, c, p = tonumber(state[1]), tonumber(state[2]) or 0, tonumber(state[3]) or 0
  if (state[1] or state[2] or state[3]) and not (finite(w) and finite(c) and finite(p) and c >= 0 and p >= 0) then
    malformed(KEYS[i])
    w, c, p = nil, 0, 0
  end
  local exists = w and 1 or 0
  if w ~= current then
    if w == current - 1 then p = c else p = 0 end
    c = 0
  end
  local estimate = p * (window - elapsed) / window + c
  local wait = window - elapsed
  if estimate + cost > limit then
    allowed = false
    ${slidingWindowWait}
  end
  states[i] = {current, c, p, elapsed, estimate}
  reply[3 * i - 1], reply[3 * i], reply[3 * i + 1] = math.ceil(estimate), wait, exists`,
  `
  local current, c, p, elapsed, estimate = unpack(states[i])
  redis.call('HSET', KEYS[i], 'w', current, 'c', c + cost, 'p', p)
  redis.call('PEXPIRE', KEYS[i], 2 * window - elapsed)
  reply[3 * i - 1], reply[3 * i + 1] = math.ceil(estimate + cost), 1`,
);

/** Token buckets: one bucket per rule, as `tokenBucketScript` keeps it. */
export const tokenBucketRulesSource = rulesSource(
  `
  local state = redis.pcall('HMGET', KEYS[i], 't', 'ts')
  if state.err then
    malformed(KEYS[i])
    state = {}
  end
  local tokens, ts = tonumber(state[1]), tonumber(state[2])
  if (state[1] or state[2]) and not (finite(tokens) and finite(ts) and tokens >= 0 and ts <= now) then
    malformed(KEYS[i])
    tokens, ts = nil, nil
  end
  local exists = 1
  if not tokens then tokens, ts, exists = limit, now, 0 end
  if limit > 0 then tokens = math.min(limit, tokens + (now - ts) * limit / window) end
  local wait = 0
  if limit > 0 then wait = math.ceil((limit - tokens) * window / limit) end
  if tokens < cost then
    allowed = false
    wait = window
    if limit > 0 and cost <= limit then wait = math.max(1, math.ceil((cost - tokens) * window / limit)) end
  end
  states[i] = tokens
  reply[3 * i - 1], reply[3 * i], reply[3 * i + 1] = math.ceil(limit - tokens), wait, exists`,
  `
  local tokens = states[i] - cost
  local full = 0
  if limit > 0 then full = math.ceil((limit - tokens) * window / limit) end
  redis.call('HSET', KEYS[i], 't', tokens, 'ts', now)
  redis.call('PEXPIRE', KEYS[i], math.max(1, full))
  reply[3 * i - 1], reply[3 * i], reply[3 * i + 1] = math.ceil(limit - tokens), full, 1`,
);

/**
 * Forgets a client: KEYS = its counters; ARGV = the channel every rateLimit() instance listens on, and the client's
 * first key as the instances know it (without the client's `keyPrefix`), which is published so that each drops its
 * memory of blocking that client. The publish may be refused (an ACL user without channel rights): the counters are
 * deleted all the same, and the refusal is the reply.
 */
export const resetScript = new RedisScript(
  'rate-limit-reset',
  `
redis.call('DEL', unpack(KEYS))
local published = redis.pcall('PUBLISH', ARGV[1], ARGV[2])
if type(published) == 'table' and published.err then return published.err end
return 0
`,
);

/** The hit and refund scripts of each algorithm, and the source of its several-rules form. */
export const algorithms = {
  'fixed-window': { hit: fixedWindowScript, refund: fixedWindowRefundScript, rules: fixedWindowRulesSource },
  'sliding-window': { hit: slidingWindowScript, refund: slidingWindowRefundScript, rules: slidingWindowRulesSource },
  'token-bucket': { hit: tokenBucketScript, refund: tokenBucketRefundScript, rules: tokenBucketRulesSource },
} as const;
