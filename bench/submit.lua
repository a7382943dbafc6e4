-- wrk script for bench_fake.py and bench_latency.py: POST a 2 KB SubmitMessage with a unique client reference tag
-- per request. FLOWMAILER_TOKEN, FLOWMAILER_PATH and FLOWMAILER_BODY come from the environment; "%REF%" in the
-- body is replaced. FLOWMAILER_DEPTH (default 1) pipelines: each write carries that many requests back to back,
-- wrk's pipelining idiom, and wrk counts every answer.
local token = os.getenv("FLOWMAILER_TOKEN")
local path = os.getenv("FLOWMAILER_PATH")
local head, tail = string.match(os.getenv("FLOWMAILER_BODY"), "^(.*)%%REF%%(.*)$")
local depth = tonumber(os.getenv("FLOWMAILER_DEPTH") or "1")
local counter = 0
local headers = {
  ["Host"] = "api.flowmailer.test",
  ["Authorization"] = "Bearer " .. token,
  ["Accept"] = "application/vnd.flowmailer.v1.12+json",
  ["Content-Type"] = "application/vnd.flowmailer.v1.12+json;charset=UTF-8",
}

local function one()
  counter = counter + 1
  return wrk.format("POST", path, headers, head .. string.format("%012d", counter) .. tail)
end

request = function()
  if depth == 1 then
    return one()
  end
  local batch = {}
  for i = 1, depth do
    batch[i] = one()
  end
  return table.concat(batch)
end
