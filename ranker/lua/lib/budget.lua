-- Rate limits: one request charged to a caller's budgets, all of them or none (docs/design.md,
-- "Rate limits"). Each budget is a sliding window counter, as the `limits` library's: time is
-- cut into windows of the budget's length, numbered floor(now / window) from the epoch, and a
-- request is let through when
--     previous * (window - elapsed) / window + current + 1 <= amount
-- (current: the requests counted in this window, previous: in the one before, elapsed: how
-- far this window has run). A budget's key is a hash: `w` the window it last counted in, `c`
-- that window's count, `p` the one before's; it expires when the window after `w` ends, when
-- neither count matters any more. A refused request is not counted.

-- The budgets of a spec, "<amount> <window ms> ..." (one pair per budget, in the order of
-- their keys; "": none), as a list of {amount, window ms}.
local function budgets_of(spec)
    local found = {}
    for amount, window in string.gmatch(spec, '(%d+) (%d+)') do
        found[#found + 1] = {tonumber(amount), tonumber(window)}
    end
    return found
end

-- Redis's clock in unix ms: every API process charges the same budgets by the same time.
local function redis_now_ms()
    local now = redis.call('TIME')
    return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end

-- Charge one request at `now` (unix ms) to `budgets`, whose keys are KEYS[first ..] in the same
-- order. Returns false when every budget counted it, else {i, s}: the first budget (1-based)
-- that had no room and the seconds until its window ends (at least 1); then none counted it.
local function spend_budgets(first, budgets, now)
    local counted = {}
    -- Every budget is read before any is written: a request one budget refuses costs the
    -- others nothing.
    for i, budget in ipairs(budgets) do
        local amount, window = budget[1], budget[2]
        local key = KEYS[first + i - 1]
        local index = math.floor(now / window)
        local held = redis.call('HMGET', key, 'w', 'c', 'p')
        local at, current, previous = tonumber(held[1]), tonumber(held[2]) or 0, tonumber(held[3]) or 0
        if at ~= index then
            -- The key last counted in an older window: its count is the previous window's
            -- when that was the one just before, else nothing counts.
            previous = (at == index - 1) and current or 0
            current = 0
        end
        local elapsed = now - index * window
        -- Multiplied through by window: exact in doubles while amount * window < 2^53.
        if previous * (window - elapsed) + (current + 1) * window > amount * window then
            return {i, math.max(1, math.ceil((window - elapsed) / 1000))}
        end
        counted[i] = {key, index, current + 1, previous, window}
    end
    for _, charge in ipairs(counted) do
        local key, index, window = charge[1], charge[2], charge[5]
        -- pcall: a Redis at its maxmemory refuses the write (OOM) and the script goes on
        -- uncharged, so that a retry of an accepted session is still answered (submit.lua).
        local written = redis.pcall('HSET', key, 'w', string.format('%d', index),
                                    'c', charge[3], 'p', charge[4])
        if type(written) == 'table' and written.err then
            if string.sub(written.err, 1, 3) ~= 'OOM' then
                error(written)
            end
        else
            redis.call('PEXPIREAT', key, string.format('%d', (index + 2) * window))
        end
    end
    return false
end
