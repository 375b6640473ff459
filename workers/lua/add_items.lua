-- Writes one page of a batch input file's items and checks its custom_ids are new.
-- KEYS[1] items hash  KEYS[2] ids hash (custom_id -> line)
-- ARGV[1] n lines  ARGV[2..n+1] custom_ids  ARGV[n+2..2n+1] their line numbers
-- ARGV[2n+2..] pairs: item index, item JSON
-- Returns a flat list {line, earlier line, ...} of the lines whose custom_id was already used
local n = tonumber(ARGV[1])
local dup = {}
for i = 2, n + 1 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + n]) == 0 then
    dup[#dup + 1] = tonumber(ARGV[i + n])
    dup[#dup + 1] = tonumber(redis.call('HGET', KEYS[2], ARGV[i]))
  end
end
if #ARGV > 2 * n + 1 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2 * n + 2))
end
return dup
