-- shard_counts: what one shard of a sharded board (ranker.shards) holds ahead of given scores,
-- for the ranks and positions ranker.fanout sums over the shards.
--
-- KEYS[1]  the shard's marker    KEYS[2] the shard's sorted set of the board period
-- KEYS[3]  the shard's display names (hash)
-- ARGV[1]  order: desc (highest first) or asc (lowest first)
-- ARGV[2]  a user id ("": none)    ARGV[3 ..] scores
--
-- Returns {ready, members, score, position, name, better 1, tied 1, better 2, tied 2, ...}:
-- members is the ZCARD; score, position (0-based, in board order) and display name are the
-- user's (false when the user is not on it, or none was asked for; name false: none); then for each score (the user's own first when
-- found, then ARGV[3 ..]) how many members score strictly better and how many score the same.
-- ready is 0 (and the rest 0 and false) when the shard is not loaded. O(log n) per score.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {0, 0, false, false, false}
end
local asc = ARGV[1] == 'asc'
if not (asc or ARGV[1] == 'desc') then
    return redis.error_reply('ERR shard_counts: order must be desc or asc')
end
local out = {1, redis.call('ZCARD', KEYS[2]), false, false, false}
local scores = {}
if ARGV[2] ~= '' then
    local score = redis.call('ZSCORE', KEYS[2], ARGV[2])
    if score then
        out[3] = score
        out[4] = redis.call(asc and 'ZRANK' or 'ZREVRANK', KEYS[2], ARGV[2])
        out[5] = redis.call('HGET', KEYS[3], ARGV[2])
        scores[1] = score
    end
end
for i = 3, #ARGV do
    scores[#scores + 1] = ARGV[i]
end
for _, score in ipairs(scores) do
    if asc then
        out[#out + 1] = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. score)
    else
        out[#out + 1] = redis.call('ZCOUNT', KEYS[2], '(' .. score, '+inf')
    end
    out[#out + 1] = redis.call('ZCOUNT', KEYS[2], score, score)
end
return out
