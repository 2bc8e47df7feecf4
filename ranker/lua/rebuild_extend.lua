-- rebuild_extend: keep a running rebuild's flag alive.
--
-- KEYS[1]  rebuild flag
-- ARGV[1]  generation id    ARGV[2] flag ttl (ms)
--
-- Returns 1 when the flag still belongs to the generation (and was extended), else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
return 0
