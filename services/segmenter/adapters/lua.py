"""Lua scripts that update customers' keys atomically; on a cluster each call stays in one hash slot."""

# The erasure marker (redis_keys.KeyLayout.erased, in the customer's slot): a hash `at` (ms) and
# `seq` (the erasure's consent sequence, absent when unknown). Input is from before the erasure
# when its consent sequence is at or below `seq` (both known), else when it is dated at or before
# `at`. `mark` only moves forward, and the marker expires `ttl` ms after its erasure.
MARKER = """
local function parse(v)
  local status, rec, seq = string.match(v, '^([^|]*)|[^|]*|([^|]*)|?([^|]*)')
  return status, tonumber(rec), tonumber(seq)
end
local function marker(key)
  local m = redis.call('HMGET', key, 'at', 'seq')
  return tonumber(m[1] or ''), tonumber(m[2] or '')
end
local function before(mat, mseq, at_ms, seq)
  if not mat then return false end
  if seq and mseq then return seq <= mseq end
  return at_ms <= mat
end
local function mark(key, at, seq, ttl)
  local mat, mseq = marker(key)
  local a = math.max(tonumber(at), mat or 0)
  redis.call('HSET', key, 'at', string.format('%d', a))
  local s = tonumber(seq)
  if s or mseq then redis.call('HSET', key, 'seq', string.format('%d', math.max(s or 0, mseq or 0))) end
  redis.call('PEXPIREAT', key, a + tonumber(ttl))
end
"""


# A customer's hash made ready for a rebuild's replay: the features and the applied offsets go,
# so the replay counts every event again; consent, segments and the version stay (consent is
# loaded again and only moves forward; segments are what the reconciler compares the rebuilt
# decision with). Returns how many fields went.
FORGET = """
local function forget(key)
  local gone = 0
  for _, field in ipairs(redis.call('HKEYS', key)) do
    local head = string.sub(field, 1, 3)
    if head ~= '_c:' and head ~= '_s:' and field ~= '_v' then
      redis.call('HDEL', key, field)
      gone = gone + 1
    end
  end
  return gone
end
"""


# KEYS: per customer, three keys: their hash (redis_keys: features, `_v` version, `_c:<purpose>`
# consent, `_s:<segment>` segments, `_o:`/`_t:`/`_r` offsets), outbox, erasure marker; one
# customer or many (a batch's customers on a standalone Redis, those of one hash slot on a
# cluster: each customer's three keys share a slot, so a call of one slot's customers is too).
# ARGV[1]: per customer, their events of one batch, as one JSON array (one argument, not ten
# per event: packing arguments was the Redis client's largest cost; one call for many customers,
# not one each: the call's packing, writes and dispatch were the next), in offset order per
# partition, each an array of strings: offset field, offset, event_id, type, occurred_at
# (epoch), purchase amount or "", record timestamp (ms, "0" unknown), then profile attr/JSON
# pairs. Each customer's events are applied as follows. An event is
# applied once: its offset must be above the highest applied offset of its partition (the
# `_o:<partition>` field; a partition arrives in offset order) unless its record timestamp is
# later than every one applied from that partition (`_t:<partition>`): then the topic was created
# again (a broker that forgot it, offsets restarting at 0) and the record is new, and the offset
# starts over from it. Its event_id must not be among the customer's last RECENT (4) applied ones
# (`_r`: 12 hex digits of the SHA-1 of each, newest first; a producer's retry lands shortly after
# the original). Bookkeeping fields start with `_`. An event from before the customer's erasure
# (occurred, or written to its topic, at or before the marker's `at`) writes nothing. The version
# moves once for each customer with an event applied. Returns, per customer, {per event 1
# applied | 0 duplicate | -1 erased, the hash, outbox length}: the state after all of their
# events (a duplicate returns it too, so a retry can re-plan from it). ARGV[2], in a rebuild's
# replay only: the replay's number (KeyLayout.replays). A customer whose `_b` field is not that
# number starts over at their first event not refused (FORGET, then `_b` set), so the replay
# counts every event of every customer it meets, also of one the rebuild did not know: after a
# Redis loss a batch's features reached the new Redis, the known index's write did not, and the
# replay refused the customer's earlier events as redeliveries.
RECENT = 4
APPLY_EVENTS = (
    MARKER
    + FORGET
    + """
local function apply(f, outbox, marker_key, events, replay)
  local mat = marker(marker_key)
  local outcomes, any_applied, started = {}, false, replay == ''
  for _, e in ipairs(events) do
    local ofield, offset, eid, etype, at, amount, tstext = e[1], e[2], e[3], e[4], e[5], e[6], e[7]
    local ts, t = tonumber(tstext), tonumber(at)
    local outcome = 0
    if before(mat, nil, t * 1000, nil) or (ts > 0 and before(mat, nil, ts, nil)) then
      outcome = -1
    else
      if not started then
        started = true
        if redis.call('HGET', f, '_b') ~= replay then
          forget(f)
          redis.call('HSET', f, '_b', replay)
        end
      end
      local tf = '_t' .. string.sub(ofield, 3)
      local seen = redis.call('HMGET', f, ofield, '_r', tf)
      local recreated = ts > 0 and seen[3] and ts > tonumber(seen[3])
      local newer = (not seen[1]) or tonumber(seen[1]) < tonumber(offset) or recreated
      local id = string.sub(redis.sha1hex(eid), 1, 12)
      local recent = seen[2] or ''
      local repeated = false
      for k = 1, #recent, 12 do
        if string.sub(recent, k, k + 11) == id then repeated = true end
      end
      if newer and not repeated then
        redis.call('HINCRBY', f, 'events', 1)
        redis.call('HINCRBY', f, 'e:' .. etype, 1)
        local first = redis.call('HGET', f, 'first')
        if (not first) or tonumber(first) > t then redis.call('HSET', f, 'first', at) end
        local last = redis.call('HGET', f, 'last')
        if (not last) or tonumber(last) < t then redis.call('HSET', f, 'last', at) end
        if amount ~= '' then
          redis.call('HINCRBYFLOAT', f, 'spend', amount)
          redis.call('HINCRBY', f, 'purchases', 1)
          local lp = redis.call('HGET', f, 'lastp')
          if (not lp) or tonumber(lp) < t then redis.call('HSET', f, 'lastp', at) end
        end
        for k = 8, #e, 2 do redis.call('HSET', f, 'p:' .. e[k], e[k + 1]) end
        redis.call('HSET', f, ofield, offset, '_r', string.sub(id .. recent, 1, 12 * """
    + str(RECENT)
    + """))
        outcome, any_applied = 1, true
      elseif newer then
        redis.call('HSET', f, ofield, offset)
      end
      if newer and ((not seen[3]) or ts > tonumber(seen[3])) then redis.call('HSET', f, tf, tstext) end
    end
    table.insert(outcomes, outcome)
  end
  if any_applied then redis.call('HINCRBY', f, '_v', 1) end
  if replay ~= '' then
    -- A replay keeps nothing of the reply but the last activity (for the known index).
    local last = redis.call('HGET', f, 'last')
    return {outcomes, last and {'last', last} or {}, 0}
  end
  return {outcomes, redis.call('HGETALL', f), redis.call('LLEN', outbox)}
end
local out, replay = {}, ARGV[2] or ''
for c, events in ipairs(cjson.decode(ARGV[1])) do
  out[c] = apply(KEYS[3 * c - 2], KEYS[3 * c - 1], KEYS[3 * c], events, replay)
end
return out
"""
)

# KEYS: the customer's hash, outbox.  Returns {the hash, outbox length}.
READ_CUSTOMER = """
return {redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2])}
"""

# KEYS: the customer's hash, outbox (its length is returned: a leftover is repaired), erasure
# marker.  ARGV: pairs purpose, "status|expires|recorded|seq|lapsed", kept as `_c:<purpose>`.
# A purpose's state is replaced only by one that supersedes it, exactly as
# domain.consent.PurposeConsent.supersedes: by sequence when both have one (strictly newer), a
# sequenced state over an unsequenced one, else by recorded_at with the denial winning a tie.
# So snapshots, changes and their redeliveries commute. A state from before the customer's
# erasure is refused. Returns {changed 1|0, refused states, the hash, outbox length}.
APPLY_CONSENT = (
    MARKER
    + """
local function supersedes(new, old)
  if not old then return true end
  local ns, nr, nq = parse(new)
  local ostatus, orec, oq = parse(old)
  if nq and oq then return nq > oq end
  if nq or oq then return nq ~= nil end
  if nr ~= orec then return nr > orec end
  return ns == 'denied' and ostatus ~= 'denied'
end
local mat, mseq = marker(KEYS[3])
local changed, refused = 0, 0
for i = 1, #ARGV, 2 do
  local _, rec, seq = parse(ARGV[i + 1])
  if before(mat, mseq, rec * 1000, seq) then
    refused = refused + 1
  else
    local field = '_c:' .. ARGV[i]
    local old = redis.call('HGET', KEYS[1], field)
    if old ~= ARGV[i + 1] and supersedes(ARGV[i + 1], old) then
      redis.call('HSET', KEYS[1], field, ARGV[i + 1])
      changed = 1
    end
  end
end
if changed == 1 then redis.call('HINCRBY', KEYS[1], '_v', 1) end
return {changed, refused, redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2])}
"""
)

# The segments a customer's hash holds (its `_s:<segment>` fields).
SEGMENTS = """
local function segments(key)
  local out = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if string.sub(field, 1, 3) == '_s:' then table.insert(out, string.sub(field, 4)) end
  end
  return out
end
"""

# KEYS: per customer, their hash and outbox (one customer or many: see APPLY_EVENTS).  ARGV[1]:
# now; ARGV[2]: a JSON array, per customer [their expected version, [op, ...]], each op an array
# of strings "j"|"l", segment, message, then the required purposes (one argument for all: an
# opt-out from 1,000 segments was some 5,000 arguments, whose packing was the largest part of its
# commit). A customer changed since they were read is refused (-1); a
# join whose consent is not effective now is not applied (fail closed). An applied op's message
# joins the outbox in the same step, so a crash before the publish loses nothing. With no ops it
# only reads. Returns per customer -1 or {applied segments, the whole outbox (older leftovers
# first), the customer's segments after the commit (the truth the segments' member sets follow)}.
COMMIT = (
    SEGMENTS
    + """
local function joinable(f, op, now)
  for k = 4, #op do
    local s = redis.call('HGET', f, '_c:' .. op[k])
    local status, exp = string.match(s or '', '^([^|]*)|([^|]*)|')
    if status ~= 'granted' or (exp ~= '' and tonumber(exp) <= now) then return false end
  end
  return true
end
local now, out = tonumber(ARGV[1]), {}
for c, customer in ipairs(cjson.decode(ARGV[2])) do
  local f, box = KEYS[2 * c - 1], KEYS[2 * c]
  if (redis.call('HGET', f, '_v') or '0') == customer[1] then
    local applied = {}
    for _, op in ipairs(customer[2]) do
      local action, sid, message = op[1], op[2], op[3]
      local done
      if action == 'j' then
        done = joinable(f, op, now) and redis.call('HSETNX', f, '_s:' .. sid, '1') == 1
      else
        done = redis.call('HDEL', f, '_s:' .. sid) == 1
      end
      if done then
        table.insert(applied, sid)
        if message ~= '' then redis.call('RPUSH', box, message) end
      end
    end
    out[c] = {applied, redis.call('LRANGE', box, 0, -1), segments(f)}
  else
    out[c] = -1
  end
end
return out
"""
)

# KEYS: outbox.  ARGV[1]: a JSON array of the messages to drop from it (acknowledged by the broker,
# or withheld), each once, the oldest first as LREM would; the others keep their order. One step
# for all: an LREM each made an opt-out from a thousand segments a thousand commands. Returns how
# many were dropped.
CLEAR_OUTBOX = """
local drop = {}
for _, m in ipairs(cjson.decode(ARGV[1])) do drop[m] = (drop[m] or 0) + 1 end
local box, kept = redis.call('LRANGE', KEYS[1], 0, -1), {}
for _, m in ipairs(box) do
  if (drop[m] or 0) > 0 then drop[m] = drop[m] - 1 else table.insert(kept, m) end
end
if #kept == #box then return 0 end
redis.call('DEL', KEYS[1])
for i = 1, #kept, 1000 do redis.call('RPUSH', KEYS[1], unpack(kept, i, math.min(i + 999, #kept))) end
return #box - #kept
"""

# KEYS: the customer's hash, outbox, erasure marker.  ARGV: the erasure's time (ms), its consent
# sequence or "", the marker's ttl (ms), then pairs segment, its `left` message.
# Deletes the hash (features with their bookkeeping, consent, segments, version: every key naming
# the customer but the outbox), marks the erasure and appends the `left` of every segment they
# were in to the outbox in one step, so a crash cannot lose those messages; once they are
# published the outbox is empty and gone too. Refuses (-1) unless ARGV names exactly the
# segments the customer is in now. Returns the whole outbox (older leftovers first).
ERASE = (
    MARKER
    + SEGMENTS
    + """
if #segments(KEYS[1]) * 2 ~= #ARGV - 3 then return -1 end
for i = 4, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], '_s:' .. ARGV[i]) == 0 then return -1 end
end
redis.call('DEL', KEYS[1])
mark(KEYS[3], ARGV[1], ARGV[2], ARGV[3])
for i = 5, #ARGV, 2 do redis.call('RPUSH', KEYS[2], ARGV[i]) end
return redis.call('LRANGE', KEYS[2], 0, -1)
"""
)

# KEYS: the customer's hash, erasure marker.  ARGV: the erasure's time (ms), its consent sequence
# or "", the marker's ttl (ms). Marks an erasure read where nothing is announced (the consent load
# at start, a rebuild) and drops the consent states from before it; the stream's handler erases
# the rest when it reads the erasure. Returns how many states were dropped.
MARK_ERASED = (
    MARKER
    + """
mark(KEYS[2], ARGV[1], ARGV[2], ARGV[3])
local mat, mseq = marker(KEYS[2])
local all, dropped = redis.call('HGETALL', KEYS[1]), 0
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 3) == '_c:' then
    local _, rec, seq = parse(all[i + 1])
    if before(mat, mseq, rec * 1000, seq) then
      redis.call('HDEL', KEYS[1], all[i])
      dropped = dropped + 1
    end
  end
end
if dropped > 0 then redis.call('HINCRBY', KEYS[1], '_v', 1) end
return dropped
"""
)

# KEYS: the customer's hash.  ARGV: the `last` activity the retention job decided on.  Deletes the
# feature fields of a customer inactive past retention, unless an event was applied since (then
# `last` moved and the customer is active again). Every `_` field stays: the offsets (`_o`, `_t`,
# `_r`, so a redelivered old event is still a duplicate), consent, segments and the version.
# Returns 1 when purged, else 0.
PURGE_FEATURES = """
if redis.call('HGET', KEYS[1], 'last') ~= ARGV[1] then return 0 end
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 1) ~= '_' then redis.call('HDEL', KEYS[1], field) end
end
redis.call('HINCRBY', KEYS[1], '_v', 1)
return 1
"""

# KEYS: the customer's hash.  A rebuild's first step (rebuild.StateRebuilder.forget_features),
# for every customer it knows (FORGET, above APPLY_EVENTS). Returns how many fields went.
FORGET_FEATURES = FORGET + "return forget(KEYS[1])"

# A bucketed index (adapters/redis_buckets.py): a set of members with scores, split over sorted
# sets small enough to stay listpacks (zset-max-listpack-entries, 128 by default) by linear
# hashing. KEYS[1] is its head, a hash `level`, `split`, `count`; bucket b is KEYS[1]..':'..b,
# in the head's hash slot (it shares the head's hash tag). There are 2^level + split buckets; a
# member's bucket is its hash modulo 2^level, or modulo 2^(level + 1) when that is below `split`
# (already split). Once the average passes FILL members a bucket, bucket `split` is split into
# itself and split + 2^level, one bucket at a time, so no step moves more than one bucket's
# members and an unsplit bucket holds about 2 * FILL (far under 128). A member only ever moves to
# the newest bucket, so a reader going up the buckets and then on to those added meanwhile sees
# every member present throughout. Buckets are never merged (a key that empties goes; the head
# goes with the last member).
BUCKET_FILL = 32
BUCKETS = """
local function hash_of(member)
  return tonumber(string.sub(redis.sha1hex(member), 1, 8), 16)
end
local function head(key)
  local h = redis.call('HMGET', key, 'level', 'split', 'count')
  return tonumber(h[1] or '0'), tonumber(h[2] or '0'), tonumber(h[3] or '0')
end
local function bucket(key, member, level, split)
  local h = hash_of(member)
  local b = h % (2 ^ level)
  if b < split then b = h % (2 ^ (level + 1)) end
  return key .. ':' .. string.format('%d', b)
end
"""

# KEYS: indexes' heads, one or many (on a cluster, of one hash slot: each head's buckets share
# its slot).  ARGV[1]: per head, one JSON array of strings: "GT" (add, or raise the score of, each
# member) or "XX" (set the score of members already there), then pairs member, score; or "REM",
# then members to remove. One call for many heads, not one each: an opt-out from 1,000 segments
# was 1,000 calls, whose packing and dispatch were most of its cost. Returns per head how many
# members were added or removed.
INDEX_UPDATE = (
    BUCKETS
    + """
local function add(key, change)
  local level, split, count = head(key)
  local added = 0
  for i = 2, #change, 2 do
    local into = bucket(key, change[i], level, split)
    added = added + redis.call('ZADD', into, change[1], change[i + 1], change[i])
  end
  count = count + added
  while count > """
    + str(BUCKET_FILL)
    + """ * (2 ^ level + split) do
    local from = key .. ':' .. string.format('%d', split)
    local entries = redis.call('ZRANGE', from, 0, -1, 'WITHSCORES')
    redis.call('DEL', from)  -- both halves written afresh: listpacks again whatever `from` was
    for j = 1, #entries, 2 do
      redis.call('ZADD', bucket(key, entries[j], level + 1, 0), entries[j + 1], entries[j])
    end
    split = split + 1
    if split == 2 ^ level then level, split = level + 1, 0 end
  end
  if added > 0 then redis.call('HSET', key, 'level', level, 'split', split, 'count', count) end
  return added
end
local function remove(key, change)
  local level, split, count = head(key)
  local removed = 0
  for i = 2, #change do
    removed = removed + redis.call('ZREM', bucket(key, change[i], level, split), change[i])
  end
  if removed > 0 then
    if count > removed then redis.call('HSET', key, 'count', count - removed)
    else redis.call('DEL', key) end
  end
  return removed
end
local out = {}
for k, change in ipairs(cjson.decode(ARGV[1])) do
  if change[1] == 'REM' then out[k] = remove(KEYS[k], change) else out[k] = add(KEYS[k], change) end
end
return out
"""
)

# KEYS: an index's head.  ARGV: members.  Returns each one's score (nil when absent).
INDEX_SCORES = (
    BUCKETS
    + """
local level, split = head(KEYS[1])
local out = {}
for i = 1, #ARGV do out[i] = redis.call('ZSCORE', bucket(KEYS[1], ARGV[i], level, split), ARGV[i]) end
return out
"""
)
