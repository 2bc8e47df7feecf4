-- define: change one board definition: in the hash every API process reads, and in the events
-- stream, where the worker persists it in order with the sessions around it.
--
-- KEYS[1]  definitions hash    KEYS[2] definitions version    KEYS[3] events stream
-- KEYS[4]  namespace marker    KEYS[5] pages version (bumped by a change)
-- KEYS[6..] keys removed with the change (a purge: the board's periods in Redis)
-- ARGV[1]  board id
-- ARGV[2]  the record the caller based its change on ("": none), compared and set
-- ARGV[3]  the new record without its position: "<state> <definition json>"
-- ARGV[4]  the board's position to keep ("": this change's own, for a new board)
-- ARGV[5]  the new version token
-- ARGV[6]  who made the change (an API key's id, for the audit log; "": not an admin action)
--
-- A record is "<position> <state> <json>"; a board's position is the id of the stream entry
-- that created it: the sessions after it, and only those, count on it.
--
-- Returns {1, record} when changed, {0, current record or ""} when the record is no longer
-- the one the caller read (nothing is changed: it reads again and decides again), {-1, ""}
-- when Redis lost the definitions (wiped, and their rebuild has not begun: a change now would
-- hide the ones the rebuild restores from PostgreSQL).
-- include: bump_pages
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[4]) == 0 then
    return {-1, ''}
end
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then
    return {0, current}
end
local id = redis.call('XADD', KEYS[3], '*', 'k', 'board', 'i', ARGV[1], 'r', ARGV[3], 'p', ARGV[4],
                      'a', ARGV[6] or '')
local position = ARGV[4]
if position == '' then
    position = id
end
local record = position .. ' ' .. ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], record)
for i = 6, #KEYS do
    redis.call('UNLINK', KEYS[i])
end
redis.call('SET', KEYS[2], ARGV[5])
-- A purge removes pages; the other changes show on none (the API resolves a board's state and
-- periods before it reads), but they are rare and a bump costs a cache miss at most.
bump_pages(KEYS[5])
return {1, record}
