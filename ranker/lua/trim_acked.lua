-- trim_acked: delete stream entries that were acknowledged while a rebuild ran (the worker
-- keeps them then), one page at a time. Never deletes an entry still pending or not yet read.
--
-- KEYS[1]  events stream
-- KEYS[2]  rebuild flag
-- ARGV[1]  consumer group    ARGV[2] first id of the page (inclusive)    ARGV[3] page size
--
-- Returns {deleted, next}: next is the id to start the next page from, or "" at the end.
-- Returns {-1, ""} when a rebuild runs (its entries must stay) or the group does not exist.
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[1]) == 0 then
    return {-1, ''}
end
local last_delivered
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local info = {}
    for j = 1, #group, 2 do
        info[group[j]] = group[j + 1]
    end
    if info['name'] == ARGV[1] then
        last_delivered = info['last-delivered-id']
    end
end
if not last_delivered then
    return {-1, ''}
end

local function before_or_at(a, b)
    local ams, aseq = string.match(a, '(%d+)-(%d+)')
    local bms, bseq = string.match(b, '(%d+)-(%d+)')
    ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
    return ams < bms or (ams == bms and aseq <= bseq)
end

local page = redis.call('XRANGE', KEYS[1], ARGV[2], '+', 'COUNT', tonumber(ARGV[3]) + 1)
local limit = math.min(#page, tonumber(ARGV[3]))
if limit == 0 then
    return {0, ''}
end
local pending = {}
local first, last = page[1][1], page[limit][1]
for _, entry in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], first, last, limit)) do
    pending[entry[1]] = true
end
local deleted = 0
for i = 1, limit do
    local id = page[i][1]
    if not pending[id] and before_or_at(id, last_delivered) then
        deleted = deleted + redis.call('XDEL', KEYS[1], id)
    end
end
local next_id = ''
if #page > limit then
    next_id = page[limit + 1][1]
end
return {deleted, next_id}
