-- Hands out the next chunks of a job, keeping at most a window of its items outstanding.
-- Each chunk handed out gets a lease; recovery re-queues chunks whose lease runs out.
-- KEYS[1] job hash  KEYS[2] leases zset
-- ARGV[1] window (items)  ARGV[2] chunk size  ARGV[3] lease deadline  ARGV[4] job id
-- Returns a flat list {start1, stop1, start2, stop2, ...} of item index ranges [start, stop)
local f = redis.call('HMGET', KEYS[1], 'total', 'fed', 'completed', 'failed', 'cancelled',
  'expired', 'stop')
if not f[1] or f[7] then return {} end
local total, fed = tonumber(f[1]), tonumber(f[2]) or 0
local finished = (tonumber(f[3]) or 0) + (tonumber(f[4]) or 0) + (tonumber(f[5]) or 0)
  + (tonumber(f[6]) or 0)
local room = tonumber(ARGV[1]) - (fed - finished)
local n = math.min(room, total - fed)
if n <= 0 then return {} end
local chunk, out, start = tonumber(ARGV[2]), {}, fed
while start < fed + n do
  local stop = math.min(start + chunk, fed + n)
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4] .. '|' .. start .. '|' .. stop)
  out[#out + 1] = start
  out[#out + 1] = stop
  start = stop
end
redis.call('HSET', KEYS[1], 'fed', fed + n)
return out
