-- rebuild_swap: finish a rebuild: merge each delta into its shadow board, rename the shadow
-- over the live board, clear the flag and set the namespace marker, all at once.
--
-- KEYS[1]   rebuild flag
-- KEYS[2]   namespace marker
-- KEYS[3 .. 2+3n] per board period, three keys: temp (shadow), delta, live
-- KEYS[3+3n ..]  deltas of the periods this rebuild does not load (it loads some boards
--                only): dropped, their live keys are right
-- ARGV[1]   generation id    ARGV[2] members per ZRANGE chunk of a delta
-- ARGV[3]   n, the number of board periods loaded
-- ARGV[4..] per board period, two values: op (s: add, h: keep the higher, l: keep the lower,
--           n: keep the delta's, which is newer) and when the live key expires (unix ms; 0:
--           never)
--
-- Returns 1 on success; 0 when the flag no longer holds this generation (the rebuild outlived
-- its TTL or another one took over): nothing is changed then and the caller starts again.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
local chunk = tonumber(ARGV[2])
local loaded = tonumber(ARGV[3])
for slot = 0, loaded - 1 do
    local i = 3 + 3 * slot
    local temp, delta, live = KEYS[i], KEYS[i + 1], KEYS[i + 2]
    local op, expires = ARGV[4 + 2 * slot], ARGV[5 + 2 * slot]
    -- Member by member: O(m log n) for a small delta, where ZUNIONSTORE would copy the whole
    -- board and block the server for as long.
    local start = 0
    while true do
        local page = redis.call('ZRANGE', delta, start, start + chunk - 1, 'WITHSCORES')
        for j = 1, #page, 2 do
            if op == 's' then
                redis.call('ZINCRBY', temp, page[j + 1], page[j])
            elseif op == 'h' then
                redis.call('ZADD', temp, 'GT', page[j + 1], page[j])
            elseif op == 'l' then
                redis.call('ZADD', temp, 'LT', page[j + 1], page[j])
            else
                redis.call('ZADD', temp, page[j + 1], page[j])
            end
        end
        if #page < 2 * chunk then
            break
        end
        start = start + chunk
    end
    -- UNLINK frees the old board in the background: RENAME over it, or DEL, would free a
    -- million members inside this call and stall every client meanwhile.
    redis.call('UNLINK', live)
    if redis.call('EXISTS', temp) == 1 then
        redis.call('RENAME', temp, live)
        if expires ~= '0' then
            redis.call('PEXPIREAT', live, expires)
        end
    end
    redis.call('UNLINK', delta)
end
for i = 3 + 3 * loaded, #KEYS do
    redis.call('UNLINK', KEYS[i])
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1])
return 1
