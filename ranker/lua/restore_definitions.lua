-- restore_definitions: give Redis back the board definitions PostgreSQL holds, when it lost its
-- own (a wipe, a new server): until then submissions are refused, since they would miss the
-- boards that are not known yet.
--
-- KEYS[1]  definitions hash    KEYS[2] definitions version    KEYS[3] pages version
-- ARGV[1]  a new version token
-- ARGV[2..] pairs of board id and record (catalog.Record text)
--
-- Returns 1 when they were restored; 0 when Redis has its own (a version exists): those are
-- newer, PostgreSQL gets every change through the events stream, after Redis.
-- include: bump_pages
if redis.call('EXISTS', KEYS[2]) == 1 then
    return 0
end
redis.call('DEL', KEYS[1])
for i = 2, #ARGV, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('SET', KEYS[2], ARGV[1])
-- As define.lua does for every change (the boards the pages resolve through are new).
bump_pages(KEYS[3])
return 1
