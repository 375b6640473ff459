-- Reads one deployment's budget without changing it (expired entries are left for acquire).
-- KEYS[1] window hash  KEYS[2] inflight zset  KEYS[3] state hash
-- ARGV[1] now ('' = Redis TIME)
-- Returns {now, the window hash as one newline-separated "field, value, ..." string (one
-- reply string parses far faster than ~500), in-flight grants whose lease has not run out,
-- the state hash as a flat HGETALL}
local now = clock(ARGV[1])
return {fmt(now), table.concat(redis.call('HGETALL', KEYS[1]), '\n'),
        redis.call('ZCOUNT', KEYS[2], '(' .. fmt(now), '+inf'), redis.call('HGETALL', KEYS[3])}
