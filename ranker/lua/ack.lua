-- ack: acknowledge stream entries the worker has committed to PostgreSQL, and delete them
-- unless a rebuild runs (the rebuild must still see every entry that its snapshot may lack).
--
-- KEYS[1]  events stream
-- KEYS[2]  rebuild flag
-- ARGV[1]  consumer group    ARGV[2..] entry ids
--
-- Returns the number of entries acknowledged.
local ids = {}
for i = 2, #ARGV do
    ids[#ids + 1] = ARGV[i]
end
if #ids == 0 then
    return 0
end
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('XDEL', KEYS[1], unpack(ids))
end
return acked
