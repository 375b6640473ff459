-- Records one item's outcome exactly once; with the last item, ends the job.
-- KEYS[1] job hash  KEYS[2] results hash  KEYS[3] items hash  KEYS[4] done list
-- KEYS[5] active zset  KEYS[6] webhooks-due zset
-- ARGV[1] item index  ARGV[2] result JSON  ARGV[3] outcome: completed|failed|cancelled|expired
-- ARGV[4] now  ARGV[5] ttl seconds  ARGV[6] event channel  ARGV[7] job id
-- Returns {1 if this call wrote the result else 0, the job status after it}
local job = KEYS[1]
if redis.call('EXISTS', job) == 0 then return {0, ''} end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then
  return {0, redis.call('HGET', job, 'status')}
end
redis.call('RPUSH', KEYS[4], ARGV[1])
redis.call('HINCRBY', job, ARGV[3], 1)
redis.call('PUBLISH', ARGV[6], cjson.encode({type = 'item.' .. ARGV[3], id = ARGV[7],
  index = tonumber(ARGV[1]), request_counts = counts(job)}))
local status = end_if_done(job, KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[4],
  ARGV[5], ARGV[6], ARGV[7])
return {1, status}
