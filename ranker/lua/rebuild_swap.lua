-- rebuild_swap: finish a rebuild: merge each delta into its shadow board, rename the shadow
-- over the live board, clear the flag and set the namespace marker, all at once.
--
-- KEYS[1]   rebuild flag
-- KEYS[2]   namespace marker
-- KEYS[3]   players under moderation (hash): the banned ones are left out of every shadow
--           (a ban PostgreSQL did not hold yet when the rebuild read it)
-- KEYS[4]   display names: shadow    KEYS[5] their delta    KEYS[6] the live names
-- KEYS[7]   pages version (bumped: the boards and names are replaced)
-- KEYS[8 .. 7+3n] per board period, three keys: temp (shadow), delta, live
-- KEYS[8+3n ..]  deltas of the periods this rebuild does not load (it loads some boards
--                only): dropped, their live keys are right
-- ARGV[1]   generation id    ARGV[2] members per ZRANGE chunk of a delta
-- ARGV[3]   n, the number of board periods loaded
-- ARGV[4]   "1" when the names were loaded too (their delta is written over their shadow,
--           which replaces the live names), else "0" (the names are left alone)
-- ARGV[5..] per board period, two values: op (s: add, h: keep the higher, l: keep the lower,
--           n: keep the delta's, which is newer) and when the live key expires (unix ms; 0:
--           never)
--
-- Returns 1 on success; 0 when the flag no longer holds this generation (the rebuild outlived
-- its TTL or another one took over): nothing is changed then and the caller starts again.
-- include: bump_pages
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
local chunk = tonumber(ARGV[2])
local loaded = tonumber(ARGV[3])
local banned = {}
local states = redis.call('HGETALL', KEYS[3])
for j = 1, #states, 2 do
    local kind = string.sub(states[j + 1], 1, 1)
    if kind == 'b' or kind == 'u' then
        banned[#banned + 1] = states[j]
    end
end
for slot = 0, loaded - 1 do
    local i = 8 + 3 * slot
    local temp, delta, live = KEYS[i], KEYS[i + 1], KEYS[i + 2]
    local op, expires = ARGV[5 + 2 * slot], ARGV[6 + 2 * slot]
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
    for j = 1, #banned, chunk do
        redis.call('ZREM', temp, unpack(banned, j, math.min(j + chunk - 1, #banned)))
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
for i = 8 + 3 * loaded, #KEYS do
    redis.call('UNLINK', KEYS[i])
end
if ARGV[4] == '1' then
    local names = redis.call('HGETALL', KEYS[5])
    for j = 1, #names, 2 * chunk do
        redis.call('HSET', KEYS[4], unpack(names, j, math.min(j + 2 * chunk - 1, #names)))
    end
    redis.call('UNLINK', KEYS[6])
    if redis.call('EXISTS', KEYS[4]) == 1 then
        redis.call('RENAME', KEYS[4], KEYS[6])
    end
end
redis.call('UNLINK', KEYS[5])
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1])
-- The marker's new value alone makes every version new (the top scripts read it into theirs);
-- the bump says so without relying on it.
bump_pages(KEYS[7])
return 1
