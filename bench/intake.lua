-- wrk: post pre-signed, unique Stripe events from a file, one per request, each once.
-- Each thread takes every Nth line, so no two threads send the same event.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local requests = {}
local index = 0

function init(args)
  local path, step = args[1], tonumber(args[2])
  local n = 0
  for line in io.lines(path) do
    n = n + 1
    if n % step == id then
      local tab = line:find("\t", 1, true)
      requests[#requests + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["Stripe-Signature"] = line:sub(1, tab - 1),
      }, line:sub(tab + 1))
    end
  end
end

function request()
  index = index + 1
  if index > #requests then index = 1 end  -- wraps only if the file runs out
  return requests[index]
end
