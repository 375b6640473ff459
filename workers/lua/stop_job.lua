-- Stops a running job (cancel or expiry): work not yet handed out ends with the target
-- outcome now; handed-out items end so when a worker reaches them; finished work is kept.
-- KEYS[1] job hash  KEYS[2] results hash  KEYS[3] items hash  KEYS[4] done list
-- KEYS[5] active zset  KEYS[6] webhooks-due zset  KEYS[7] finalizing zset  KEYS[8] attempts
-- KEYS[9] credentials hash (deleted when the job ends)
-- ARGV[1] target: cancelled|expired  ARGV[2] now  ARGV[3] ttl seconds  ARGV[4] channel
-- ARGV[5] job id
-- Returns {status after, 1 if this call stopped the job else 0}; status '' if no such job
local job = KEYS[1]
local f = redis.call('HMGET', job, 'status', 'stop', 'total', 'fed')
if not f[1] then return {'', 0} end
local ended = {completed = true, failed = true, cancelled = true, expired = true,
  finalizing = true}
if ended[f[1]] or f[2] then return {f[1], 0} end
redis.call('HSET', job, 'stop', ARGV[1])
if ARGV[1] == 'cancelled' then
  redis.call('HSET', job, 'status', 'cancelling', 'cancelling_at', ARGV[2])
end
local unfed = (tonumber(f[3]) or 0) - (tonumber(f[4]) or 0)
if unfed > 0 then
  redis.call('HINCRBY', job, ARGV[1], unfed)
  redis.call('HSET', job, 'fed', f[3])
end
local status = end_if_done(ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return {status, 1}
