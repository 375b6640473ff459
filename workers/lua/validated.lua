-- Ends the validation of a /v1/batches input file: the batch is queued with its items, or
-- fails with the errors found (its items removed: nothing half-created stays behind).
-- KEYS[1..9] as in _end_job.lua  KEYS[10] ids hash (duplicate check, dropped either way)
-- ARGV[1] ok|failed  ARGV[2] now  ARGV[3] ttl  ARGV[4] channel  ARGV[5] job id
-- ARGV[6] total items (ok)  ARGV[7] errors JSON (failed)
-- Returns the status after the call; anything but 'queued'/'failed' means the batch was
-- stopped (cancelled, expired) or removed meanwhile, and the caller drops what it wrote.
local job = KEYS[1]
redis.call('DEL', KEYS[10])
local status = redis.call('HGET', job, 'status')
if status ~= 'validating' then return status or '' end
if ARGV[1] == 'ok' then
  redis.call('HSET', job, 'status', 'queued', 'total', ARGV[6], 'fed', 0)
  redis.call('PUBLISH', ARGV[4], cjson.encode({type = 'job.queued', id = ARGV[5],
    status = 'queued', request_counts = counts(job)}))
  return 'queued'
end
redis.call('DEL', KEYS[3])
redis.call('HSET', job, 'errors', ARGV[7], 'total', 0)
return close_job('failed', ARGV[2], ARGV[3], ARGV[4], ARGV[5])
