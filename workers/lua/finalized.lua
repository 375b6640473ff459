-- A finalizing /v1/batches job takes its final status once its output files are written.
-- KEYS[1..9] as in _end_job.lua
-- ARGV[1] now  ARGV[2] ttl  ARGV[3] channel  ARGV[4] job id  ARGV[5] output file id or ''
-- ARGV[6] error file id or ''
-- Returns {status after, 1 if this call ended the job else 0}: with 0, another run got
-- there first and the caller removes the files it wrote.
local job = KEYS[1]
local f = redis.call('HMGET', job, 'status', 'final')
if f[1] ~= 'finalizing' then return {f[1] or '', 0} end
redis.call('ZREM', KEYS[7], ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', job, 'output_file_id', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', job, 'error_file_id', ARGV[6]) end
return {close_job(f[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4]), 1}
