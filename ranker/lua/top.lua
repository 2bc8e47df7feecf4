-- top: the first players of a board, best first.
--
-- KEYS[1]  namespace marker    KEYS[2] board    KEYS[3] display names (hash)
-- ARGV[1]  how many (>= 1)
--
-- Returns {ready, entries, names}: entries is the flat ZREVRANGE ... WITHSCORES reply
-- (member, score, member, score, ...), names the entries' display names in order (false:
-- none); ready is 0 (and the lists empty) when the namespace is not loaded. The first entry's rank is 1; the caller derives the others from ties.
-- include: names_of
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {0, {}, {}}
end
local entries = redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
return {1, entries, names_of(entries, 2)}
