"""The Lua scripts that make every cluster write in Redis atomic and fenced.

Keys (all under `roomd:`; one Redis primary, not Redis Cluster):

    node:<owner>          a node's lease: its link address, with a TTL (PX lease_ms)
    nodes                 set of owners that may still hold rooms (reapers look here)
    owned:<owner>         set of "<kind>/<roomID>" the owner holds
    room:<kind>/<roomID>  hash: owner, epoch, state (pending|open|closing), creator, info, seq
    members:<kind>/<roomID>    hash userID -> msgpack [order, name, avatar, pushURL]
    audiences:<kind>/<roomID>  hash userID -> msgpack [order, info]
    custom:<kind>/<roomID>     hash name -> msgpack [order, value]
    listed:<kind>         sorted set: roomIDs with members, scored by creation sequence
    rooms:<kind>          sorted set: every roomID, scored by creation sequence (the admin listing)
    outbox:<r>:<lane>     stream of webhook events for receiver r, lane (one room's events: one lane)
    outbox_lease:<r>:<lane>  which node delivers that lane now (with a TTL)
    seq, epoch            counters: the global creation (and join) order, the fencing tokens
    token_secret, link_secret  the cluster's secrets, 64 hex characters made by the first node to ask;
                          read back, anything else stops a node's start (shared_tokens.shared_secret)
    revoked               stream of logouts: token id and expiry

An owner is a node's name plus a random part taken with each lease, so a
node that lost its lease and took a new one is a new owner: rooms of the
old one are taken over like a dead node's. Every write names the room's
epoch; a write whose owner or epoch no longer match, or whose owner's lease
is gone, changes nothing.
"""

from __future__ import annotations

PREFIX = "roomd:"

_COMMON = """
local P = 'roomd:'
local function room_key(name) return P .. 'room:' .. name end
local function parts(name)
  return P .. 'members:' .. name, P .. 'audiences:' .. name, P .. 'custom:' .. name
end
local function kind_of(name) return string.match(name, '^([^/]+)/') end
local function id_of(name) return string.match(name, '^[^/]+/(.+)$') end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

REGISTER = """
-- ARGV: owner, address, lease_ms
if redis.call('SET', 'roomd:node:' .. ARGV[1], ARGV[2], 'PX', ARGV[3], 'NX') then
  redis.call('SADD', 'roomd:nodes', ARGV[1])
  return 1
end
return 0
"""

RENEW = """
-- ARGV: owner, address, lease_ms
if redis.call('GET', 'roomd:node:' .. ARGV[1]) == ARGV[2] then
  redis.call('PEXPIRE', 'roomd:node:' .. ARGV[1], ARGV[3])
  return 1
end
return 0
"""

CLAIM = (
    _COMMON
    + """
-- ARGV: owner, "<kind>/<roomID>". A new room, pending until its RoomSaved is written.
-- {1, epoch}: claimed; {0, owner}: the room exists, held by owner; {2, owner}: it is closing
-- there (its IM group being destroyed by a live node, whose IM calls are not ordered with this
-- one's); {-1}: no lease.
local owner, name = ARGV[1], ARGV[2]
if redis.call('EXISTS', P .. 'node:' .. owner) == 0 then return {-1} end
local room = room_key(name)
local held = redis.call('HMGET', room, 'owner', 'state')
if held[1] then
  if held[2] ~= 'closing' then return {0, held[1]} end
  if held[1] ~= owner and redis.call('EXISTS', P .. 'node:' .. held[1]) == 1 then return {2, held[1]} end
  redis.call('SREM', P .. 'owned:' .. held[1], name)
end
local m, a, c = parts(name)
redis.call('DEL', room, m, a, c)
redis.call('ZREM', P .. 'listed:' .. kind_of(name), id_of(name))
local epoch = redis.call('INCR', P .. 'epoch')
local seq = redis.call('INCR', P .. 'seq')
redis.call('HSET', room, 'owner', owner, 'epoch', epoch, 'state', 'pending', 'seq', seq, 'creator', '', 'info', '',
           'made', now_ms())
redis.call('SADD', P .. 'owned:' .. owner, name)
redis.call('ZADD', P .. 'rooms:' .. kind_of(name), seq, id_of(name))
return {1, epoch}
"""
)

RELEASE = (
    _COMMON
    + """
-- ARGV: owner, "<kind>/<roomID>", epoch: a claim whose creation failed is given back.
local owner, name, epoch = ARGV[1], ARGV[2], ARGV[3]
local room = room_key(name)
local held = redis.call('HMGET', room, 'owner', 'epoch', 'state')
if held[1] ~= owner or held[2] ~= epoch or held[3] ~= 'pending' then return 0 end
local m, a, c = parts(name)
redis.call('DEL', room, m, a, c)
redis.call('SREM', P .. 'owned:' .. owner, name)
redis.call('ZREM', P .. 'rooms:' .. kind_of(name), id_of(name))
return 1
"""
)

WRITE = (
    _COMMON
    + """
-- ARGV: owner, msgpack [[name, epoch, [op, ...]], ...]; one status per submission:
-- 1 written; 2 written, and the room is gone for good; 0 fenced (not this owner's, or another
-- epoch's); -1 this owner has no lease.
local owner = ARGV[1]
local submissions = cmsgpack.unpack(ARGV[2])
local statuses = {}
local leased = redis.call('EXISTS', P .. 'node:' .. owner) == 1
for i, submission in ipairs(submissions) do
  local name, epoch, ops = submission[1], tostring(submission[2]), submission[3]
  local room = room_key(name)
  local held = redis.call('HMGET', room, 'owner', 'epoch', 'seq')
  if not leased then
    statuses[i] = -1
  elseif held[1] ~= owner or held[2] ~= epoch then
    statuses[i] = 0
  else
    local m, a, c = parts(name)
    local listed = P .. 'listed:' .. kind_of(name)
    local id = id_of(name)
    local status = 1
    for _, op in ipairs(ops) do
      local what = op[1]
      if what == 'room' then  -- created (0/1), creator, info
        if op[2] == 1 then redis.call('DEL', m, a, c) end
        redis.call('HSET', room, 'state', 'open', 'creator', op[3], 'info', op[4])
      elseif what == 'member' then  -- userID, name, avatar, pushURL
        local order = redis.call('INCR', P .. 'seq')
        local old = redis.call('HGET', m, op[2])
        if old then order = cmsgpack.unpack(old)[1] end
        redis.call('HSET', m, op[2], cmsgpack.pack({order, op[3], op[4], op[5]}))
        redis.call('ZADD', listed, 'NX', held[3], id)
      elseif what == 'member_gone' then
        redis.call('HDEL', m, op[2])
        if redis.call('HLEN', m) == 0 then redis.call('ZREM', listed, id) end
      elseif what == 'removed' then
        redis.call('DEL', m, a, c)
        redis.call('ZREM', listed, id)
        redis.call('HSET', room, 'state', 'closing')
      elseif what == 'group_gone' then
        if redis.call('HGET', room, 'state') == 'closing' then
          redis.call('DEL', room)
          redis.call('SREM', P .. 'owned:' .. owner, name)
          redis.call('ZREM', P .. 'rooms:' .. kind_of(name), id)
          status = 2
        end
      elseif what == 'audience' then  -- userID, info
        local order = redis.call('INCR', P .. 'seq')
        local old = redis.call('HGET', a, op[2])
        if old then order = cmsgpack.unpack(old)[1] end
        redis.call('HSET', a, op[2], cmsgpack.pack({order, op[3]}))
      elseif what == 'audience_gone' then
        redis.call('HDEL', a, op[2])
      elseif what == 'custom' then  -- name, value
        local order = redis.call('INCR', P .. 'seq')
        local old = redis.call('HGET', c, op[2])
        if old then order = cmsgpack.unpack(old)[1] end
        redis.call('HSET', c, op[2], cmsgpack.pack({order, op[3]}))
      elseif what == 'event' then  -- body, made, cap, then the outbox stream of each receiver
        for k = 5, #op do
          redis.call('XADD', op[k], 'MAXLEN', '~', op[4], '*', 'b', op[2], 'm', op[3])
        end
      end
    end
    statuses[i] = status
  end
end
return statuses
"""
)

LOAD = (
    _COMMON
    + """
-- ARGV: "<kind>/<roomID>": {owner, epoch, state, creator, info, members, audiences, custom} or {}
local name = ARGV[1]
local held = redis.call('HMGET', room_key(name), 'owner', 'epoch', 'state', 'creator', 'info')
if not held[1] then return {} end
local m, a, c = parts(name)
return {held[1], held[2], held[3], held[4], held[5],
        redis.call('HGETALL', m), redis.call('HGETALL', a), redis.call('HGETALL', c)}
"""
)

PAGE = (
    _COMMON
    + """
-- ARGV: kind, index, count: the listed rooms in creation order, each
-- {roomID, creator, info, members, audience count, custom}
local kind, first, count = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local rooms = {}
if count <= 0 then return rooms end
for i, id in ipairs(redis.call('ZRANGE', P .. 'listed:' .. kind, first, first + count - 1)) do
  local name = kind .. '/' .. id
  local held = redis.call('HMGET', room_key(name), 'creator', 'info')
  local m, a, c = parts(name)
  rooms[i] = {id, held[1] or '', held[2] or '', redis.call('HGETALL', m), redis.call('HLEN', a),
              redis.call('HGETALL', c)}
end
return rooms
"""
)

ADMIN_PAGE = (
    _COMMON
    + """
-- ARGV: kind, after (a creation sequence; -1 for the first), limit, state ('' for any; waiting, active,
-- closing): {cursor ('' at the end), {roomID, state, creator, info, members, audiences, age ms}, ...}
-- Looks at no more than 20 rooms per room asked for: a page may be short, and the cursor goes on.
local kind, after, limit, wanted = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local ids = redis.call('ZRANGEBYSCORE', P .. 'rooms:' .. kind, '(' .. after, '+inf', 'WITHSCORES',
                       'LIMIT', 0, limit * 20)
local found, last, now = {}, nil, now_ms()
for i = 1, #ids, 2 do
  local id, seq = ids[i], ids[i + 1]
  local name = kind .. '/' .. id
  local held = redis.call('HMGET', room_key(name), 'state', 'creator', 'info', 'made')
  local m, a = parts(name)
  local state = held[1]
  if state == 'open' then
    if redis.call('HLEN', m) > 0 then state = 'active' else state = 'waiting' end
  end
  if state and state ~= 'pending' and (wanted == '' or wanted == state) then
    found[#found + 1] = {id, state, held[2], held[3], redis.call('HLEN', m), redis.call('HLEN', a),
                         now - tonumber(held[4] or now)}
  end
  last = seq
  if #found == limit then break end
end
local more = last ~= nil and #redis.call('ZRANGEBYSCORE', P .. 'rooms:' .. kind, '(' .. last, '+inf', 'LIMIT', 0, 1) > 0
if more then return {last, found} end
return {'', found}
"""
)

TAKEOVER = """
-- ARGV: dead owner, new owner, batch: up to batch rooms of an owner whose lease is gone move to
-- the new owner, each with a new epoch. {-1}: the new owner has no lease; {} with the dead
-- owner forgotten: nothing left of it; else {"<kind>/<roomID>", epoch, ...}.
local P = 'roomd:'
local dead, owner, batch = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', P .. 'node:' .. dead) == 1 then return {} end
if redis.call('EXISTS', P .. 'node:' .. owner) == 0 then return {-1} end
local taken = {}
for _, name in ipairs(redis.call('SPOP', P .. 'owned:' .. dead, batch)) do
  local room = P .. 'room:' .. name
  if redis.call('HGET', room, 'owner') == dead then
    local epoch = redis.call('INCR', P .. 'epoch')
    redis.call('HSET', room, 'owner', owner, 'epoch', epoch)
    redis.call('SADD', P .. 'owned:' .. owner, name)
    taken[#taken + 1] = name
    taken[#taken + 1] = epoch
  end
end
if redis.call('SCARD', P .. 'owned:' .. dead) == 0 then redis.call('SREM', P .. 'nodes', dead) end
return taken
"""

SHARED_SECRET = """
-- ARGV: which secret (token_secret, link_secret), a fresh random one kept only if none is there.
-- What is there is returned as it is, never replaced: the node checks it, and refuses to start on a corrupt one
local key = 'roomd:' .. ARGV[1]
local secret = redis.call('GET', key)
if not secret then
  redis.call('SET', key, ARGV[2])
  secret = ARGV[2]
end
return secret
"""

REVOKE = """
-- ARGV: token id, its expiry (unix s), the oldest entry to keep (ms: older ones are of expired tokens)
return redis.call('XADD', 'roomd:revoked', 'MINID', '~', ARGV[3], '*', 'id', ARGV[1], 'expires', ARGV[2])
"""

REVOKED_AFTER = """
-- ARGV: the last entry id read ('' for none), count: the revocations added after it, oldest first
local start = '-'
if ARGV[1] ~= '' then start = '(' .. ARGV[1] end
return redis.call('XRANGE', 'roomd:revoked', start, '+', 'COUNT', ARGV[2])
"""

LANE_LEASE = """
-- ARGV: lease key, owner, ttl ms: 1 when `owner` holds the lane (taken or renewed), 0 when another does
local held = redis.call('GET', ARGV[1])
if not held then
  redis.call('SET', ARGV[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
if held == ARGV[2] then
  redis.call('PEXPIRE', ARGV[1], ARGV[3])
  return 1
end
return 0
"""
