-- board_top: one page of one period of a board, in board order, from a 0-based offset, unless
-- the caller's copy of it is current.
--
-- KEYS[1]  namespace marker    KEYS[2] board (a period's sorted set)    KEYS[3] names (hash)
-- KEYS[4]  pages version (set by every write a page can show: keys.pages_version, bump_pages)
-- ARGV[1]  order: desc (highest first) or asc (lowest first)
-- ARGV[2]  offset (>= 0)    ARGV[3] page length (>= 1)
-- ARGV[4]  the version of the caller's copy of this page ("": none)
--
-- Returns {ready, version} when ARGV[4] is the current version and the board exists (the
-- caller's copy is the page), else {ready, version, members, first_rank, entries, names}:
-- members is the board's ZCARD; entries the flat member, score list of positions offset ..
-- offset + length - 1 in board order (ZREVRANGE for desc, ZRANGE for asc: ties in Redis's
-- member order, so paging by offset is stable while the board is unchanged); first_rank the
-- competition rank of the first entry (0 when the page is empty), from which the caller
-- derives the others' ranks; names the entries' display names in order (false: none; one
-- HMGET for the page). version is "<marker's value> <pages version>" (as top.lua's). ready is 0
-- (version "", the rest 0 and empty) when the namespace is not loaded. O(log n + length).
-- include: names_of
local marker = redis.call('GET', KEYS[1])
if not marker then
    return {0, '', 0, 0, {}, {}}
end
local asc = ARGV[1] == 'asc'
local offset = tonumber(ARGV[2])
local length = tonumber(ARGV[3])
if not (asc or ARGV[1] == 'desc') or not offset or offset < 0 or not length or length < 1 then
    -- A stop index of offset - 1 would read the whole board: refuse rather than scan.
    return redis.error_reply('ERR board_top: order must be desc or asc, offset >= 0, length >= 1')
end
-- The version before the page: a script is atomic, so either order reads the same state; this
-- one is the order a copy's validity needs outside a script.
local version = marker .. ' ' .. (redis.call('GET', KEYS[4]) or '0')
-- A period that left by its TTL (or an archived copy by its own) bumped nothing: a copy is
-- current only while its key exists (without it the page is empty, as short to send).
if version == ARGV[4] and redis.call('EXISTS', KEYS[2]) == 1 then
    return {1, version}
end
local members = redis.call('ZCARD', KEYS[2])
if offset >= members then
    return {1, version, members, 0, {}, {}}
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
return {1, version, members, better + 1, entries, names_of(entries, 2)}
