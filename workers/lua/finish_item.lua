-- Records the outcomes of one or more items, each exactly once; with the last item, ends the
-- job. Many items in one call: a packed embeddings request finishes its items together.
-- KEYS[1] job hash  KEYS[2] results hash  KEYS[3] items hash  KEYS[4] done list
-- KEYS[5] active zset  KEYS[6] webhooks-due zset  KEYS[7] finalizing zset  KEYS[8] attempts
-- KEYS[9] credentials hash (deleted when the job ends)
-- ARGV[1] now  ARGV[2] ttl seconds  ARGV[3] event channel  ARGV[4] job id
-- ARGV[5..] quadruples: item index, result JSON, outcome (completed|failed|cancelled|expired),
--   usage "prompt completion total requests" ('' = the item reached no upstream)
-- Returns {number of results this call wrote, the job status after it, then the usage those
--   results added: prompt, completion, total tokens, requests}
local job = KEYS[1]
if redis.call('EXISTS', job) == 0 then return {0, ''} end
local written = 0
local added = {0, 0, 0, 0}
local USAGE_FIELDS = {'prompt_tokens', 'completion_tokens', 'total_tokens', 'requests'}
for i = 5, #ARGV, 4 do
  local index, result, outcome, usage = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('HSETNX', KEYS[2], index, result) == 1 then
    written = written + 1
    if usage ~= '' then
      local n = 1
      for value in string.gmatch(usage, '%d+') do
        local v = tonumber(value)
        if v > 0 then
          added[n] = added[n] + v
          redis.call('HINCRBY', job, 'usage_' .. USAGE_FIELDS[n], v)
        end
        n = n + 1
      end
    end
    redis.call('RPUSH', KEYS[4], index)
    redis.call('HINCRBY', job, outcome, 1)
    redis.call('PUBLISH', ARGV[3], cjson.encode({type = 'item.' .. outcome, id = ARGV[4],
      index = tonumber(index), request_counts = counts(job)}))
  end
end
if written == 0 then return {0, redis.call('HGET', job, 'status'), 0, 0, 0, 0} end
local status = end_if_done(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return {written, status, added[1], added[2], added[3], added[4]}
