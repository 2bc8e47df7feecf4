-- board_around: a window of one period of a board that contains one player.
--
-- KEYS[1]  namespace marker    KEYS[2] board (a period's sorted set)    KEYS[3] names (hash)
-- ARGV[1]  order: desc (highest first) or asc (lowest first)
-- ARGV[2]  user id    ARGV[3] window length (>= 1)
--
-- Returns {ready, members, found, first_rank, start, entries, names}: members is the ZCARD;
-- found 1 when the player is on the board, else 0 (and the rest 0 and empty); entries the flat
-- member, score list of the window in board order; start its 0-based position and first_rank
-- the competition rank of its first entry, from which the caller derives the others' ranks;
-- names the entries' display names (false: none).
-- ready is 0 when the namespace is not loaded. O(log n + length).
--
-- The window starts at clamp(p - floor((length - 1) / 2), 0, max(0, members - length)), p the
-- player's position: away from the ends, floor((length - 1) / 2) players above the player and
-- floor(length / 2) below (an even length puts the player just above the middle). Near either
-- end the window slides instead of shrinking, so it holds length players whenever the board does.
-- include: names_of
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {0, 0, 0, 0, 0, {}, {}}
end
local asc = ARGV[1] == 'asc'
local length = tonumber(ARGV[3])
if not (asc or ARGV[1] == 'desc') or not length or length < 1 then
    return redis.error_reply('ERR board_around: order must be desc or asc, length >= 1')
end
local members = redis.call('ZCARD', KEYS[2])
local position = redis.call(asc and 'ZRANK' or 'ZREVRANK', KEYS[2], ARGV[2])
if not position then
    return {1, members, 0, 0, 0, {}, {}}
end
local start = math.max(0, math.min(position - math.floor((length - 1) / 2), members - length))
local entries = redis.call(asc and 'ZRANGE' or 'ZREVRANGE', KEYS[2], start, start + length - 1,
    'WITHSCORES')
-- The first entry may tie with players above the window: its rank counts the strictly better.
local better
if asc then
    better = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. entries[2])
else
    better = redis.call('ZCOUNT', KEYS[2], '(' .. entries[2], '+inf')
end
return {1, members, 1, better + 1, start, entries, names_of(entries, 2)}
