-- wrk script for benchmarks/serving.py: POST the JSON body in the file $BENCH_BODY.
local f = assert(io.open(os.getenv("BENCH_BODY"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
