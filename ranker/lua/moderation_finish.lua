-- moderation_finish: complete an unban or a void: write the player's scores, recomputed in
-- PostgreSQL from the session log, over every period Redis holds, and let their submissions in.
--
-- KEYS[1]  players under moderation (hash)    KEYS[2] moderation version
-- KEYS[3]  archive keys loaded (set)    KEYS[4] rebuild flag
-- KEYS[5]  pages version (bumped: the player's scores change on the pages)
-- KEYS[6 .. 5+a]  the archive keys the caller read from KEYS[3] (dropped: they reload)
-- KEYS[6+a ..]    the live keys of every period of every board Redis may hold
-- ARGV[1]  user id    ARGV[2] the state being completed ("u|v <token> <entry id>")
-- ARGV[3]  a, the number of archive keys
-- ARGV[4 ..] per live key, two values: the player's score there ("": none, the player leaves
--          it) and when the key expires (unix ms; 0: never)
--
-- The caller read the scores after PostgreSQL held every entry up to the state's (and the
-- player's submissions have waited since): they are the player's whole score.
-- Returns 1 when done; 0 when the state changed (another action overtook this one: nothing
-- is written); -1 while a rebuild runs (its swap would overwrite the scores: retry after it);
-- -2 when the archives changed since the caller listed them (list them again).
-- include: bump_pages
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
    return 0
end
if redis.call('EXISTS', KEYS[4]) == 1 then
    return -1
end
local archives = tonumber(ARGV[3])
if redis.call('SCARD', KEYS[3]) ~= archives then
    return -2
end
local user = ARGV[1]
for i = 6 + archives, #KEYS do
    local j = 4 + 2 * (i - 6 - archives)
    local score, expires = ARGV[j], ARGV[j + 1]
    if score == '' then
        redis.call('ZREM', KEYS[i], user)
    else
        redis.call('ZADD', KEYS[i], score, user)
        if expires ~= '0' then
            redis.call('PEXPIREAT', KEYS[i], expires)
        end
    end
end
for i = 6, 5 + archives do
    redis.call('UNLINK', KEYS[i])
end
redis.call('DEL', KEYS[3])
redis.call('HDEL', KEYS[1], user)
redis.call('INCR', KEYS[2])
bump_pages(KEYS[5])
return 1
