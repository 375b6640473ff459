-- Shared helpers, prepended to the scripts that can end a job (not a script of its own).
-- KEYS of every such script start: job, results, items, done, active, webhooks-due,
-- finalizing (the zset of /v1/batches jobs whose output files are due), attempts,
-- credentials (a caller's encrypted upstream credentials: deleted as the job ends).
local function counts(job)
  local f = redis.call('HMGET', job, 'total', 'completed', 'failed', 'cancelled', 'expired')
  return {total = tonumber(f[1]) or 0, completed = tonumber(f[2]) or 0,
          failed = tonumber(f[3]) or 0, cancelled = tonumber(f[4]) or 0,
          expired = tonumber(f[5]) or 0}
end

-- close_job(status, now, ttl, channel, job_id): the job takes its final status: timestamps,
-- out of the active set, the TTL on its keys, its webhook queued, the event published.
local function close_job(status, now, ttl, channel, job_id)
  local job = KEYS[1]
  redis.call('HSET', job, 'status', status, 'finished_at', now, status .. '_at', now)
  redis.call('ZREM', KEYS[5], job_id)
  for _, i in ipairs({1, 2, 3, 4, 8}) do redis.call('EXPIRE', KEYS[i], ttl) end
  redis.call('DEL', KEYS[9])
  if redis.call('HGET', job, 'webhook') == '1' then
    redis.call('HSET', job, 'webhook_state', 'pending')
    redis.call('ZADD', KEYS[6], now, job_id)
  end
  redis.call('PUBLISH', channel, cjson.encode({type = 'job.' .. status, id = job_id,
    status = status, request_counts = counts(job)}))
  return status
end

-- end_if_done(now, ttl, channel, job_id) -> status
-- Ends the job when every item has an outcome. A /v1/batches job (``files`` = 1) first goes
-- ``finalizing`` with its final status kept in ``final``: it takes that status once its
-- output files are written (finalized.lua).
local function end_if_done(now, ttl, channel, job_id)
  local job = KEYS[1]
  local c = counts(job)
  local f = redis.call('HMGET', job, 'status', 'stop', 'kind', 'files')
  if c.completed + c.failed + c.cancelled + c.expired < c.total then return f[1] end
  local status
  if f[2] == 'cancelled' or f[2] == 'expired' then status = f[2]
  elseif c.completed == 0 and c.total > 0 and f[3] ~= 'batch' then status = 'failed'
  else status = 'completed' end
  if f[4] == '1' then
    redis.call('HSET', job, 'status', 'finalizing', 'finalizing_at', now, 'final', status)
    redis.call('ZREM', KEYS[5], job_id)
    redis.call('ZADD', KEYS[7], now, job_id)
    redis.call('PUBLISH', channel, cjson.encode({type = 'job.finalizing', id = job_id,
      status = 'finalizing', request_counts = c}))
    return 'finalizing'
  end
  return close_job(status, now, ttl, channel, job_id)
end
