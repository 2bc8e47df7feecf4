-- set_name: set a player's display name alone (a submission may also set it, submit.lua).
--
-- KEYS[1]  display names (hash)    KEYS[2] their rebuild delta    KEYS[3] rebuild flag
-- KEYS[4]  events stream    KEYS[5] pages version (bumped: pages show the name)
-- ARGV[1]  user id    ARGV[2] the name (normalised by the caller)
--
-- Returns the id of the stream entry that records it: the worker persists it in order, so a
-- later name always wins in PostgreSQL as it does here.
-- include: bump_pages
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
bump_pages(KEYS[5])
local fields = {'k', 'name', 'u', ARGV[1], 'n', ARGV[2]}
local generation = redis.call('GET', KEYS[3])
if generation then
    -- A rebuild is loading the names: it writes this one over them at the swap.
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
    redis.call('PEXPIRE', KEYS[2], 86400000)
    table.insert(fields, 'g')
    table.insert(fields, generation)
end
return redis.call('XADD', KEYS[4], '*', unpack(fields))
