-- submit: count one game session on every board it belongs to, exactly once, atomically.
--
-- KEYS[1]            seen key of the session (idempotency); value "<event id> <what>", where
--                    <what> is ARGV[9]: what the session was accepted with (user, score, mode)
-- KEYS[2]            events stream (persisted by the write-behind worker)
-- KEYS[3]            rebuild flag (value: generation id while a rebuild runs)
-- KEYS[4]            namespace marker (missing: Redis was wiped and the boards are not loaded)
-- KEYS[5 .. 4+n]     the n live boards of the session; the first is the one whose rank is returned
-- KEYS[5+n .. 4+2n]  the n delta keys of those boards, in the same order
-- ARGV[1] user id    ARGV[2] score    ARGV[3] session id    ARGV[4] event id (uuid)
-- ARGV[5] game mode  ARGV[6] idempotency ttl (ms)  ARGV[7] created at (unix ms)
-- ARGV[8] backlog limit (stream entries)
-- ARGV[9] what the session says: "<user> <score> <mode>", compared with a retry's
--
-- Returns {status, total, rank, ready, event id}:
--   status "ok"   accepted; total and rank are the player's on the first board
--   status "dup"  the session was already accepted; nothing was counted; current total and rank
--   status "conflict" the session id was accepted with other data; nothing was counted
--   status "full" the backlog limit was reached; nothing was counted
--   total is false when the player is not on the board (only possible for "dup" after a wipe);
--   ready is 1 when the marker exists (the boards are loaded), else 0; the event id is the one
--   the session was accepted as (for "dup", the first acceptance's).
local n = (#KEYS - 4) / 2
local board = KEYS[5]
local user = ARGV[1]
local ready = redis.call('EXISTS', KEYS[4])

local function standing()
    local total = redis.call('ZSCORE', board, user)
    if not total then
        return false, false
    end
    return total, redis.call('ZCOUNT', board, '(' .. total, '+inf') + 1
end

-- A retry of an accepted session answers "dup" even when the backlog is full.
local first = redis.call('GET', KEYS[1])
if first then
    local space = string.find(first, ' ', 1, true)
    -- A value without <what> (written before ranker kept it) cannot tell: a retry, as it was.
    if space and string.sub(first, space + 1) ~= ARGV[9] then
        return {'conflict', false, false, ready, string.sub(first, 1, space - 1)}
    end
    local total, rank = standing()
    return {'dup', total, rank, ready, space and string.sub(first, 1, space - 1) or first}
end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[8]) then
    return {'full', false, false, ready, false}
end

redis.call('SET', KEYS[1], ARGV[4] .. ' ' .. ARGV[9], 'PX', ARGV[6])
local generation = redis.call('GET', KEYS[3])
for i = 1, n do
    redis.call('ZINCRBY', KEYS[4 + i], ARGV[2], user)
    if generation then
        -- A rebuild is loading a snapshot: it adds these to its shadow boards at the swap.
        redis.call('ZINCRBY', KEYS[4 + n + i], ARGV[2], user)
    end
end
local fields = {'e', ARGV[4], 's', ARGV[3], 'u', user, 'p', ARGV[2], 'm', ARGV[5], 't', ARGV[7]}
if generation then
    -- The tag tells the rebuild this entry is also in its delta keys.
    table.insert(fields, 'g')
    table.insert(fields, generation)
end
redis.call('XADD', KEYS[2], '*', unpack(fields))
local total, rank = standing()
return {'ok', total, rank, ready, ARGV[4]}
