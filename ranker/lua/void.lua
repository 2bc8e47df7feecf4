-- void: one session stops counting. The worker marks it voided and recomputes the player's
-- scores in PostgreSQL when it reaches this entry; until the boards are recomputed from there
-- (moderation_finish.lua) the player's submissions wait (submit answers "held"). A banned
-- player is on no board: nothing waits.
--
-- KEYS[1]  players under moderation (hash)    KEYS[2] events stream    KEYS[3] namespace marker
-- ARGV[1]  user id    ARGV[2] the session's event id    ARGV[3] its session id
-- ARGV[4]  a token for this void    ARGV[5] the admin's key id    ARGV[6] reason
-- ARGV[7]  when (unix ms)
--
-- Returns {status, entry id, state}: "ok", the void's stream entry and the state to complete
-- ("v|u <token> <entry id>"), or false when nothing waits (the player is banned); "unloaded"
-- (false, false) when Redis lost the namespace and its rebuild has not finished.
if redis.call('EXISTS', KEYS[3]) == 0 then
    return {'unloaded', false, false}
end
local state = redis.call('HGET', KEYS[1], ARGV[1])
local id = redis.call('XADD', KEYS[2], '*', 'k', 'void', 'u', ARGV[1], 'e', ARGV[2],
                      's', ARGV[3], 'a', ARGV[5], 'r', ARGV[6], 't', ARGV[7])
if state == 'b' then
    return {'ok', id, false}
end
-- A void or an unban under way is overtaken: this completion covers both (it waits for this
-- entry, which follows theirs), and keeps an unban's kind.
local kind = state and string.sub(state, 1, 1) or 'v'
state = kind .. ' ' .. ARGV[4] .. ' ' .. id
redis.call('HSET', KEYS[1], ARGV[1], state)
return {'ok', id, state}
