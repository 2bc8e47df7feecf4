-- rank: a player's total and rank on one board.
--
-- KEYS[1]  namespace marker    KEYS[2] board    KEYS[3] display names (hash)
-- ARGV[1]  user id
--
-- Returns {ready, total, rank, name}: name is the player's display name (false: none); ready is 0 when the namespace is not loaded (a rebuild is due);
-- total and rank are false when the player is not on the board. Rank is 1 + the number of
-- players with a strictly greater total (ties share a rank), counted in O(log n).
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {0, false, false, false}
end
local total = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not total then
    return {1, false, false, false}
end
local rank = redis.call('ZCOUNT', KEYS[2], '(' .. total, '+inf') + 1
return {1, total, rank, redis.call('HGET', KEYS[3], ARGV[1])}
