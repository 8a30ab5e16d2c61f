-- spec/lock_spec.lua: tide.lock (lua/tide/lock.lua) through the real binary: two tides on one
-- database, the bounded wait and its message, and the lock-free read that lets a run with
-- nothing to do finish while another tide holds the lock.
local H = require "spec.support.helpers"
local core = require "tide.core"

-- n revisions, each sleeping a little so that two runs overlap.
local function sleepy_chain(n, seconds)
  local revs = {}
  for i = 1, n do
    local id = string.format("%03d", i)
    revs[id .. "_s.lua"] = H.revision {
      revision = id,
      down_revision = i > 1 and string.format("%03d", i - 1) or nil,
      up = string.format("SELECT pg_sleep(%s); CREATE TABLE s%d (id int)", seconds, i),
      down_sql = string.format("DROP TABLE s%d", i),
    }
  end
  return revs
end

-- Takes tide's lock (schema `tide`) on a connection of its own, named app.
local function hold_lock(db, app)
  local conn = core.connect(db.url, app)
  conn:query("SELECT pg_advisory_lock(hashtextextended('tide:tide', 0))")
  return conn
end

describe("tide.lock #db", function()
  local db

  before_each(function()
    db = H.fresh_db()
  end)

  after_each(function()
    H.cleanup()
  end)

  it("lets two tides started together apply each revision exactly once, both exiting 0", function()
    local dir = H.project(sleepy_chain(20, 0.05))
    local a = H.spawn({ "upgrade", "--url", db.url }, { dir = dir })
    local b = H.spawn({ "upgrade", "--url", db.url }, { dir = dir })
    local ra, rb = a.wait(), b.wait()
    assert.are.equal(0, ra.code, ra.stderr)
    assert.are.equal(0, rb.code, rb.stderr)
    local expected = {}
    for i = 1, 20 do
      expected[i] = string.format("%03d", i)
    end
    assert.are.same(expected, H.applied(db))
    local rows = H.sql(db, "SELECT revision, count(*) AS n FROM tide.history WHERE direction = 'upgrade' "
      .. "AND outcome = 'applied' GROUP BY revision ORDER BY revision")
    assert.are.equal(20, #rows)
    for i, row in ipairs(rows) do
      assert.are.equal(expected[i], row.revision)
      assert.are.equal(1, row.n)
    end
    assert.are.same({}, H.sql(db, "SELECT id FROM tide.history WHERE outcome = 'failed'"))
    -- every revision came from a single run
    assert.are.equal(1, H.sql(db, "SELECT count(DISTINCT run_id) AS n FROM tide.history")[1].n)
  end)

  it("lets three tides racing on a fresh database (no tracking schema yet) all succeed", function()
    local dir = H.project(sleepy_chain(5, 0.02))
    local runs = {}
    for i = 1, 3 do
      runs[i] = H.spawn({ "upgrade", "--url", db.url }, { dir = dir })
    end
    for i = 1, 3 do
      local r = runs[i].wait()
      assert.are.equal(0, r.code, r.stderr)
    end
    assert.are.same({ "001", "002", "003", "004", "005" }, H.applied(db))
    assert.are.equal(5, H.sql(db, "SELECT count(*) AS n FROM tide.history")[1].n)
  end)

  describe("when another session holds the lock", function()
    local holder

    after_each(function()
      if holder then
        holder:close()
        holder = nil
      end
    end)

    it("gives up after --lock-wait with exit 4, naming the holder's pid and application_name", function()
      local dir = H.project(H.chain(2))
      holder = hold_lock(db, "spec-lock-holder")
      local pid = holder:info().pid
      local t0 = core.now()
      local r = H.tide({ "upgrade", "--lock-wait", "1", "--url", db.url }, { dir = dir })
      local elapsed = core.now() - t0
      assert.are.equal(4, r.code, r.output)
      assert.truthy(r.stderr:find("pid " .. pid, 1, true), r.stderr)
      assert.truthy(r.stderr:find("spec-lock-holder", 1, true), r.stderr)
      assert.matches("since", r.stderr)
      assert.is_true(elapsed >= 0.9, "gave up after " .. elapsed .. " s")
      assert.is_true(elapsed < 10, "gave up after " .. elapsed .. " s")
      assert.are.same({}, H.applied(db))
      assert.are.same({}, H.tables(db))
    end)

    it("reports lock busy in --json with exit code 4", function()
      local dir = H.project(H.chain(1))
      holder = hold_lock(db, "spec-lock-holder")
      local r = H.tide({ "upgrade", "--json", "--lock-wait", "0.5", "--url", db.url }, { dir = dir })
      assert.are.equal(4, r.code, r.output)
      local out = H.json(r)
      assert.are.equal("lock", out.error.kind)
      assert.are.equal(4, out.error.exit_code)
    end)

    it("does not wait when there is nothing to do", function()
      local dir = H.project(H.chain(2))
      assert.are.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
      holder = hold_lock(db, "spec-lock-holder")
      local t0 = core.now()
      local r = H.tide({ "upgrade", "--lock-wait", "30", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.output)
      assert.is_true(core.now() - t0 < 5, "nothing-to-do run waited " .. (core.now() - t0) .. " s")
      assert.matches("nothing to do", r.stdout)
    end)

    it("answers nothing-to-do without the lock for every target, not only head", function()
      local dir = H.project(H.chain(2))
      local empty = H.fresh_db()
      assert.are.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
      holder = hold_lock(db, "spec-lock-holder")
      local other = hold_lock(empty, "spec-lock-holder")
      -- --lock-wait 0: a run that asked for the lock would fail at once with exit 4
      local cases = {
        { "upgrade", "001", "--url", db.url }, -- an applied id
        { "upgrade", "002", "--url", db.url },
        { "upgrade", "+1", "--url", db.url }, -- at head
        { "upgrade", "heads", "--url", db.url },
        { "downgrade", "base", "--url", empty.url }, -- nothing applied, no tracking schema
        { "downgrade", "-1", "--url", empty.url },
        { "downgrade", "002", "--url", db.url }, -- the target is the head
      }
      for _, args in ipairs(cases) do
        args[#args + 1] = "--lock-wait"
        args[#args + 1] = "0"
        local r = H.tide(args, { dir = dir })
        assert.are.equal(0, r.code, table.concat(args, " ") .. ": " .. r.output)
        assert.matches("nothing to do", r.stdout)
      end
      other:close()
    end)

    it("does not block read-only commands", function()
      local dir = H.project(H.chain(2))
      assert.are.equal(0, H.tide({ "upgrade", "+1", "--url", db.url }, { dir = dir }).code)
      holder = hold_lock(db, "spec-lock-holder")
      for _, cmd in ipairs { "status", "current", "check", "history" } do
        local t0 = core.now()
        local r = H.tide({ cmd, "--lock-wait", "30", "--url", db.url }, { dir = dir })
        assert.are.equal(0, r.code, cmd .. ": " .. r.output)
        assert.is_true(core.now() - t0 < 5, cmd .. " waited")
      end
    end)

    it("takes the lock as soon as the holder lets go", function()
      local dir = H.project(H.chain(2))
      holder = hold_lock(db, "spec-lock-holder")
      local run = H.spawn({ "upgrade", "--lock-wait", "60", "--url", db.url }, { dir = dir })
      core.sleep(0.5)
      assert.are.same({}, H.applied(db))
      holder:close()
      holder = nil
      local r = run.wait()
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same({ "001", "002" }, H.applied(db))
    end)

    it("does not wait at all with --lock-wait 0", function()
      local dir = H.project(H.chain(1))
      holder = hold_lock(db, "spec-lock-holder")
      local t0 = core.now()
      local r = H.tide({ "upgrade", "--lock-wait", "0", "--url", db.url }, { dir = dir })
      assert.are.equal(4, r.code, r.output)
      assert.is_true(core.now() - t0 < 5)
      assert.truthy(r.stderr:find("spec-lock-holder", 1, true), r.stderr)
      assert.are.same({}, H.applied(db))
    end)

    it("takes the wait from `lock_wait` in tide.lua", function()
      local dir = H.project(H.chain(1), "return { lock_wait = 1 }\n")
      holder = hold_lock(db, "spec-lock-holder")
      local t0 = core.now()
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(4, r.code, r.output)
      assert.is_true(core.now() - t0 < 10, "waited " .. (core.now() - t0) .. " s, not tide.lua's 1 s")
    end)

    it("refuses a --lock-wait or lock_wait beyond what the server's lock_timeout holds (exit 2)", function()
      local dir = H.project(H.chain(1))
      local r = H.tide({ "upgrade", "--lock-wait", "99999999", "--url", db.url }, { dir = dir })
      assert.are.equal(2, r.code, r.output)
      assert.matches("longer than PostgreSQL's limit for a timeout, 2147483647ms", r.stderr)
      dir = H.project(H.chain(1), "return { lock_wait = -1 }\n")
      r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(2, r.code, r.output)
      assert.are.same({}, H.applied(db))
    end)

    it("refuses a --lock-wait that is not a number (exit 2)", function()
      local dir = H.project(H.chain(1))
      local r = H.tide({ "upgrade", "--lock-wait", "soon", "--url", db.url }, { dir = dir })
      assert.are.equal(2, r.code, r.output)
      assert.matches("%-%-lock%-wait", r.stderr)
    end)

    it("makes stamp wait for the lock too", function()
      local dir = H.project(H.chain(1))
      holder = hold_lock(db, "spec-lock-holder")
      local r = H.tide({ "stamp", "head", "--lock-wait", "1", "--url", db.url }, { dir = dir })
      assert.are.equal(4, r.code, r.output)
      assert.are.same({}, H.applied(db))
    end)

    it("is a different lock for a different tracking schema", function()
      local dir = H.project(H.chain(1))
      holder = hold_lock(db, "spec-lock-holder")
      local r = H.tide({ "upgrade", "--schema", "other", "--lock-wait", "1", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "001" }, H.applied(db, "other"))
    end)
  end)

  it("names a running tide as the holder while it migrates", function()
    local dir = H.project {
      ["001_a.lua"] = H.revision { revision = "001", up = "SELECT pg_sleep(5)" },
    }
    local other = H.project(H.chain(1))
    local slow = H.spawn({ "upgrade", "--url", db.url }, { dir = dir })
    -- wait until the slow tide holds the lock
    local deadline = core.now() + 10
    while core.now() < deadline do
      local rows = H.sql(db, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted " ..
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
      if #rows > 0 then
        break
      end
      core.sleep(0.05)
    end
    local r = H.tide({ "upgrade", "--lock-wait", "1", "--url", db.url }, { dir = other })
    assert.are.equal(4, r.code, r.output)
    assert.matches('application_name "tide"', r.stderr)
    assert.matches("pid %d+", r.stderr)
    local done = slow.wait()
    assert.are.equal(0, done.code, done.stderr)
    assert.are.same({ "001" }, H.applied(db))
  end)

  it("releases the lock when tide fails", function()
    local dir = H.project {
      ["001_a.lua"] = H.revision { revision = "001", up = "SELECT 1/0" },
    }
    assert.are.equal(6, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
    assert.are.same({}, H.sql(db, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
      .. "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"))
    local r = H.tide({ "upgrade", "--lock-wait", "1", "--url", db.url }, { dir = dir })
    assert.are.equal(6, r.code, r.output)
  end)
end)
