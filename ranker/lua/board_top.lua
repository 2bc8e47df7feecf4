-- board_top: one page of one period of a board, in board order, from a 0-based offset.
--
-- KEYS[1]  namespace marker    KEYS[2] board (a period's sorted set)    KEYS[3] names (hash)
-- ARGV[1]  order: desc (highest first) or asc (lowest first)
-- ARGV[2]  offset (>= 0)    ARGV[3] page length (>= 1)
--
-- Returns {ready, members, first_rank, entries, names}: members is the board's ZCARD; entries
-- the flat member, score list of positions offset .. offset + length - 1 in board order (ZREVRANGE for
-- desc, ZRANGE for asc: ties in Redis's member order, so paging by offset is stable while the
-- board is unchanged); first_rank the competition rank of the first entry (0 when the page is
-- empty), from which the caller derives the others' ranks; names the entries'
-- display names in order (false: none; one HMGET for the page). ready is 0 (the rest 0 and empty)
-- when the namespace is not loaded. O(log n + length).
-- include: names_of
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {0, 0, 0, {}, {}}
end
local asc = ARGV[1] == 'asc'
local offset = tonumber(ARGV[2])
local length = tonumber(ARGV[3])
if not (asc or ARGV[1] == 'desc') or not offset or offset < 0 or not length or length < 1 then
    -- A stop index of offset - 1 would read the whole board: refuse rather than scan.
    return redis.error_reply('ERR board_top: order must be desc or asc, offset >= 0, length >= 1')
end
local members = redis.call('ZCARD', KEYS[2])
if offset >= members then
    return {1, members, 0, {}, {}}
end
local entries = redis.call(asc and 'ZRANGE' or 'ZREVRANGE', KEYS[2], offset, offset + length - 1,
    'WITHSCORES')
-- The first entry may tie with players above the page: its rank counts the strictly better.
local better
if asc then
    better = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. entries[2])
else
    better = redis.call('ZCOUNT', KEYS[2], '(' .. entries[2], '+inf')
end
return {1, members, better + 1, entries, names_of(entries, 2)}
