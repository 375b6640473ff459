-- Shared helpers, prepended to acquire.lua, release.lua and snapshot.lua (not a script of
-- its own); the constants above them are generated from the Python ones (schedulers/budget.py).
-- The window arithmetic makes the decisions of schedulers/window.py: keep them in step.

local function num(value)  -- an ARGV or hash field -> number, nil when absent or ''
  if value == nil or value == false or value == '' then return nil end
  return tonumber(value)
end

local function fmt(x)  -- a number -> a string Python reads back exactly
  return string.format('%.17g', x)
end

local function clock(arg)  -- ARGV now when a caller (a test) passes one, else Redis TIME
  local now = num(arg)
  if now then return now end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function bucket_of(t)
  return math.floor(t / BUCKET_SECONDS)
end

local function bucket_expiry(bucket)
  return (bucket + 1) * BUCKET_SECONDS + WINDOW_SECONDS + WINDOW_MARGIN
end

local function parse_counts(value)  -- "requests tokens" -> requests, tokens
  local r, t = string.match(value, '^(%d+) (%d+)$')
  return tonumber(r), tonumber(t)
end

local function fields(key)  -- HGETALL as a table
  local flat, out = redis.call('HGETALL', key), {}
  for i = 1, #flat, 2 do out[flat[i]] = flat[i + 1] end
  return out
end

local function expire_state(key, blocked_until, now)
  -- A day, or longer while a block lasts longer: the block must not be forgotten early.
  redis.call('EXPIRE', key, math.max(STATE_TTL, math.ceil(blocked_until - now) + 1))
end

local function signal(st, name, now)  -- a signal's remaining count while in force, else nil
  local reset = num(st[name .. '_reset']) or 0
  if now < reset then return num(st[name]) end
  return nil
end

-- The window hash holds one field per bucket ("requests tokens") and three more: the totals
-- of the buckets still counting ('requests', 'tokens') and 'low', below which every bucket
-- is gone. Keeping totals makes a grant O(1); only buckets that stop counting are read.
local SETTLE_WALK = 500  -- past this many buckets to walk, recount the hash instead
local WALK_CHUNK = 32    -- buckets per HMGET while looking for the time a request fits

local function first_live(now)  -- the oldest bucket still counting at now
  local bucket = math.floor((now - WINDOW_SECONDS - WINDOW_MARGIN) / BUCKET_SECONDS) - 2
  while bucket_expiry(bucket) <= now do bucket = bucket + 1 end
  return bucket
end

local function bucket_names(from, to)
  local names = {}
  for bucket = from, to do names[#names + 1] = string.format('%d', bucket) end
  return names
end

local function hdel(key, names)
  for i = 1, #names, 1000 do
    redis.call('HDEL', key, unpack(names, i, math.min(i + 999, #names)))
  end
end

-- Brings the window to now: deletes the buckets that stopped counting, out of the totals too.
-- Returns requests, tokens (still counting) and low (the oldest bucket that may count).
local function settle(window, now)
  local meta = redis.call('HMGET', window, 'requests', 'tokens', 'low')
  local requests, tokens, low = num(meta[1]) or 0, num(meta[2]) or 0, num(meta[3])
  local first = first_live(now)
  if low == nil or low >= first then return requests, tokens, low or first end
  local dead = {}
  if first - low > SETTLE_WALK then  -- idle for long, or the clock jumped: recount
    local flat = redis.call('HGETALL', window)
    requests, tokens = 0, 0
    for i = 1, #flat, 2 do
      local bucket = tonumber(flat[i])
      if bucket and bucket < first then
        dead[#dead + 1] = flat[i]
      elseif bucket then
        local r, t = parse_counts(flat[i + 1])
        requests, tokens = requests + r, tokens + t
      end
    end
  else
    local names = bucket_names(low, first - 1)
    local values = redis.call('HMGET', window, unpack(names))
    for i = 1, #names do
      if values[i] then
        local r, t = parse_counts(values[i])
        requests, tokens = requests - r, tokens - t
        dead[#dead + 1] = names[i]
      end
    end
  end
  hdel(window, dead)
  redis.call('HSET', window, 'requests', string.format('%d', requests),
    'tokens', string.format('%d', tokens), 'low', string.format('%d', first))
  return requests, tokens, first
end
