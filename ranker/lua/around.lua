-- around: the players just above and below one player on a board.
--
-- KEYS[1]  namespace marker    KEYS[2] board    KEYS[3] display names (hash)
-- ARGV[1]  user id    ARGV[2] how many on each side (>= 0)
--
-- Returns {ready, first_rank, first_position, entries, names}: entries is a flat member, score
-- list, best first, containing the player, names their display names (false: none); first_rank is the rank (1 + players strictly above) of the
-- first entry and first_position its 0-based position, from which the caller derives the
-- others' ranks. first_rank is false when the player is not on the board; ready is 0 when the
-- namespace is not loaded.
-- include: names_of
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {0, false, 0, {}, {}}
end
local position = redis.call('ZREVRANK', KEYS[2], ARGV[1])
if not position then
    return {1, false, 0, {}, {}}
end
local side = tonumber(ARGV[2])
local start = math.max(position - side, 0)
local entries = redis.call('ZREVRANGE', KEYS[2], start, position + side, 'WITHSCORES')
local first_rank = redis.call('ZCOUNT', KEYS[2], '(' .. entries[2], '+inf') + 1
return {1, first_rank, start, entries, names_of(entries, 2)}
