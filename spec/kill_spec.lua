-- Reliability: `kill -9` of tide at random points of upgrades and downgrades, and the server
-- ending tide's backend mid-revision. After each, the database must be consistent (a revision's
-- table exists exactly when its state row does, and history agrees) and the next run finishes.
-- tools/torture/kill runs the long form of the same loop.
local H = require "spec.support.helpers"
local consistency = require "spec.support.consistency"
local core = require "tide.core"

local N = 24

-- Every revision sleeps a little so that kills land inside revisions as well as between them.
local function project()
  local revs = {}
  for i = 1, N do
    local id = string.format("%03d", i)
    revs[id .. ".lua"] = H.revision {
      revision = id,
      down_revision = i > 1 and string.format("%03d", i - 1) or nil,
      up = string.format("CREATE TABLE k%d (id int PRIMARY KEY); SELECT pg_sleep(0.01)", i),
      down_sql = string.format("DROP TABLE k%d; SELECT pg_sleep(0.01)", i),
    }
  end
  return H.project(revs)
end

--- Starts tide with `exec` so the pid we get is tide's own.
local function start(args, dir)
  local cmd = "unset DATABASE_URL; cd " .. H.shell_quote(dir) .. " && echo $$ && exec " .. H.command(args)
    .. " >/dev/null 2>&1"
  local p = assert(io.popen("sh -c " .. H.shell_quote(cmd) .. " & ", "r"))
  local pid = tonumber(p:read("l"))
  p:close()
  return pid
end

-- Running, as opposed to gone or a zombie waiting for init to reap it.
local function alive(pid)
  local stat = H.read("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

local function assert_consistent(db)
  consistency.assert_chain(db, N, "k")
end

describe("reliability #db", function()
  local db, dir
  before_each(function()
    db = H.fresh_db()
    dir = project()
  end)
  after_each(H.cleanup)

  it("survives kill -9 at random points of upgrades and downgrades (10, TIDE_KILL_ROUNDS in the long form)", function()
    math.randomseed(tonumber(os.getenv("TIDE_SEED") or "") or os.time())
    for round = 1, tonumber(os.getenv("TIDE_KILL_ROUNDS") or "") or 10 do
      local direction = round % 2 == 1 and "upgrade" or "downgrade"
      local args = direction == "upgrade" and { "upgrade", "--url", db.url }
        or { "downgrade", "base", "--no-backup", "--url", db.url }
      local pid = start(args, dir)
      core.sleep(0.02 + math.random() * 0.25)
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
      local deadline = core.now() + 10
      while alive(pid) and core.now() < deadline do
        core.sleep(0.01)
      end
      assert.is_false(alive(pid))
      -- The server ends the dead tide's sessions on its own; a new tide waits for the lock if
      -- the old backend has not noticed yet.
      assert_consistent(db)
    end
    local r = H.tide({ "upgrade", "--url", db.url, "--lock-wait", "30" }, { dir = dir })
    assert.are.equal(0, r.code, r.stderr)
    assert_consistent(db)
    assert.are.equal(N, #H.applied(db))
  end)

  it("survives kill -9 around a CREATE INDEX CONCURRENTLY revision and one that ends its own transaction", function()
    -- 004 builds an index concurrently in steps (transaction = false; a step a kill interrupts
    -- runs again, so each is written to run twice); 009 tries to COMMIT inside its transaction
    -- and is refused every time: it must never be applied or leave k9.
    local M = 8
    local revs = {}
    for i = 1, M do
      local id = string.format("%03d", i)
      revs[id .. ".lua"] = H.revision {
        revision = id,
        down_revision = i > 1 and string.format("%03d", i - 1) or nil,
        up = string.format("CREATE TABLE k%d (id int PRIMARY KEY); SELECT pg_sleep(0.01)", i),
        down_sql = string.format("DROP TABLE k%d; SELECT pg_sleep(0.01)", i),
      }
    end
    revs["004.lua"] = [[
return {
  revision = "004",
  down_revision = "003",
  message = "k4 with an index built concurrently",
  transaction = false,
  upgrade = function(db)
    db:step("table", function(db)
      db:exec("CREATE TABLE IF NOT EXISTS k4 (id int PRIMARY KEY, v int); "
        .. "INSERT INTO k4 SELECT g, g FROM generate_series(1, 999) g ON CONFLICT DO NOTHING")
    end)
    db:step("index", function(db)
      -- a kill after the build and before the step is recorded leaves a valid index: IF NOT
      -- EXISTS keeps it, and tide drops an INVALID one (a build the kill cut short) first
      db:exec("SELECT pg_sleep(0.02); CREATE INDEX CONCURRENTLY IF NOT EXISTS k4_v ON k4 (v)")
    end)
  end,
  downgrade = function(db)
    db:step("drop", function(db)
      db:exec("DROP TABLE IF EXISTS k4; SELECT pg_sleep(0.01)")
    end)
  end,
}
]]
    revs["009.lua"] = H.revision { revision = "009", down_revision = "008",
      up = "CREATE TABLE k9 (id int); COMMIT; SELECT pg_sleep(0.01)", down_sql = "DROP TABLE k9" }
    local steps = H.project(revs)
    local function check()
      consistency.assert_chain(db, M, "k")
      assert.is_false(H.exists(db, "k9"), "009 left k9 behind")
      for _, id in ipairs(H.applied(db)) do
        assert.are_not.equal("009", id, "009 applied")
      end
    end
    local function partial()
      if not H.exists(db, "tide.revision") then
        return nil
      end
      local row = H.sql(db, "SELECT partial_direction FROM tide.revision WHERE state = 'partial'")[1]
      return row and row.partial_direction
    end
    math.randomseed(tonumber(os.getenv("TIDE_SEED") or "") or os.time())
    for round = 1, tonumber(os.getenv("TIDE_KILL_ROUNDS") or "") or 10 do
      local args = round % 2 == 1 and { "upgrade", "--url", db.url }
        or { "downgrade", "base", "--no-backup", "--url", db.url }
      local pid = start(args, steps)
      core.sleep(0.02 + math.random() * 0.3)
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
      local deadline = core.now() + 10
      while alive(pid) and core.now() < deadline do
        core.sleep(0.01)
      end
      assert.is_false(alive(pid))
      check()
    end
    -- settle a revision a kill left half done (the way a user would), then upgrade to the end
    local direction = partial()
    if direction then
      local r = H.tide({ direction, direction == "downgrade" and "003" or "004", "--no-backup", "--lock-wait", "30",
        "--url", db.url }, { dir = steps })
      assert.are.equal(0, r.code, r.output)
    end
    local r = H.tide({ "upgrade", "--lock-wait", "30", "--url", db.url }, { dir = steps })
    assert.are.equal(6, r.code, r.output)
    assert.truthy(r.stderr:find("revision 009 (versions/009.lua:6) failed in upgrade: COMMIT would end the "
      .. "transaction", 1, true), r.stderr)
    check()
    assert.are.same({ "001", "002", "003", "004", "005", "006", "007", "008" }, H.applied(db))
    assert.is_true(H.sql(db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'k4_v'::regclass")[1].indisvalid)
  end)

  it("makes the next tide wait for the last statement of a killed tide's session", function()
    -- 002's bookkeeping is slow (a trigger sleeps): tide is killed while its session runs the
    -- state row, history row and COMMIT, which the server still finishes. A downgrade started
    -- right after must see 002 applied (and revert it), not plan from the state before.
    local dir2 = H.project(H.chain(2))
    assert.are.equal(0, H.tide({ "upgrade", "001", "--url", db.url }, { dir = dir2 }).code)
    H.sql(db, "CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
      .. "IF NEW.revision = '002' THEN PERFORM pg_sleep(2); END IF; RETURN NEW; END $$; "
      .. "CREATE TRIGGER slow BEFORE INSERT ON tide.history FOR EACH ROW EXECUTE FUNCTION public.slow()")
    local pid = start({ "upgrade", "--url", db.url }, dir2)
    local deadline, busy = core.now() + 20, false
    while not busy and core.now() < deadline do
      busy = #H.sql(db, "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        .. "AND state = 'active' AND query LIKE 'EXECUTE tide_record%'") > 0
      core.sleep(0.02)
    end
    assert.is_true(busy, "tide never reached 002's bookkeeping")
    os.execute("kill -9 " .. pid .. " 2>/dev/null")
    local r = H.tide({ "downgrade", "base", "--no-backup", "--lock-wait", "30", "--url", db.url }, { dir = dir2 })
    assert.are.equal(0, r.code, r.output)
    assert.matches("reverted 2 revisions", r.stdout)
    assert.are.same({}, H.applied(db))
    assert.are.same({}, H.tables(db))
  end)

  it("fails cleanly when the server terminates tide's backend mid-revision, and the next run finishes", function()
    local slow = H.project {
      ["001.lua"] = H.revision { revision = "001", up = "CREATE TABLE s1 (id int)" },
      ["002.lua"] = H.revision { revision = "002", down_revision = "001",
        up = "CREATE TABLE s2 (id int); SELECT pg_sleep(30)" },
    }
    local run = H.spawn({ "upgrade", "--url", db.url }, { dir = slow })
    local victim
    local deadline = core.now() + 20
    while not victim and core.now() < deadline do
      local rows = H.sql(nil, "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%pg_sleep(30)%' "
        .. "AND pid <> pg_backend_pid()", db.name)
      victim = rows[1] and rows[1].pid
      core.sleep(0.05)
    end
    assert.is_not_nil(victim, "revision 002 never started")
    H.sql(nil, "SELECT pg_terminate_backend($1)", victim)
    local r = run.wait()
    assert.are.equal(6, r.code, r.stderr)
    assert.matches("revision 002", r.stderr)
    assert.are.same({ "001" }, H.applied(db))
    assert.are.same({ "s1" }, H.tables(db))
    local fixed = H.project {
      ["001.lua"] = H.revision { revision = "001", up = "CREATE TABLE s1 (id int)" },
      ["002.lua"] = H.revision { revision = "002", down_revision = "001", up = "CREATE TABLE s2 (id int)" },
    }
    r = H.tide({ "upgrade", "--url", db.url, "--lock-wait", "30" }, { dir = fixed })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ "001", "002" }, H.applied(db))
  end)
end)
