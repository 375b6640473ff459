-- Shared helpers, prepended to acquire.lua, release.lua and snapshot.lua (not a script of
-- its own); the constants above them are generated from the Python ones (schedulers/budget.py).
-- The window arithmetic mirrors schedulers/window.py line for line: keep them in step.

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
