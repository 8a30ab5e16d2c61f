-- spec/conninfo_spec.lua: one redaction of connection strings (engine/conninfo.c), and no other.
-- Every spelling of a secret that libpq reads (a URL's userinfo, percent-encoded or not, query
-- parameters under an encoded name, keyword strings with quoted and escaped values, spaces
-- around `=`, sslpassword, a service file's entries) must be gone from every place tide shows
-- a URL, and what tide shows must be exactly core.redact's text: a second masking path (a
-- pattern in Lua, a copy in another C file) that prints the URL its own way fails here even
-- when it happens to hide the secret. The last specs read the sources for such a second path.
local H = require "spec.support.helpers"
local core = require "tide.core"
local config = require "tide.config"

local SECRET = "s3cRet-do-not-print"

-- Connection strings to a closed port, each with what it must never show.
local function corpus(port)
  local at = "127.0.0.1:" .. port
  return {
    { url = "postgresql://app:" .. SECRET .. "@" .. at .. "/db", secrets = { SECRET } },
    -- percent-encoded: libpq decodes %2D to '-', so both spellings are the secret
    { url = "postgresql://app:s3cRet%2Ddo%2Dnot%2Dprint@" .. at .. "/db", secrets = { "s3cRet%2Ddo", SECRET } },
    { url = "postgres://app@" .. at .. "/db?sslmode=disable&password=" .. SECRET, secrets = { SECRET } },
    { url = "postgresql://" .. at .. "/db?%70assword=" .. SECRET .. "&sslmode=disable", secrets = { SECRET } },
    { url = "postgresql://" .. at .. "/db?sslpassword=" .. SECRET, secrets = { SECRET } },
    { url = "host=127.0.0.1 port=" .. port .. " password='" .. SECRET .. " with spaces' dbname=db",
      secrets = { SECRET, "with spaces" } },
    { url = "host=127.0.0.1 port=" .. port .. " password = " .. SECRET .. " dbname=db", secrets = { SECRET } },
    { url = "host=127.0.0.1 port=" .. port .. [[ password='it\'s-]] .. SECRET .. "' dbname=db",
      secrets = { SECRET, "it\\'s" } },
    { url = "host=127.0.0.1 port=" .. port .. " sslpassword=" .. SECRET .. " dbname=db", secrets = { SECRET } },
  }
end

local function assert_hidden(text, secrets, what)
  for _, secret in ipairs(secrets) do
    local at = text:find(secret, 1, true)
    assert.is_nil(at, what .. " shows " .. secret .. ": " .. text)
  end
end

describe("one redaction of connection strings", function()
  after_each(function()
    H.cleanup()
  end)

  it("config.redact is core.redact, and hides every spelling of a secret", function()
    for _, case in ipairs(corpus(5432)) do
      local shown = core.redact(case.url)
      assert.are.equal(shown, config.redact(case.url))
      assert_hidden(shown, case.secrets, "core.redact")
      assert.matches("%*%*%*%*", shown)
    end
  end)

  it("is what a failed connection prints, in text and JSON, with -v: nothing else shows a URL #db", function()
    local dir = H.project()
    for _, case in ipairs(corpus(H.closed_port())) do
      local r = H.tide({ "-v", "status", "--url", case.url }, { dir = dir })
      assert.are.equal(3, r.code, r.stderr)
      assert.truthy(r.stderr:find("cannot connect to " .. core.redact(case.url) .. " (from --url)", 1, true), r.stderr)
      assert_hidden(r.output, case.secrets, "tide status -v")
      r = H.tide({ "status", "--json", "--url", case.url }, { dir = dir })
      assert.are.equal(3, r.code)
      assert.are.equal("connect", H.json(r).error.kind)
      assert_hidden(r.output, case.secrets, "tide status --json")
    end
  end)

  it("hides what libpq quotes of a connection string it cannot read #db", function()
    local dir = H.project()
    for _, url in ipairs {
      "postgresql://app:" .. SECRET .. "%zz@127.0.0.1:1/db",
      "postgresql://127.0.0.1:1/db?password=" .. SECRET .. "%zz",
      "postgresql://app:" .. SECRET .. "%00@127.0.0.1:1/db",
    } do
      local r = H.tide({ "status", "--url", url }, { dir = dir })
      assert.are.equal(3, r.code)
      assert.matches("percent%-encoded", r.stderr)
      assert.truthy(r.stderr:find("cannot connect to " .. core.redact(url), 1, true), r.stderr)
      assert_hidden(r.output, { SECRET }, "tide status")
    end
  end)

  it("never shows what a service file holds, nor a secret given beside service= #db", function()
    local dir = H.project()
    local port = H.closed_port()
    H.write(dir .. "/pg_service.conf", string.format("[spec]\nhost=127.0.0.1\nport=%d\ndbname=db\npassword=%s\n"
      .. "sslpassword=%s\n", port, SECRET, SECRET))
    for _, url in ipairs { "service=spec", "service=spec password=" .. SECRET, "postgresql:///?service=spec" } do
      local r = H.tide({ "-v", "status", "--url", url },
        { dir = dir, env = { PGSERVICEFILE = dir .. "/pg_service.conf" } })
      assert.are.equal(3, r.code, r.stderr)
      assert.truthy(r.stderr:find("cannot connect to " .. core.redact(url), 1, true), r.stderr)
      assert_hidden(r.output, { SECRET }, "tide status with a service file")
    end
  end)

  describe("has no second implementation", function()
    local function lines_of(path)
      local f = assert(io.open(H.source_dir .. "/" .. path))
      local text = f:read("a")
      f:close()
      return text
    end

    local function files(pattern)
      local p = assert(io.popen("cd " .. H.shell_quote(H.source_dir) .. " && ls " .. pattern))
      local list = {}
      for name in p:lines() do
        list[#list + 1] = name
      end
      p:close()
      return list
    end

    it("in Lua: no module reads a password out of a string itself", function()
      for _, path in ipairs(files("lua/tide/*.lua lua/tide/*/*.lua tide.lua 2>/dev/null")) do
        local n = 0
        for line in lines_of(path):gmatch("[^\n]*") do
          n = n + 1
          local code = line:gsub("%-%-.*$", "")
          if code:find("assword") and (code:find("gsub") or code:find("match") or code:find("find")) then
            error(string.format("%s:%d masks secrets by pattern; use config.redact (core.redact): %s", path, n, line))
          end
        end
      end
    end)

    it("in C: only conninfo.c parses a connection string or finds its secrets", function()
      for _, path in ipairs(files("engine/*.c")) do
        if path ~= "engine/conninfo.c" then
          local text = lines_of(path)
          for _, name in ipairs { "PQconninfoParse", "tide_conninfo_secrets", '"****"' } do
            assert.is_nil(text:find(name, 1, true), path .. " uses " .. name .. ": conninfo.c is the one place")
          end
        end
      end
    end)
  end)
end)
