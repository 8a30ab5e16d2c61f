-- Long form only (tools/torture/run): the server itself restarted in the middle of a run, with
-- a clean shutdown (-m fast) and with a crash-like one (-m immediate, recovery on start). tide
-- must fail with a clear message, leave state and tables in agreement, and the next run must
-- finish. It restarts the sandbox server, so it never runs beside other specs.
local H = require "spec.support.helpers"
local consistency = require "spec.support.consistency"
local core = require "tide.core"

local N = 40

local function restart(mode)
  local cmd = string.format("%s/pg_ctl -D %s/data -m %s -w restart -l %s/server.log >/dev/null",
    os.getenv("PG_BINDIR"), os.getenv("TIDE_SANDBOX"), mode, os.getenv("TIDE_SANDBOX"))
  if io.popen("id -u"):read("l") == "0" then
    cmd = "runuser -u tide-pg -- " .. cmd
  end
  assert(os.execute(cmd))
end

local function consistent(db)
  consistency.assert_chain(db, N, "r")
end

describe("server restart mid-run #db", function()
  after_each(H.cleanup)

  for _, mode in ipairs { "fast", "immediate" } do
    it("with -m " .. mode .. ": tide fails cleanly, state agrees with the catalog, the next run finishes", function()
      local db = H.fresh_db()
      local revs = {}
      for i = 1, N do
        local id = string.format("%03d", i)
        revs[id .. ".lua"] = H.revision { revision = id, down_revision = i > 1 and string.format("%03d", i - 1) or nil,
          up = string.format("CREATE TABLE r%d (id int); SELECT pg_sleep(0.02)", i) }
      end
      local dir = H.project(revs)
      local run = H.spawn({ "upgrade", "--url", db.url }, { dir = dir })
      core.sleep(0.3)
      restart(mode)
      local r = run.wait()
      assert.is_true(r.code == 6 or r.code == 3, "exit " .. tostring(r.code) .. ": " .. tostring(r.stderr))
      assert.is_nil(r.stderr:find("internal error", 1, true), r.stderr)
      consistent(db)
      assert.is_true(#H.applied(db) < N, "the restart came too late to interrupt the run")
      r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.stderr)
      consistent(db)
      assert.are.equal(N, #H.applied(db))
    end)
  end
end)
