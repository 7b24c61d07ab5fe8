-- wrk: post pre-signed, unique webhook bodies from a file, one per request, each once.
-- A line is "<signature>\t<body>"; the signature goes in the header named by the third
-- argument (Stripe-Signature, Webhook-Signature). Each thread takes every Nth line, so no
-- two threads send the same body.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local requests = {}
local index = 0

function init(args)
  local path, step, header = args[1], tonumber(args[2]), args[3] or "Stripe-Signature"
  local n = 0
  for line in io.lines(path) do
    n = n + 1
    if n % step == id then
      local tab = line:find("\t", 1, true)
      requests[#requests + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        [header] = line:sub(1, tab - 1),
      }, line:sub(tab + 1))
    end
  end
end

function request()
  index = index + 1
  if index > #requests then index = 1 end  -- wraps only if the file runs out
  return requests[index]
end
