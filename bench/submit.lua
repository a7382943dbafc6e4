-- wrk script for bench_fake.py: POST a 2 KB SubmitMessage with a unique client reference tag per request.
-- FLOWMAILER_TOKEN, FLOWMAILER_PATH and FLOWMAILER_BODY come from the environment; "%REF%" in the body is replaced.
local token = os.getenv("FLOWMAILER_TOKEN")
local path = os.getenv("FLOWMAILER_PATH")
local head, tail = string.match(os.getenv("FLOWMAILER_BODY"), "^(.*)%%REF%%(.*)$")
local counter = 0
local headers = {
  ["Host"] = "api.flowmailer.test",
  ["Authorization"] = "Bearer " .. token,
  ["Accept"] = "application/vnd.flowmailer.v1.12+json",
  ["Content-Type"] = "application/vnd.flowmailer.v1.12+json;charset=UTF-8",
}

request = function()
  counter = counter + 1
  return wrk.format("POST", path, headers, head .. string.format("%012d", counter) .. tail)
end
