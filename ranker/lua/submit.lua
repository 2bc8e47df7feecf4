-- submit: count one game session on every board it belongs to, exactly once, atomically.
--
-- KEYS[1]            idempotency key of the session (named by a digest of its id); its value,
--                    ARGV[9], is opaque here: ranker.ranking reads it (IdempotencyRecord)
-- KEYS[2]            the session's key as named before the digest (read only: an upgrade)
-- KEYS[3]            events stream (persisted by the write-behind worker)
-- KEYS[4]            rebuild flag (value: generation id while a rebuild runs)
-- KEYS[5]            namespace marker (missing: Redis was wiped and the boards are not loaded)
-- KEYS[6 .. 5+n]     the n live boards of the session; the first is the one whose rank is returned
-- KEYS[6+n .. 5+2n]  the n delta keys of those boards, in the same order
-- ARGV[1] user id    ARGV[2] score    ARGV[3] session id    ARGV[4] event id (uuid)
-- ARGV[5] game mode  ARGV[6] idempotency ttl (ms)  ARGV[7] created at (unix ms)
-- ARGV[8] backlog limit (stream entries)
-- ARGV[9] the idempotency key's value for this acceptance
-- ARGV[10] "1" when Redis memory is above ranker's watermark: nothing new may be stored
--
-- Returns {status, total, rank, ready, event id or record}:
--   status "ok"     accepted; total and rank are the player's on the first board; the event id
--   status "seen"   an idempotency key exists: nothing was counted; current total and rank and
--                   the key's value (the caller tells a retry from a reuse of the id)
--   status "full"   the backlog limit was reached; nothing was counted
--   status "memory" Redis memory is above the watermark; nothing was counted
--   total is false when the player is not on the board (only possible for "seen" after a wipe);
--   ready is 1 when the marker exists (the boards are loaded), else 0.
local n = (#KEYS - 5) / 2
local board = KEYS[6]
local user = ARGV[1]
local ready = redis.call('EXISTS', KEYS[5])

local function standing()
    local total = redis.call('ZSCORE', board, user)
    if not total then
        return false, false
    end
    return total, redis.call('ZCOUNT', board, '(' .. total, '+inf') + 1
end

-- A retry of an accepted session is answered even when the backlog or memory is full. Reads
-- only up to here, so a Redis at its maxmemory still answers retries.
local first = redis.call('GET', KEYS[1]) or redis.call('GET', KEYS[2])
if first then
    local total, rank = standing()
    return {'seen', total, rank, ready, first}
end
if ARGV[10] == '1' then
    return {'memory', false, false, ready, false}
end
if redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[8]) then
    return {'full', false, false, ready, false}
end

-- The first write: when Redis itself is at its maxmemory it refuses this one (OOM) and the
-- script stops before anything is stored.
redis.call('SET', KEYS[1], ARGV[9], 'PX', ARGV[6])
local generation = redis.call('GET', KEYS[4])
for i = 1, n do
    redis.call('ZINCRBY', KEYS[5 + i], ARGV[2], user)
    if generation then
        -- A rebuild is loading a snapshot: it adds these to its shadow boards at the swap.
        redis.call('ZINCRBY', KEYS[5 + n + i], ARGV[2], user)
    end
end
local fields = {'e', ARGV[4], 's', ARGV[3], 'u', user, 'p', ARGV[2], 'm', ARGV[5], 't', ARGV[7]}
if generation then
    -- The tag tells the rebuild this entry is also in its delta keys.
    table.insert(fields, 'g')
    table.insert(fields, generation)
end
redis.call('XADD', KEYS[3], '*', unpack(fields))
local total, rank = standing()
return {'ok', total, rank, ready, ARGV[4]}
