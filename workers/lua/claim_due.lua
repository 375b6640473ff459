-- Claims the members of a schedule zset that are due, pushing each one's score to a new
-- deadline so a concurrent claimer does not take it too (leases, webhook deliveries).
-- KEYS[1] zset  ARGV[1] now  ARGV[2] new deadline  ARGV[3] max members
-- Returns the claimed members
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], member) end
return due
