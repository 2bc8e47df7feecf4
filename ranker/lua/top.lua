-- top: the first players of a board, best first, unless the caller's copy of them is current.
--
-- KEYS[1]  namespace marker    KEYS[2] board    KEYS[3] display names (hash)
-- KEYS[4]  pages version (set by every write a page can show: keys.pages_version, bump_pages)
-- ARGV[1]  how many (>= 1)
-- ARGV[2]  the version of the caller's copy of this page ("": none)
--
-- Returns {ready, version} when ARGV[2] is the current version and the board exists (the
-- caller's copy is the page), else {ready, version, entries, names}: entries is the flat
-- ZREVRANGE ... WITHSCORES reply (member, score, member, score, ...), names the entries'
-- display names in order (false: none). version is "<marker's value> <pages version>": a
-- wiped namespace starts its versions again under the marker of its rebuild, so none comes back.
-- ready is 0 (version "", the lists empty) when the namespace is not loaded. The first
-- entry's rank is 1; the caller derives the others from ties.
-- include: names_of
local marker = redis.call('GET', KEYS[1])
if not marker then
    return {0, '', {}, {}}
end
-- The version before the page: a script is atomic, so either order reads the same state; this
-- one is the order a copy's validity needs outside a script.
local version = marker .. ' ' .. (redis.call('GET', KEYS[4]) or '0')
-- A board that left by its TTL bumped nothing: a copy is current only while its key exists
-- (without it the page is empty, as short to send as "unchanged").
if version == ARGV[2] and redis.call('EXISTS', KEYS[2]) == 1 then
    return {1, version}
end
local entries = redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
return {1, version, entries, names_of(entries, 2)}
