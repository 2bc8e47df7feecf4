-- unban: a banned player's sessions count again. The worker restores them in PostgreSQL when
-- it reaches this entry; until the boards are recomputed from there (moderation_finish.lua)
-- the player stays off the boards and their submissions wait (submit answers "held").
--
-- KEYS[1]  players under moderation (hash)    KEYS[2] events stream    KEYS[3] namespace marker
-- ARGV[1]  user id    ARGV[2] a token for this unban    ARGV[3] the admin's key id
-- ARGV[4]  reason    ARGV[5] when (unix ms)
--
-- Returns {status, state}: "ok" and the player's new state ("u <token> <entry id>");
-- "pending" and the state when an unban is already under way; "not_banned" (false);
-- "unloaded" (false) when Redis lost the namespace and its rebuild has not finished.
if redis.call('EXISTS', KEYS[3]) == 0 then
    return {'unloaded', false}
end
local state = redis.call('HGET', KEYS[1], ARGV[1])
if not state or string.sub(state, 1, 1) == 'v' then
    return {'not_banned', false}
end
if string.sub(state, 1, 1) == 'u' then
    return {'pending', state}
end
local id = redis.call('XADD', KEYS[2], '*', 'k', 'unban', 'u', ARGV[1], 'a', ARGV[3],
                      'r', ARGV[4], 't', ARGV[5])
state = 'u ' .. ARGV[2] .. ' ' .. id
redis.call('HSET', KEYS[1], ARGV[1], state)
return {'ok', state}
