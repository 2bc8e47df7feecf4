-- rebuild_begin: start a rebuild generation, unless one is already running.
--
-- KEYS[1]     rebuild flag
-- KEYS[2]     the namespace's bound database
-- KEYS[3..]   the temp and delta keys of every board period to rebuild (left over by an
--             abandoned rebuild)
-- ARGV[1]     generation id    ARGV[2] flag ttl (ms)
-- ARGV[3]     the rebuilding database's identity (`<id> <label>`)
--
-- Returns 1 when this generation started, 0 when another rebuild holds the flag.
if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
end
-- Clearing stale shadows and setting the flag in one call: a submission can land in a delta
-- key only once the flag is set, so nothing it adds is cleared here.
for i = 3, #KEYS do
    redis.call('UNLINK', KEYS[i])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
-- Bound in the same call: the boards are about to be this database's, so from now on only its
-- workers may persist the stream (the others check the binding before each batch).
redis.call('SET', KEYS[2], ARGV[3])
return 1
