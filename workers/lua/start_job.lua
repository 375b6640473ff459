-- Marks a queued job in progress when its first item starts (and only then).
-- KEYS[1] job hash  ARGV[1] now  ARGV[2] event channel  ARGV[3] job id
-- Returns the job status after the call ('' when there is no such job)
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return '' end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'in_progress', 'in_progress_at', ARGV[1])
  redis.call('PUBLISH', ARGV[2], cjson.encode({type = 'job.in_progress', id = ARGV[3],
    status = 'in_progress'}))
  return 'in_progress'
end
return status
