-- wrk script for starting runs through the workflow API, each with its own Idempotency-Key
-- (a retried start with the same key is the same run, so every key must be new):
--   wrk -t2 -c16 -d10s -s tools/wrk/workflow_starts.lua http://127.0.0.1:7790/v1/workflows/ladder1/runs
-- Keys hold the thread's id, a counter and the round (WRK_ROUND), so rounds never collide.
local counter = 0
local threads = 0
local round = os.getenv("WRK_ROUND") or "0"

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function request()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json", ["Idempotency-Key"] = "w" .. round .. "-" .. id .. "-" .. counter}
  return wrk.format("POST", nil, headers, '{"inputs":{}}')
end

function response(status, headers, body)
  if status ~= 201 then
    io.stderr:write("unexpected status " .. status .. ": " .. body .. "\n")
  end
end
