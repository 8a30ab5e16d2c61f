-- spec/sandbox_spec.lua: tools/pg-sandbox, the throwaway server under the suite, the demo and
-- the benchmarks: it gives tide a database of its own (tide without a URL must not migrate
-- `postgres`), and runs its server as an unprivileged user without complaining about the
-- directory it was started from.
local H = require "spec.support.helpers"

-- Runs tools/pg-sandbox cmd from cwd with TIDE_SANDBOX=dir: exit code, stdout, stderr.
local function sandbox(cmd, dir, cwd)
  local err_file = os.tmpname()
  local p = assert(io.popen(string.format("cd %s && TIDE_SANDBOX=%s %s %s 2>%s", H.shell_quote(cwd),
    H.shell_quote(dir), H.shell_quote(H.source_dir .. "/tools/pg-sandbox"), cmd, H.shell_quote(err_file))))
  local stdout = p:read("a")
  local _, _, code = p:close()
  local stderr = H.read(err_file) or ""
  os.remove(err_file)
  return code, stdout, stderr
end

describe("tools/pg-sandbox #db", function()
  after_each(H.cleanup)

  -- Before: PGDATABASE=postgres, so `tide upgrade` without a URL migrated the maintenance database.
  it("names a database of its own in PGDATABASE, which tide reaches without a URL", function()
    assert.are.equal("tide_sandbox", os.getenv("PGDATABASE"))
    local r = H.tide({ "status", "--json" }, { dir = H.project(H.chain(1)) })
    assert.are.equal(0, r.code, r.output)
    assert.matches(":" .. os.getenv("PGPORT") .. "/tide_sandbox$", H.json(r).database)
  end)

  -- Before: every start and stop as root from a checkout under /root printed the server user's
  -- `could not change directory to "...": Permission denied`, the last line of tools/test.
  it("starts and stops quietly from a directory its server user cannot enter, and creates its database",
    function()
      if io.popen("id -u"):read("l") ~= "0" then
        pending("the server runs as another user only when the sandbox is started as root (CI runs as root)")
        return
      end
      local base = H.tmpdir { ["private/.keep"] = "" }
      assert(os.execute("chmod 0755 " .. H.shell_quote(base) .. " && chmod 0700 " .. H.shell_quote(base .. "/private")))
      local dir = base .. "/pg"
      local code, stdout, stderr = sandbox("start", dir, base .. "/private")
      local ok, err = pcall(function()
        assert.are.equal(0, code, stderr)
        assert.are.equal("", stderr)
        local env = {}
        for k, v in stdout:gmatch("export (%u[%u_]*)='?([^'\n]*)'?\n") do
          env[k] = v
        end
        assert.are.equal("tide_sandbox", env.PGDATABASE)
        assert.are_not.equal(os.getenv("PGPORT"), env.PGPORT)
        local r = H.tide({ "status", "--json" }, { dir = H.project(H.chain(1)), env = { PGPORT = env.PGPORT,
          PGPASSFILE = env.PGPASSFILE, PGDATABASE = env.PGDATABASE } })
        assert.are.equal(0, r.code, r.output)
        assert.matches(":" .. env.PGPORT .. "/tide_sandbox$", H.json(r).database)
        -- started again, it is reused as it is
        code, stdout, stderr = sandbox("start", dir, base .. "/private")
        assert.are.equal(0, code, stderr)
        assert.are.equal("", stderr)
        assert.matches("export PGPORT=" .. env.PGPORT .. "\n", stdout)
      end)
      local stop_code, _, stop_err = sandbox("stop", dir, base .. "/private")
      assert(ok, err)
      assert.are.equal(0, stop_code, stop_err)
      assert.are.equal("", stop_err)
      assert.is_nil(H.read(dir .. "/port"))
    end)
end)
