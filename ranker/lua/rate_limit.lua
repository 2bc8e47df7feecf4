-- rate_limit: charge one request to a caller's budgets of one kind, all of them or none: the
-- check of the routes whose own script does not make it (submit.lua charges its own).
--
-- KEYS[1] .. KEYS[m]  the caller's m budget keys (a hash each, keys.rate_limit)
-- ARGV[1]  the budgets, "<amount> <window ms>" each, in the order of their keys
--          (lua/lib/budget.lua)
-- ARGV[2]  tests only: the time to charge at (unix ms); absent, Redis TIME
--
-- Returns {} when every budget counted the request, else {budget, seconds}: the first budget
-- (1-based) with no room and the seconds until its window ends; then none counted it.

-- include: budget

local now = tonumber(ARGV[2]) or redis_now_ms()
return spend_budgets(1, budgets_of(ARGV[1]), now) or {}
