-- board_player: a player's score and rank in one period of a board.
--
-- KEYS[1]  namespace marker    KEYS[2] board (a period's sorted set)    KEYS[3] names (hash)
-- ARGV[1]  order: desc (highest first) or asc (lowest first)    ARGV[2] user id
--
-- Returns {ready, members, score, rank, name}: members is the board's ZCARD; score and rank are
-- false when the player is not on the board; name the display name (false: none). Rank is 1 + the number of players with a strictly
-- better score (ties share a rank), counted in O(log n). ready is 0 (members 0) when the
-- namespace is not loaded.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {0, 0, false, false, false}
end
local asc = ARGV[1] == 'asc'
if not (asc or ARGV[1] == 'desc') then
    return redis.error_reply('ERR board_player: order must be desc or asc')
end
local members = redis.call('ZCARD', KEYS[2])
local score = redis.call('ZSCORE', KEYS[2], ARGV[2])
if not score then
    return {1, members, false, false, false}
end
local better
if asc then
    better = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. score)
else
    better = redis.call('ZCOUNT', KEYS[2], '(' .. score, '+inf')
end
return {1, members, score, better + 1, redis.call('HGET', KEYS[3], ARGV[2])}
