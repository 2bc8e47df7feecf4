-- top: the first players of a board, best first.
--
-- KEYS[1]  namespace marker    KEYS[2] board
-- ARGV[1]  how many (>= 1)
--
-- Returns {ready, entries}: entries is the flat ZREVRANGE ... WITHSCORES reply
-- (member, score, member, score, ...); ready is 0 (and entries empty) when the namespace is
-- not loaded. The first entry's rank is 1; the caller derives the others from ties.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {0, {}}
end
return {1, redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')}
