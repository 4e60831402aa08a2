-- wrk script for scripts/bench.py: one connection per thread (-t N -c N); each thread POSTs its
-- share of pre-minted GitLab tokens to /api/v1/token once each (a fresh jti per request, so no
-- replays) and then stops. Latency is measured here, per token request (request and response
-- alternate on a thread's single connection), so nothing else pollutes the figures.
-- Throughput is answered token requests / (last token response - first token request).
-- Arguments: <tokens file> <threads> <role arn>
local ffi = require("ffi")
ffi.cdef[[
struct bench_timeval { long tv_sec; long tv_usec; };
int gettimeofday(struct bench_timeval *tv, void *tz);
]]
local tv = ffi.new("struct bench_timeval")
local function now_us()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000000 + tonumber(tv.tv_usec)
end

local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function init(args)
  local path, nthreads, audience = args[1], tonumber(args[2]), args[3]
  bodies = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == id - 1 then
      table.insert(bodies, "grant_type=" .. urlencode("urn:ietf:params:oauth:grant-type:token-exchange")
        .. "&subject_token_type=" .. urlencode("urn:ietf:params:oauth:token-type:jwt")
        .. "&audience=" .. urlencode(audience) .. "&subject_token=" .. line)
    end
    i = i + 1
  end
  total = #bodies
  next_index, answered, ok, bad, started, finished, sent_at = 1, 0, 0, 0, 0, 0, 0
  latencies = {}
  post = {["Content-Type"] = "application/x-www-form-urlencoded"}
end

function request()
  if next_index <= total then
    local body = bodies[next_index]
    next_index = next_index + 1
    sent_at = now_us()
    if started == 0 then started = sent_at end
    return wrk.format("POST", "/api/v1/token", post, body)
  end
  -- Out of tokens (wrk may have built one request it never sent): stop this thread.
  wrk.thread:stop()
  return wrk.format("GET", "/healthz")
end

function response(status, headers, body)
  if body == "ok" then return end
  finished = now_us()
  latencies[#latencies + 1] = finished - sent_at
  answered = answered + 1
  if status == 200 then ok = ok + 1 else bad = bad + 1 end
  if answered >= total then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local sent, good, errors, first, last, all = 0, 0, 0, nil, 0, {}
  for _, thread in ipairs(threads) do
    sent = sent + thread:get("answered")
    good = good + thread:get("ok")
    errors = errors + thread:get("bad")
    local s, f = thread:get("started"), thread:get("finished")
    if s > 0 and (first == nil or s < first) then first = s end
    if f > last then last = f end
    for _, value in ipairs(thread:get("latencies")) do all[#all + 1] = value end
  end
  table.sort(all)
  local function pct(p)
    if #all == 0 then return 0 end
    return all[math.max(1, math.ceil(#all * p / 100))]
  end
  local elapsed = (first and last > first) and (last - first) or summary.duration
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "ok": %d, "errors": %d, "socket_errors": %d, "duration_us": %d, '
    .. '"p50_us": %d, "p99_us": %d}\n',
    sent, good, errors,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    elapsed, pct(50), pct(99)))
end
