-- board_lookup: the scores and ranks of a few players (a friends list) in one period of a board.
--
-- KEYS[1]  namespace marker    KEYS[2] board (a period's sorted set)    KEYS[3] names (hash)
-- ARGV[1]  order: desc (highest first) or asc (lowest first)
-- ARGV[2..] user ids (the caller removes duplicates)
--
-- Returns {ready, members, entries, names}: members is the board's ZCARD; entries the flat user
-- id, score, rank list of the players on the board, in request order, names their display
-- names (false: none) (the caller sorts them into
-- board order); absent players are left out. Rank is 1 + the number of players with a strictly
-- better score (ties share a rank). ready is 0 (members 0, entries empty) when the namespace is
-- not loaded. One ZMSCORE and one O(log n) ZCOUNT per player found.
-- include: names_of
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {0, 0, {}, {}}
end
local asc = ARGV[1] == 'asc'
if not (asc or ARGV[1] == 'desc') then
    return redis.error_reply('ERR board_lookup: order must be desc or asc')
end
local members = redis.call('ZCARD', KEYS[2])
local entries = {}
if #ARGV < 2 then
    -- ZMSCORE refuses an empty list of members.
    return {1, members, entries, {}}
end
local scores = redis.call('ZMSCORE', KEYS[2], unpack(ARGV, 2))
for i, score in ipairs(scores) do
    if score then
        local better
        if asc then
            better = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. score)
        else
            better = redis.call('ZCOUNT', KEYS[2], '(' .. score, '+inf')
        end
        entries[#entries + 1] = ARGV[i + 1]
        entries[#entries + 1] = score
        entries[#entries + 1] = better + 1
    end
end
return {1, members, entries, names_of(entries, 3)}
