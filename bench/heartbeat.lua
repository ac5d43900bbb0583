-- wrk script: POST pusher_heartbeat for the members listed in $ROOMD_MEMBERS
-- (one "roomID userID" per line), round robin.
local members = {}
local path = os.getenv("ROOMD_HEARTBEAT_PATH") or "/weapp/multi_room/pusher_heartbeat"
local counter = 0

function init(args)
  for line in io.lines(os.getenv("ROOMD_MEMBERS")) do
    local room, user = line:match("^(%S+) (%S+)$")
    if room then table.insert(members, {room, user}) end
  end
  counter = math.random(#members)
end

function request()
  counter = counter + 1
  local m = members[(counter % #members) + 1]
  local body = '{"roomID":"' .. m[1] .. '","userID":"' .. m[2] .. '"}'
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end

bad = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if status ~= 200 or not body:find('"code":0', 1, true) then bad = bad + 1 end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("bad") end
  io.write(string.format("non-ok replies: %d\n", total))
end
