-- The display names of the listed members (false: none), in one HMGET of the names hash,
-- KEYS[3] in every script that includes this. flat lists a member every `stride` values.
local function names_of(flat, stride)
    if #flat == 0 then
        return {}
    end
    local ids = {}
    for i = 1, #flat, stride do
        ids[#ids + 1] = flat[i]
    end
    return redis.call('HMGET', KEYS[3], unpack(ids))
end
