"""Lua scripts that update one customer's keys (one hash slot) atomically."""

# KEYS: features, version, seen-marker, consent, segments.
# ARGV: dedupe ttl, type, occurred_at (epoch), purchase amount or "", then profile attr/JSON pairs.
APPLY_EVENT = """
if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[1]) then return {0} end
local f, t = KEYS[1], tonumber(ARGV[3])
redis.call('HINCRBY', f, 'events', 1)
redis.call('HINCRBY', f, 'e:' .. ARGV[2], 1)
local first = redis.call('HGET', f, 'first')
if (not first) or tonumber(first) > t then redis.call('HSET', f, 'first', ARGV[3]) end
local last = redis.call('HGET', f, 'last')
if (not last) or tonumber(last) < t then redis.call('HSET', f, 'last', ARGV[3]) end
if ARGV[4] ~= '' then
  redis.call('HINCRBYFLOAT', f, 'spend', ARGV[4])
  redis.call('HINCRBY', f, 'purchases', 1)
  local lp = redis.call('HGET', f, 'lastp')
  if (not lp) or tonumber(lp) < t then redis.call('HSET', f, 'lastp', ARGV[3]) end
end
for i = 5, #ARGV, 2 do redis.call('HSET', f, 'p:' .. ARGV[i], ARGV[i + 1]) end
local v = redis.call('INCR', KEYS[2])
return {1, v, redis.call('HGETALL', f), redis.call('HGETALL', KEYS[4]), redis.call('SMEMBERS', KEYS[5])}
"""

# KEYS: features, version, consent, segments.  Returns {version, features, consent, segments}.
READ_CUSTOMER = """
local v = tonumber(redis.call('GET', KEYS[2]) or '0')
return {v, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[3]), redis.call('SMEMBERS', KEYS[4])}
"""

# KEYS: consent, version, features, segments.  ARGV: pairs purpose, "status|expires|recorded|seq|lapsed".
# A purpose's state is replaced only by one that supersedes it, exactly as
# domain.consent.PurposeConsent.supersedes: by sequence when both have one (strictly newer), a
# sequenced state over an unsequenced one, else by recorded_at with the denial winning a tie.
# So snapshots, changes and their redeliveries commute.
APPLY_CONSENT = """
local function parse(v)
  local status, rec, seq = string.match(v, '^([^|]*)|[^|]*|([^|]*)|?([^|]*)')
  return status, tonumber(rec), tonumber(seq)
end
local function supersedes(new, old)
  if not old then return true end
  local ns, nr, nq = parse(new)
  local ostatus, orec, oq = parse(old)
  if nq and oq then return nq > oq end
  if nq or oq then return nq ~= nil end
  if nr ~= orec then return nr > orec end
  return ns == 'denied' and ostatus ~= 'denied'
end
local changed = 0
for i = 1, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if old ~= ARGV[i + 1] and supersedes(ARGV[i + 1], old) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    changed = 1
  end
end
local v
if changed == 1 then v = redis.call('INCR', KEYS[2]) else v = tonumber(redis.call('GET', KEYS[2]) or '0') end
local features = redis.call('HGETALL', KEYS[3])
return {changed, v, features, redis.call('HGETALL', KEYS[1]), redis.call('SMEMBERS', KEYS[4])}
"""

# KEYS: version, segments, consent, outbox.  ARGV: expected version, now, then ops "j"|"l",
# segment, message, n, n required purposes.  Refuses (-1) when the customer changed since it
# was read; a join whose consent is not effective now is not applied (fail closed). An applied
# op's message joins the outbox in the same step, so a crash before the publish loses nothing.
# Returns {applied segments, the whole outbox (older leftovers first)}.
COMMIT = """
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return -1 end
local now, applied, i = tonumber(ARGV[2]), {}, 3
while i <= #ARGV do
  local action, sid, message, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local done = false
  if action == 'j' then
    local ok = true
    for k = 1, n do
      local s = redis.call('HGET', KEYS[3], ARGV[i + 3 + k])
      local status, exp = string.match(s or '', '^([^|]*)|([^|]*)|')
      if status ~= 'granted' or (exp ~= '' and tonumber(exp) <= now) then ok = false end
    end
    done = ok and redis.call('SADD', KEYS[2], sid) == 1
  else
    done = redis.call('SREM', KEYS[2], sid) == 1
  end
  if done then
    table.insert(applied, sid)
    if message ~= '' then redis.call('RPUSH', KEYS[4], message) end
  end
  i = i + 4 + n
end
return {applied, redis.call('LRANGE', KEYS[4], 0, -1)}
"""

# KEYS: features, consent, segments, version, outbox.  ARGV: pairs segment, its `left` message.
# Deletes the customer's data and appends the `left` of every segment they were in to the outbox in
# one step, so a crash cannot lose those messages. Refuses (-1) unless ARGV names exactly the
# segments the customer is in now. Returns the whole outbox (older leftovers first).
ERASE = """
if redis.call('SCARD', KEYS[3]) * 2 ~= #ARGV then return -1 end
for i = 1, #ARGV, 2 do
  if redis.call('SISMEMBER', KEYS[3], ARGV[i]) == 0 then return -1 end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('INCR', KEYS[4])
for i = 2, #ARGV, 2 do redis.call('RPUSH', KEYS[5], ARGV[i]) end
return redis.call('LRANGE', KEYS[5], 0, -1)
"""
