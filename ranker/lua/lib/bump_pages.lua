-- A new pages version in `key` (keys.pages_version): Redis's clock in microseconds, or one more
-- than the last when that is not earlier. Not a counter: a Redis that lost its last writes
-- (a restart from an older file, a failover to a replica that had not received them) would
-- count again through numbers that API processes hold copies of pages at, pages that showed
-- the lost writes; a number from the clock is past every one of them.
local function bump_pages(key)
    local now = redis.call('TIME')
    local version = tonumber(now[1]) * 1000000 + tonumber(now[2])
    local last = tonumber(redis.call('GET', key) or '0') or 0
    if version <= last then
        version = last + 1
    end
    redis.call('SET', key, string.format('%d', version))
end
