-- ban: a player disappears from every board at once and their submissions are refused from
-- now on; the worker voids their sessions in PostgreSQL when it reaches this entry.
--
-- KEYS[1]  players under moderation (hash)    KEYS[2] moderation version
-- KEYS[3]  archive keys loaded (set)    KEYS[4] events stream    KEYS[5] definitions version
-- KEYS[6]  namespace marker    KEYS[7] pages version (bumped: the player leaves the pages)
-- KEYS[8 .. 7+a]  the archive keys the caller read from KEYS[3] (dropped: they reload)
-- KEYS[8+a ..]    the live keys of every period of every board Redis may hold
-- ARGV[1]  user id    ARGV[2] the definitions version the caller listed the boards with
-- ARGV[3]  a, the number of archive keys    ARGV[4] the admin's key id    ARGV[5] reason
-- ARGV[6]  when (unix ms, the caller's clock)
--
-- Returns {status, entry id}: "ok" and the ban's stream entry; "banned" when the player
-- already is (nothing changes); "stale" when the boards or the archives changed since the
-- caller listed them (nothing changes: it lists them again); "unloaded" when Redis lost the
-- namespace and its rebuild (which gives back the bans) has not finished.
-- include: bump_pages
if redis.call('EXISTS', KEYS[6]) == 0 then
    return {'unloaded', false}
end
local user = ARGV[1]
local state = redis.call('HGET', KEYS[1], user)
if state == 'b' then
    return {'banned', false}
end
local archives = tonumber(ARGV[3])
if (redis.call('GET', KEYS[5]) or '') ~= ARGV[2] or redis.call('SCARD', KEYS[3]) ~= archives then
    return {'stale', false}
end
-- An unban or a void under way is overtaken: their completion finds the state changed.
redis.call('HSET', KEYS[1], user, 'b')
for i = 8 + archives, #KEYS do
    redis.call('ZREM', KEYS[i], user)
end
for i = 8, 7 + archives do
    redis.call('UNLINK', KEYS[i])
end
redis.call('DEL', KEYS[3])
redis.call('INCR', KEYS[2])
bump_pages(KEYS[7])
local id = redis.call('XADD', KEYS[4], '*', 'k', 'ban', 'u', user, 'a', ARGV[4], 'r', ARGV[5],
                      't', ARGV[6])
return {'ok', id}
