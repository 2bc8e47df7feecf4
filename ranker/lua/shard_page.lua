-- shard_page: a run of one shard of a sharded board (ranker.shards), in board order, for the
-- pages and windows ranker.fanout merges from the shards.
--
-- KEYS[1]  the shard's marker    KEYS[2] the shard's sorted set of the board period
-- KEYS[3]  the shard's display names (hash)
-- ARGV[1]  order: desc (highest first) or asc (lowest first)
-- ARGV[2]  0-based start (>= 0)    ARGV[3] length (>= 0)
--
-- Returns {ready, members, entries, names}: members is the ZCARD; entries the flat member,
-- score list of positions start .. start + length - 1 (ZREVRANGE for desc, ZRANGE for asc);
-- names their display names (false: none). ready is 0 (the rest 0 and empty) when the shard is
-- not loaded. O(log n + length).
-- include: names_of
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {0, 0, {}, {}}
end
local asc = ARGV[1] == 'asc'
local start = tonumber(ARGV[2])
local length = tonumber(ARGV[3])
if not (asc or ARGV[1] == 'desc') or not start or start < 0 or not length or length < 0 then
    -- A stop index of start - 1 would read the whole shard: refuse rather than scan.
    return redis.error_reply('ERR shard_page: order must be desc or asc, start >= 0, length >= 0')
end
local members = redis.call('ZCARD', KEYS[2])
if length == 0 or start >= members then
    return {1, members, {}, {}}
end
local entries = redis.call(asc and 'ZRANGE' or 'ZREVRANGE', KEYS[2], start, start + length - 1,
    'WITHSCORES')
return {1, members, entries, names_of(entries, 2)}
