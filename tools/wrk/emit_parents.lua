-- wrk script for POST /emit with or without one random existing parent (tools/peer/celestialtree.py):
--   PARENT_MAX=1000 wrk -t2 -c64 -d10s -s tools/wrk/emit_parents.lua http://127.0.0.1:7777/emit
-- PARENT_MAX=0 (or unset) sends no parents; otherwise each event names one id in 1..PARENT_MAX,
-- which must exist (load that many events first).
local parent_max = tonumber(os.getenv("PARENT_MAX") or "0")
local payload = '"payload":{"job":"build","attempt":1,"status":"ok","host":"worker-17"}'
local headers = { ["Content-Type"] = "application/json" }

request = function()
   local parents = ""
   if parent_max > 0 then parents = tostring(math.random(1, parent_max)) end
   return wrk.format("POST", nil, headers, '{"type":"task.success","parents":[' .. parents .. '],' .. payload .. '}')
end
