-- submit: count one game session on every board it belongs to, exactly once, atomically.
--
-- KEYS[1]            idempotency key of the session (named by a digest of its id); its value,
--                    ARGV[9], is opaque here: ranker.ranking reads it (IdempotencyRecord)
-- KEYS[2]            the session's key as named before the digest (read only: an upgrade)
-- KEYS[3]            events stream (persisted by the write-behind worker)
-- KEYS[4]            rebuild flag (value: generation id while a rebuild runs)
-- KEYS[5]            namespace marker (missing: Redis was wiped and the boards are not loaded)
-- KEYS[6]            definitions version
-- KEYS[7]            players under moderation (hash: user id -> state, keys.moderation)
-- KEYS[8]            display names (hash: user id -> name)    KEYS[9] their rebuild delta
-- KEYS[10]           pages version (keys.pages_version: bumped by an accepted session)
-- KEYS[11 .. 10+n]   the n boards of the session (one period of each); the first is `global`
-- KEYS[11+n .. 10+2n] the n delta keys of those boards, in the same order
-- KEYS[11+2n .. 10+2n+m] the m budget keys of the caller's write rate limit (keys.rate_limit)
-- ARGV[1] user id    ARGV[2] score    ARGV[3] session id    ARGV[4] event id (uuid)
-- ARGV[5] game mode  ARGV[6] idempotency ttl (ms)  ARGV[7] accepted at (unix ms, API clock)
-- ARGV[8] backlog limit (stream entries)
-- ARGV[9] the idempotency key's value for this acceptance
-- ARGV[10] "1" when Redis memory is above ranker's watermark: nothing new may be stored
-- ARGV[11] the definitions version the caller placed the session with ("": none)
-- ARGV[12] the placements, as the stream entry lists them (ranker.placements)
-- ARGV[13] the display name the session sets ("": none)
-- ARGV[14] the id of the request that submits it ("": none), kept in the stream entry (`q`)
--          so that the worker's log line for the batch that persists it names it
-- ARGV[15] the W3C traceparent of the request's span ("": traces off), kept in the stream
--          entry (`w`) so that the span of the batch that persists it links to it
-- ARGV[16] the caller's budgets, "<amount> <window ms>" each in the order of their keys ("":
--          none; lua/lib/budget.lua)
-- ARGV[17] "1" when the caller then waits for replicas (RANKER_REDIS_MIN_REPLICAS_ACK): a
--          retry rewrites its key as it is, so that the WAIT after it covers the first
--          acceptance too (WAIT counts the writes of its own connection)
-- ARGV[18 ..] per board, three values: op (s: add, h: keep the higher, l: keep the lower,
--          n: keep the newest), order (desc or asc: which scores rank first), and when the
--          key expires (unix ms; 0: never)
--
-- Returns {status, ready, event id or record, score 1, rank 1, score 2, rank 2, ...}:
--   status "limited"  over a budget of the caller: nothing was counted or stored; then the
--                     budget (1-based) and the seconds until its window ends, for the 429
--   status "ok"       accepted; each board's score and rank after it; the event id
--   status "seen"     an idempotency key exists: nothing was counted; the current scores and
--                     ranks and the key's value (the caller tells a retry from a reuse)
--   status "full"     the backlog limit was reached; nothing was counted
--   status "memory"   Redis memory is above the watermark; nothing was counted
--   status "stale"    the definitions changed since the caller read them: nothing was counted
--                     (it reads them again and places the session again)
--   status "unloaded" Redis holds neither the boards nor the definitions (it was wiped and
--                     no rebuild has begun): nothing was counted
--   status "banned"   the player is banned: nothing was counted or stored
--   status "held"     the player's boards are being recomputed (an unban or a void): nothing
--                     was counted (the caller retries shortly)
--   a score and rank are false when the player is not on that board (only for "seen");
--   ready is 1 when the marker exists (the boards are loaded), else 0.
-- include: budget
-- include: bump_pages

local budgets = budgets_of(ARGV[16])
local n = (#KEYS - 10 - #budgets) / 2
local user = ARGV[1]
local ready = redis.call('EXISTS', KEYS[5])

local function standings(status, reply)
    local out = {status, ready, reply}
    for i = 1, n do
        local board = KEYS[10 + i]
        local score = redis.call('ZSCORE', board, user)
        local rank = false
        if score then
            if ARGV[17 + 3 * i - 1] == 'asc' then
                rank = redis.call('ZCOUNT', board, '-inf', '(' .. score) + 1
            else
                rank = redis.call('ZCOUNT', board, '(' .. score, '+inf') + 1
            end
        end
        table.insert(out, score)
        table.insert(out, rank)
    end
    return out
end

-- First the caller's budgets, charged here in the submission's one round trip (the API does not
-- charge them beforehand): a retry or a banned player's submission is charged too, as any
-- other, unless a budget refuses it.
local limited = spend_budgets(11 + 2 * n, budgets, redis_now_ms())
if limited then
    return {'limited', ready, limited[1], limited[2]}
end
-- Then: a banned player's submissions are refused whole, retries included.
local moderated = redis.call('HGET', KEYS[7], user)
if moderated then
    if string.sub(moderated, 1, 1) == 'b' then
        return {'banned', ready, false}
    end
    return {'held', ready, false}
end
-- A retry of an accepted session is answered even when the backlog or memory is full. Reads
-- only up to here (the budgets' write aside, which a Redis at its maxmemory refuses without
-- stopping the script), so a Redis at its maxmemory still answers retries.
local first_key = KEYS[1]
local first = redis.call('GET', first_key)
if not first then
    first_key = KEYS[2]
    first = redis.call('GET', first_key)
end
if first then
    if ARGV[17] == '1' then
        redis.call('SET', first_key, first, 'KEEPTTL')
    end
    return standings('seen', first)
end
if ARGV[10] == '1' then
    return {'memory', ready, false}
end
if redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[8]) then
    return {'full', ready, false}
end
local version = redis.call('GET', KEYS[6])
if not version and ready == 0 then
    return {'unloaded', ready, false}
end
if (version or '') ~= ARGV[11] then
    return {'stale', ready, false}
end

-- The first write: when Redis itself is at its maxmemory it refuses this one (OOM) and the
-- script stops before anything is stored.
redis.call('SET', KEYS[1], ARGV[9], 'PX', ARGV[6])
local generation = redis.call('GET', KEYS[4])

local function apply(key, op, score)
    if op == 's' then
        redis.call('ZINCRBY', key, score, user)
    elseif op == 'h' then
        redis.call('ZADD', key, 'GT', score, user)
    elseif op == 'l' then
        redis.call('ZADD', key, 'LT', score, user)
    else
        redis.call('ZADD', key, score, user)
    end
end

for i = 1, n do
    local op = ARGV[17 + 3 * i - 2]
    apply(KEYS[10 + i], op, ARGV[2])
    local expires = ARGV[17 + 3 * i]
    if expires ~= '0' then
        redis.call('PEXPIREAT', KEYS[10 + i], expires)
    end
    if generation then
        -- A rebuild is loading a snapshot: it merges these into its shadow boards at the swap.
        -- A delta of a period the rebuild does not load (a board made meanwhile) is never
        -- merged: it expires a day later, far beyond any rebuild's life.
        apply(KEYS[10 + n + i], op, ARGV[2])
        redis.call('PEXPIRE', KEYS[10 + n + i], 86400000)
    end
end
local fields = {'e', ARGV[4], 's', ARGV[3], 'u', user, 'p', ARGV[2], 'm', ARGV[5], 't', ARGV[7],
                'b', ARGV[12]}
if ARGV[13] ~= '' then
    redis.call('HSET', KEYS[8], user, ARGV[13])
    if generation then
        redis.call('HSET', KEYS[9], user, ARGV[13])
        redis.call('PEXPIRE', KEYS[9], 86400000)
    end
    table.insert(fields, 'n')
    table.insert(fields, ARGV[13])
end
if ARGV[14] ~= '' then
    table.insert(fields, 'q')
    table.insert(fields, ARGV[14])
end
if ARGV[15] ~= '' then
    table.insert(fields, 'w')
    table.insert(fields, ARGV[15])
end
if generation then
    -- The tag tells the rebuild this entry is also in its delta keys.
    table.insert(fields, 'g')
    table.insert(fields, generation)
end
redis.call('XADD', KEYS[3], '*', unpack(fields))
-- In the same call as the scores and the name it covers: no cached top page outlives them.
-- (Only here: a refusal or a retry changed no board, and keeps every cached page.)
bump_pages(KEYS[10])
return standings('ok', ARGV[4])
