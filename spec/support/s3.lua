-- spec/support/s3.lua: the S3 stand-in (spec/support/fake_s3.py) for the backup specs: one
-- server per spec file, its fault injection and its journal of requests.
--
--   local S3 = require "spec.support.s3"
--   S3.start()                      -- in setup(); S3.stop() in teardown()
--   S3.fault { fail = { { method = "PUT", status = 500, path = "/backups/x/" } } }
--   S3.journal()                    -- every request so far, in the order they arrived
local H = require "spec.support.helpers"
local core = require "tide.core"
local json = require "tide.json"

local S3 = {
  AK = "AKIDTEST",
  SK = "sk-Zq8vV3cret-do-not-print",
  BEARER = "bearer-Tk9-do-not-print",
}
S3.ENV = { AWS_ACCESS_KEY_ID = S3.AK, AWS_SECRET_ACCESS_KEY = S3.SK }

--- Starts fake_s3.py on a free port (bucket "backups"); extra: more command-line words.
function S3.start(extra)
  local dir = H.tmpdir()
  local cmd = string.format("python3 %s/spec/support/fake_s3.py --port 0 --bucket backups --access-key %s "
    .. "--secret-key %s --bearer %s --region us-east-1 --dir %s --max-seconds 1200 %s >%s/port 2>%s/log & "
    .. "echo $!",
    H.shell_quote(H.source_dir), S3.AK, H.shell_quote(S3.SK), H.shell_quote(S3.BEARER), H.shell_quote(dir .. "/data"),
    extra or "", H.shell_quote(dir), H.shell_quote(dir))
  local p = assert(io.popen(cmd, "r"))
  S3.pid = tonumber(p:read("l"))
  p:close()
  local deadline = core.now() + 10
  while core.now() < deadline do
    local port = (H.read(dir .. "/port") or ""):match("PORT (%d+)")
    if port then
      S3.port = tonumber(port)
      S3.endpoint = "http://127.0.0.1:" .. port
      return
    end
    core.sleep(0.05)
  end
  error("fake_s3.py did not start: " .. tostring(H.read(dir .. "/log")))
end

function S3.stop()
  if S3.pid then
    os.execute("kill " .. S3.pid .. " 2>/dev/null")
    S3.pid = nil
  end
end

--- POSTs body to a control path of the stand-in (/__ctl/fault, /__ctl/reset, /__ctl/age).
function S3.ctl(path, body)
  local p = assert(io.popen(string.format("curl -s -f -X POST --data-binary @- %s%s >/dev/null", S3.endpoint, path),
    "w"))
  p:write(body or "")
  assert(p:close(), "fake_s3 control request failed")
end

function S3.fault(t)
  S3.ctl("/__ctl/fault", json.encode(t))
end

--- {journal = {...}, open_uploads = n}: journal entries in arrival order, each with seq, method,
--- path, query, status.
function S3.log()
  local p = assert(io.popen("curl -s -f " .. S3.endpoint .. "/__ctl/log", "r"))
  local text = p:read("a")
  p:close()
  return json.decode(text)
end

--- The journal's requests whose path contains `part` (a prefix such as "/backups/x/"), in
--- arrival order.
function S3.journal(part)
  local out = {}
  for _, e in ipairs(S3.log().journal) do
    if not part or e.path:find(part, 1, true) then
      out[#out + 1] = e
    end
  end
  table.sort(out, function(a, b)
    return a.seq < b.seq
  end)
  return out
end

--- A destination as the specs see it (for listing what is there).
function S3.dest(prefix)
  return core.destination { url = "s3://backups/" .. prefix, endpoint = S3.endpoint, access_key_id = S3.AK,
    secret_access_key = S3.SK, region = "us-east-1", deadline = 10 }
end

--- Names of every object under prefix, sorted.
function S3.objects(prefix)
  local d <close> = S3.dest(prefix)
  local names = {}
  for _, o in ipairs(d:list()) do
    names[#names + 1] = o.name
  end
  table.sort(names)
  return names
end

return S3
