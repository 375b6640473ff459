-- Grants one request on a deployment when its budget has room now; else says until when not.
-- Forgets buckets that stopped counting and in-flight grants whose lease ran out (dead
-- workers) on the way.
-- KEYS[1] window hash  KEYS[2] inflight zset  KEYS[3] state hash
-- ARGV[1] now ('' = Redis TIME)  ARGV[2] tokens  ARGV[3] priority: interactive|bulk
-- ARGV[4] lease seconds  ARGV[5] reservation id
-- ARGV[6] rpm  ARGV[7] tpm  ARGV[8] max_parallel ('' = not declared)
-- Returns {1, bucket, now} when granted, {0, until, reason, now} when denied (numbers as
-- strings; until is 'inf' when the request can never fit)
local window, inflight, state = KEYS[1], KEYS[2], KEYS[3]
local now = clock(ARGV[1])
local need, priority, lease = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local rpm, tpm, max_parallel = num(ARGV[6]), num(ARGV[7]), num(ARGV[8])

redis.call('ZREMRANGEBYSCORE', inflight, '-inf', fmt(now))
local st = fields(state)
local interactive_until = num(st.interactive_until) or 0
if priority == 'bulk' and interactive_until > now then
  return {0, fmt(interactive_until), 'interactive', fmt(now)}
end
local requests, tokens, low = settle(window, now)
-- window.bulk_limits: bulk leaves INTERACTIVE_SHARE free while interactive callers are about.
if priority == 'bulk' and (num(st.interactive_seen) or -1) > now - WINDOW_SECONDS then
  if rpm then rpm = math.max(1, math.floor(rpm * (1 - INTERACTIVE_SHARE))) end
  if tpm and need <= math.floor(tpm * (1 - INTERACTIVE_SHARE)) then
    tpm = math.floor(tpm * (1 - INTERACTIVE_SHARE))
  end
end

-- When enough of the oldest buckets expire that total + want <= limit (window._drain_time):
-- walks the buckets oldest first, usually only the first few.
local function drain_time(column, total, want, limit)
  if want > limit then return math.huge end
  local last = bucket_of(now)
  for from = low, last, WALK_CHUNK do
    local names = bucket_names(from, math.min(from + WALK_CHUNK - 1, last))
    local values = redis.call('HMGET', window, unpack(names))
    for i = 1, #names do
      if values[i] then
        local counts = {parse_counts(values[i])}
        total = total - counts[column]
        if total + want <= limit then return math.max(now, bucket_expiry(from + i - 1)) end
      end
    end
  end
  return math.huge
end

-- window.holding: the limit that lets go last, ties to the first in window.REASONS.
local until_, reason = now, ''
local function hold(name, t)
  if t > until_ then until_, reason = t, name end
end
hold('blocked', num(st.blocked_until) or 0)
if rpm and requests + 1 > rpm then hold('rpm', drain_time(1, requests, 1, rpm)) end
if tpm and tokens + need > tpm then hold('tpm', drain_time(2, tokens, need, tpm)) end
local signal_requests, signal_tokens = signal(st, 'sig_req', now), signal(st, 'sig_tok', now)
if signal_requests and signal_requests <= 0 then hold('signal_requests', num(st.sig_req_reset)) end
if signal_tokens and signal_tokens < need then hold('signal_tokens', num(st.sig_tok_reset)) end
local learned = num(st.learned)
local cap = max_parallel or (learned and math.max(1, math.floor(learned)))
if cap and redis.call('ZCARD', inflight) >= cap then
  local latency = num(st.latency) or DEFAULT_PARALLEL_WAIT
  hold('parallel', now + math.max(latency, MIN_PARALLEL_WAIT))
end

if until_ > now then
  if priority == 'interactive' and until_ ~= math.huge then
    -- Bulk must not take the budget that frees up at until_: it is this caller's.
    local held = math.max(interactive_until, until_ + INTERACTIVE_HOLD)
    redis.call('HSET', state, 'interactive_until', fmt(held))
    expire_state(state, num(st.blocked_until) or 0, now)
  end
  return {0, fmt(until_), reason, fmt(now)}
end

local bucket = bucket_of(now)
local field = string.format('%d', bucket)
local current, r, t = redis.call('HGET', window, field), 0, 0
if current then r, t = parse_counts(current) end
redis.call('HSET', window, field, string.format('%d %d', r + 1, t + need),
  'requests', string.format('%d', requests + 1), 'tokens', string.format('%d', tokens + need),
  'low', string.format('%d', math.min(low, bucket)))  -- a clock stepping back stays counted
redis.call('EXPIRE', window, WINDOW_TTL)
redis.call('ZADD', inflight, fmt(now + lease), ARGV[5])
if redis.call('PTTL', inflight) < lease * 1000 then
  redis.call('PEXPIRE', inflight, math.ceil(lease * 1000) + 1000)
end
if priority == 'interactive' then
  redis.call('HSET', state, 'interactive_seen', fmt(now))
  expire_state(state, num(st.blocked_until) or 0, now)
end
if signal_requests or signal_tokens then
  if signal_requests then
    redis.call('HSET', state, 'sig_req', string.format('%d', signal_requests - 1))
  end
  if signal_tokens then
    redis.call('HSET', state, 'sig_tok', string.format('%d', signal_tokens - need))
  end
  expire_state(state, num(st.blocked_until) or 0, now)
end
return {1, field, fmt(now), requests + 1, tokens + need}
