-- Reads one deployment's budget without changing it (expired entries are left for acquire).
-- KEYS[1] window hash  KEYS[2] inflight zset  KEYS[3] state hash
-- ARGV[1] now ('' = Redis TIME)
-- Returns {now, window as a flat HGETALL, in-flight grants whose lease has not run out,
-- state as a flat HGETALL}
local now = clock(ARGV[1])
return {fmt(now), redis.call('HGETALL', KEYS[1]),
        redis.call('ZCOUNT', KEYS[2], '(' .. fmt(now), '+inf'), redis.call('HGETALL', KEYS[3])}
