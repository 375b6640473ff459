-- Ends a grant: frees its in-flight slot, corrects or refunds what it counted, and learns
-- from how the call ended (latency, AIMD, Retry-After pause, cooldown, upstream signals).
-- KEYS[1] window hash  KEYS[2] inflight zset  KEYS[3] state hash
-- ARGV[1] now ('' = Redis TIME)  ARGV[2] reservation id  ARGV[3] grant bucket
-- ARGV[4] granted tokens  ARGV[5] outcome: ok|throttled|failed|unsent
-- ARGV[6] reported tokens  ARGV[7] latency seconds  ARGV[8] retry_after seconds
-- ARGV[9] remaining requests  ARGV[10] reset requests seconds
-- ARGV[11] remaining tokens  ARGV[12] reset tokens seconds  (ARGV[6..12]: '' = not given)
-- ARGV[13] max_parallel ('' = not declared)
-- ARGV[14] allowed_fails  ARGV[15] cooldown_time seconds  ARGV[16] cooldown window seconds
-- ARGV[17] the caller's own in-flight count ('' = not given; for calls this set never held)
-- Returns now
local window, inflight, state = KEYS[1], KEYS[2], KEYS[3]
local now = clock(ARGV[1])
local field, granted, outcome = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local reported, latency, retry_after = num(ARGV[6]), num(ARGV[7]), num(ARGV[8])
local declared = num(ARGV[13]) ~= nil

redis.call('ZREMRANGEBYSCORE', inflight, '-inf', fmt(now))
redis.call('ZREM', inflight, ARGV[2])
-- The call being released was in flight, even when its lease already ran out.
local in_flight_before = math.max(redis.call('ZCARD', inflight) + 1, num(ARGV[17]) or 0)

local st, set = fields(state), {}
local blocked = num(st.blocked_until) or 0

-- What the grant counted: refunded when it never left, else corrected to the real tokens,
-- while its bucket still counts (the window's totals move with it).
local current = nil
if (outcome == 'unsent' or reported) and bucket_expiry(tonumber(field)) > now then
  current = redis.call('HMGET', window, field, 'requests', 'tokens')
end
if current and current[1] then
  local r, t = parse_counts(current[1])
  local requests, tokens = num(current[2]) or 0, num(current[3]) or 0
  local new_r, new_t
  if outcome == 'unsent' then
    new_r, new_t = math.max(0, r - 1), math.max(0, t - granted)
  else
    new_r, new_t = r, math.max(0, t + reported - granted)
  end
  requests, tokens = requests + new_r - r, tokens + new_t - t
  if new_r == 0 and new_t == 0 and outcome == 'unsent' then
    redis.call('HDEL', window, field)
  else
    redis.call('HSET', window, field, string.format('%d %d', new_r, new_t))
  end
  redis.call('HSET', window, 'requests', string.format('%d', requests),
    'tokens', string.format('%d', tokens))
  redis.call('EXPIRE', window, WINDOW_TTL)
end
if outcome == 'unsent' then
  local signal_requests, signal_tokens = signal(st, 'sig_req', now), signal(st, 'sig_tok', now)
  if signal_requests then set.sig_req = string.format('%d', signal_requests + 1) end
  if signal_tokens then set.sig_tok = string.format('%d', signal_tokens + granted) end
end

local learned, average = num(st.learned), num(st.latency)
if outcome == 'ok' then
  if latency then
    if average then average = average + LATENCY_ALPHA * (latency - average)
    else average = latency end
    set.latency = fmt(average)
  end
  if learned and not declared then set.learned = fmt(learned + 1 / learned) end
elseif outcome == 'throttled' then
  blocked = math.max(blocked, now + (retry_after or DEFAULT_THROTTLE_PAUSE))
  set.blocked_until = fmt(blocked)
  local cut_at = num(st.cut_at)
  -- One cut per overload: the 429s of one burst arrive within about one latency.
  if not declared
      and (not cut_at or now >= cut_at + math.max(average or 0, MIN_CUT_INTERVAL)) then
    set.learned = fmt(math.max(1, math.min(learned or math.huge, in_flight_before) / 2))
    set.cut_at = fmt(now)
  end
elseif outcome == 'failed' then
  local allowed, cooldown, span = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16])
  if allowed >= 0 and cooldown > 0 then
    local fails = {}
    for t in string.gmatch(st.fails or '', '%S+') do
      if tonumber(t) > now - span then fails[#fails + 1] = t end
    end
    fails[#fails + 1] = fmt(now)
    if #fails > allowed then
      blocked = math.max(blocked, now + cooldown)
      set.blocked_until = fmt(blocked)
      set.cooling_until = fmt(now + cooldown)
      fails = {}
    end
    set.fails = table.concat(fails, ' ')
  end
end

if ARGV[9] ~= '' then
  set.sig_req = ARGV[9]
  set.sig_req_reset = fmt(now + (num(ARGV[10]) or DEFAULT_SIGNAL_RESET))
end
if ARGV[11] ~= '' then
  set.sig_tok = ARGV[11]
  set.sig_tok_reset = fmt(now + (num(ARGV[12]) or DEFAULT_SIGNAL_RESET))
end

local flat = {}
for name, value in pairs(set) do
  flat[#flat + 1] = name
  flat[#flat + 1] = value
end
if #flat > 0 then
  redis.call('HSET', state, unpack(flat))
  expire_state(state, blocked, now)
end
return fmt(now)
