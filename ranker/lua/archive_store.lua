-- archive_store: keep a past period reloaded from PostgreSQL, unless a moderation action
-- changed a player since the load began (the copy may hold their old scores).
--
-- KEYS[1]  the loading key    KEYS[2] the archive key    KEYS[3] moderation version
-- KEYS[4]  archive keys loaded (set: moderation drops them all)
-- KEYS[5]  pages version (bumped when kept: the copy may differ from one that expired, if
--          PostgreSQL had persisted more of the period since that one was loaded)
-- ARGV[1]  the moderation version read before the load ("": none yet)
-- ARGV[2]  seconds the archive lives after its last read
--
-- Returns 1 when kept; 0 when the version moved (the load is dropped: the caller loads again).
-- include: bump_pages
if (redis.call('GET', KEYS[3]) or '') ~= ARGV[1] then
    redis.call('UNLINK', KEYS[1])
    return 0
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[4], KEYS[2])
bump_pages(KEYS[5])
return 1
