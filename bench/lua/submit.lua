-- POST /f/contact with a unique submission per request, so duplicate suppression never answers
-- one from memory: every body carries this run's id, the thread's number and a counter.
-- Usage: wrk -s bench/lua/submit.lua http://HOST:PORT/f/contact -- json|form RUN_ID
-- json: what a script on a website sends (answered 202 with JSON);
-- form: what a plain HTML form sends from a browser (answered 303 to the thank-you page).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

local mode, prefix, counter = "json", "run", 0
local json_headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
local form_headers = {
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
}

function init(args)
  mode = args[1] or "json"
  prefix = string.format("%s-%d", args[2] or "run", tid or 0)
end

function request()
  counter = counter + 1
  local id = string.format("%s-%d", prefix, counter)
  if mode == "form" then
    local body = "name=Jordan+Rivera&email=bench-" .. id .. "%40example.com"
      .. "&phone=%28415%29+555-2671&for_whom=loved_one&preferred_contact=phone"
      .. "&best_time=Evenings+after+6&voicemail_ok=yes&state=CA&program=detox"
      .. "&message=My+brother+needs+help+and+we+do+not+know+where+to+start.+" .. id
      .. "&consent=on"
    return wrk.format("POST", nil, form_headers, body)
  end
  local body = '{"name":"Jordan Rivera","email":"bench-' .. id .. '@example.com",'
    .. '"phone":"(415) 555-2671","for_whom":"loved_one","preferred_contact":"phone",'
    .. '"best_time":"Evenings after 6","voicemail_ok":true,"state":"CA","program":"detox",'
    .. '"message":"My brother needs help and we do not know where to start. ' .. id .. '",'
    .. '"consent":true}'
  return wrk.format("POST", nil, json_headers, body)
end

-- One machine-readable line for the harness (latencies in microseconds).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,'
      .. '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,'
      .. '"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
