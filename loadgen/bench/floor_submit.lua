-- floor_submit: the floor app's submission (loadgen/bench/floor.py): the Redis work of ranker's
-- submit.lua for the five-board set of loadgen/bench/boards.py, and nothing else (no moderation,
-- backlog, memory, definitions or rebuild checks, no standings of every board).
--
-- KEYS[1] idempotency key of the session      KEYS[2] events stream
-- KEYS[3] the global board (sum)              KEYS[4] the session's mode board (sum)
-- KEYS[5] daily best (keep the higher)        KEYS[6] weekly sum
-- KEYS[7] monthly best (keep the higher)    KEYS[8] pages version (ranker's top-page copies)
-- ARGV[1] user id    ARGV[2] score    ARGV[3] session id    ARGV[4] event id (uuid)
-- ARGV[5] game mode  ARGV[6] idempotency ttl (ms)  ARGV[7] accepted at (unix ms)
-- ARGV[8] the placements, as ranker's stream entry lists them   ARGV[9] request id
-- ARGV[10] the idempotency key's value (28 characters, as ranker's)
--
-- Returns {"seen", the key's value} when the idempotency key existed (nothing was counted),
-- else {"ok", the player's 0-based rank on the global board (highest first), its score}.
if not redis.call('SET', KEYS[1], ARGV[10], 'NX', 'PX', ARGV[6]) then
    return {'seen', redis.call('GET', KEYS[1])}
end
local user, score = ARGV[1], ARGV[2]
redis.call('ZINCRBY', KEYS[3], score, user)
redis.call('ZINCRBY', KEYS[4], score, user)
redis.call('ZADD', KEYS[5], 'GT', score, user)
redis.call('ZINCRBY', KEYS[6], score, user)
redis.call('ZADD', KEYS[7], 'GT', score, user)
redis.call('INCR', KEYS[8])
-- The fields ranker's entry has when neither traces nor a display name are on (`w`, `n`).
redis.call('XADD', KEYS[2], '*', 'e', ARGV[4], 's', ARGV[3], 'u', user, 'p', score,
           'm', ARGV[5], 't', ARGV[7], 'b', ARGV[8], 'q', ARGV[9])
return {'ok', redis.call('ZREVRANK', KEYS[3], user), redis.call('ZSCORE', KEYS[3], user)}
