-- Shared helper, prepended to the scripts that can end a job (not a script of its own).
-- end_if_done(job, results, items, done, active, due, now, ttl, channel, job_id) -> status
-- Ends the job when every item has an outcome: sets its final status and finished_at,
-- removes it from the active set, starts the TTL on its keys, queues its webhook, publishes.
local function counts(job)
  local f = redis.call('HMGET', job, 'total', 'completed', 'failed', 'cancelled', 'expired')
  return {total = tonumber(f[1]) or 0, completed = tonumber(f[2]) or 0,
          failed = tonumber(f[3]) or 0, cancelled = tonumber(f[4]) or 0,
          expired = tonumber(f[5]) or 0}
end

local function end_if_done(job, results, items, done, active, due, now, ttl, channel, job_id)
  local c = counts(job)
  local f = redis.call('HMGET', job, 'status', 'stop', 'kind', 'webhook')
  if c.completed + c.failed + c.cancelled + c.expired < c.total then return f[1] end
  local status
  if f[2] == 'cancelled' or f[2] == 'expired' then status = f[2]
  elseif c.completed == 0 and c.total > 0 and f[3] ~= 'batch' then status = 'failed'
  else status = 'completed' end
  redis.call('HSET', job, 'status', status, 'finished_at', now, status .. '_at', now)
  redis.call('ZREM', active, job_id)
  for _, key in ipairs({job, results, items, done}) do redis.call('EXPIRE', key, ttl) end
  if f[4] == '1' then
    redis.call('HSET', job, 'webhook_state', 'pending')
    redis.call('ZADD', due, now, job_id)
  end
  redis.call('PUBLISH', channel, cjson.encode({type = 'job.' .. status, id = job_id,
    status = status, request_counts = c}))
  return status
end
