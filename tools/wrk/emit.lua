-- wrk script for single-event durable ingest over POST /emit (CelestialTree route):
--   wrk -t2 -c64 -d10s -s tools/wrk/emit.lua http://127.0.0.1:7777/emit
wrk.method = "POST"
wrk.body   = '{"type":"task.success","parents":[1],"payload":{"job":"build","attempt":1,"status":"ok","host":"worker-17"}}'
wrk.headers["Content-Type"] = "application/json"
