-- Records the outcomes of one or more items, each exactly once; with the last item, ends the
-- job. Many items in one call: a packed embeddings request finishes its items together.
-- KEYS[1] job hash  KEYS[2] results hash  KEYS[3] items hash  KEYS[4] done list
-- KEYS[5] active zset  KEYS[6] webhooks-due zset  KEYS[7] finalizing zset  KEYS[8] attempts
-- ARGV[1] now  ARGV[2] ttl seconds  ARGV[3] event channel  ARGV[4] job id
-- ARGV[5..] triples: item index, result JSON, outcome (completed|failed|cancelled|expired)
-- Returns {number of results this call wrote, the job status after it}
local job = KEYS[1]
if redis.call('EXISTS', job) == 0 then return {0, ''} end
local written = 0
for i = 5, #ARGV, 3 do
  local index, result, outcome = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HSETNX', KEYS[2], index, result) == 1 then
    written = written + 1
    redis.call('RPUSH', KEYS[4], index)
    redis.call('HINCRBY', job, outcome, 1)
    redis.call('PUBLISH', ARGV[3], cjson.encode({type = 'item.' .. outcome, id = ARGV[4],
      index = tonumber(index), request_counts = counts(job)}))
  end
end
if written == 0 then return {0, redis.call('HGET', job, 'status')} end
local status = end_if_done(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return {written, status}
