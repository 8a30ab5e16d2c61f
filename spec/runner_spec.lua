-- spec/runner_spec.lua: tide.runner (lua/tide/runner.lua) through the real binary: each
-- revision in its own transaction with its state and history rows, failures rolled back and
-- recorded, --single-transaction, downgrade, transaction = false, the tracking schema's name.
local H = require "spec.support.helpers"
local core = require "tide.core"

-- Five revisions creating t1..t5, the third failing on a duplicate table.
local function five_with_failing_third()
  local revs = H.chain(5)
  revs["003_t3.lua"] = H.revision {
    revision = "003",
    down_revision = "002",
    message = "create t3 badly",
    up = "CREATE TABLE t3 (id int); CREATE TABLE t1 (id int)",
    down_sql = "DROP TABLE t3",
  }
  return revs
end

local function failures(db, schema)
  local out = {}
  for _, h in ipairs(H.history(db, schema)) do
    if h.outcome == "failed" then
      out[#out + 1] = h
    end
  end
  return out
end

-- The revisions whose upgrade was applied, or whose downgrade reverted them, in history order.
local function applied_rows(db, direction, schema)
  local out = {}
  local done = direction == "downgrade" and "reverted" or "applied"
  for _, h in ipairs(H.history(db, schema)) do
    if h.outcome == done and h.direction == direction then
      out[#out + 1] = h.revision
    end
  end
  return out
end

describe("tide.runner #db", function()
  local db

  before_each(function()
    db = H.fresh_db()
  end)

  after_each(function()
    H.cleanup()
  end)

  describe("a revision failing mid-run", function()
    local dir, r

    before_each(function()
      dir = H.project(five_with_failing_third())
      r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    end)

    it("exits 6", function()
      assert.are.equal(6, r.code, r.output)
    end)

    it("keeps the first two revisions applied and recorded", function()
      assert.are.same({ "001", "002" }, H.applied(db))
      assert.are.same({ "001", "002" }, applied_rows(db, "upgrade"))
      assert.are.same({ "t1", "t2" }, H.tables(db))
    end)

    it("rolls the third back entirely: its first statement's table is gone too", function()
      assert.is_false(H.exists(db, "public.t3"))
      assert.is_false(H.exists(db, "public.t4"))
    end)

    it("writes the failure to history with the SQLSTATE and error", function()
      local f = failures(db)
      assert.are.equal(1, #f)
      assert.are.equal("003", f[1].revision)
      assert.are.equal("upgrade", f[1].direction)
      assert.are.equal("42P07", f[1].sqlstate)
      assert.matches('relation "t1" already exists', f[1].error)
    end)

    it("names the revision, file, statement and SQLSTATE in the message", function()
      assert.matches("revision 003", r.stderr)
      assert.truthy(r.stderr:find("versions/003_t3.lua", 1, true), r.stderr)
      assert.truthy(r.stderr:find("CREATE TABLE t1 (id int)", 1, true), r.stderr)
      assert.truthy(r.stderr:find("42P07", 1, true), r.stderr)
    end)

    it("applies the rest once the revision is fixed, recording the checksum of the fixed file", function()
      H.write(dir .. "/versions/003_t3.lua", H.revision { revision = "003", down_revision = "002",
        up = "CREATE TABLE t3 (id int)", down_sql = "DROP TABLE t3" })
      local again = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(0, again.code, again.output)
      assert.are.same({ "001", "002", "003", "004", "005" }, H.applied(db))
      assert.are.same({ "001", "002", "003", "004", "005" }, applied_rows(db, "upgrade"))
      local check = H.tide({ "check", "--url", db.url }, { dir = dir })
      assert.are.equal(0, check.code, check.output)
    end)
  end)

  it("records a failure of the very first revision, tracking tables created beforehand", function()
    local dir = H.project {
      ["001_a.lua"] = H.revision { revision = "001", up = "CREATE TABLE a (id int); SELECT 1/0" },
    }
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.are.equal(6, r.code, r.output)
    assert.are.same({}, H.applied(db))
    assert.are.same({}, H.tables(db))
    local f = failures(db)
    assert.are.equal(1, #f)
    assert.are.equal("001", f[1].revision)
    assert.are.equal("22012", f[1].sqlstate)
  end)

  it("reports a failure raised by Lua code with the file and line", function()
    local dir = H.project {
      ["001_a.lua"] = H.revision { revision = "001", up = "CREATE TABLE a (id int)" },
      ["002_b.lua"] = 'return {\n  revision = "002",\n  down_revision = "001",\n  message = "lua fails",\n'
        .. '  upgrade = function(db)\n    db:exec("CREATE TABLE b (id int)")\n    error("x")\n  end,\n}\n',
    }
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.are.equal(6, r.code, r.output)
    assert.truthy(r.stderr:find("versions/002_b.lua:7", 1, true), r.stderr)
    assert.are.same({ "001" }, H.applied(db))
    assert.are.same({ "a" }, H.tables(db))
    local f = failures(db)
    assert.are.equal(1, #f)
    assert.are.equal("002", f[1].revision)
    assert.matches("x", f[1].error)
  end)

  it("refuses a db:query parameter it cannot send, at the revision's line and not inside tide", function()
    local dir = H.project {
      ["001_a.lua"] = 'return {\n  revision = "001",\n  message = "bad parameter",\n'
        .. '  upgrade = function(db)\n    db:exec("CREATE TABLE a (id int)")\n    db:query("SELECT $1::int", {})\n'
        .. '  end,\n}\n',
    }
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.are.equal(6, r.code, r.output)
    assert.truthy(r.stderr:find("revision 001 (versions/001_a.lua:6) failed in upgrade: db:query: parameter $1 is "
      .. "a table", 1, true), r.stderr)
    assert.falsy(r.stderr:find("lua/tide/", 1, true), r.stderr)
    assert.are.same({}, H.applied(db))
    assert.are.same({}, H.tables(db))
  end)

  it("describes an error object that is a plain table instead of printing its address", function()
    local dir = H.project {
      ["001_a.lua"] = 'return {\n  revision = "001",\n  message = "m",\n  upgrade = function(db)\n'
        .. '    error({ code = 17 })\n  end,\n}\n',
    }
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.are.equal(6, r.code, r.output)
    assert.truthy(r.stderr:find('error object {"code":17}', 1, true), r.stderr)
    assert.is_nil(r.stderr:find("table: 0x", 1, true), r.stderr)
    local f = failures(db)
    assert.matches('"code":17', f[1].error)
  end)

  it("names the line of the revision's db call that failed", function()
    local dir = H.project {
      ["001_a.lua"] = 'return {\n  revision = "001",\n  message = "m",\n  upgrade = function(db)\n'
        .. '    db:exec("SELECT 1")\n    db:exec("SELECT nope_column")\n  end,\n}\n',
    }
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.are.equal(6, r.code)
    assert.truthy(r.stderr:find("versions/001_a.lua:6", 1, true), r.stderr)
    assert.truthy(r.stderr:find("42703", 1, true), r.stderr)
  end)

  -- The revision's own connection is dead here (terminated by an administrator, a timeout, a
  -- restart): the failure must still reach history, on a fresh connection (fixed in dca6b62).
  it("records the failure even when the revision's connection was terminated", function()
    local dir = H.project {
      ["001_a.lua"] = H.revision { revision = "001", up = "CREATE TABLE a (id int)" },
      ["002_b.lua"] = H.revision { revision = "002", down_revision = "001",
        up = "CREATE TABLE b (id int); SELECT pg_terminate_backend(pg_backend_pid())" },
    }
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.are.equal(6, r.code, r.output)
    assert.truthy(r.stderr:find("revision 002", 1, true), r.stderr)
    assert.are.same({ "001" }, H.applied(db))
    assert.are.same({ "a" }, H.tables(db))
    local f = failures(db)
    assert.are.equal(1, #f, "no failure row for 002 in tide.history")
    assert.are.equal("002", f[1].revision)
    assert.are.equal("57P01", f[1].sqlstate)
  end)

  it("finishes the rest after a kill -9 mid-run, applying each revision once", function()
    local revs = {}
    for i = 1, 6 do
      local id = string.format("%03d", i)
      revs[id .. "_k.lua"] = H.revision { revision = id, down_revision = i > 1 and string.format("%03d", i - 1) or nil,
        up = string.format("CREATE TABLE k%d (id int); SELECT pg_sleep(0.3)", i) }
    end
    local dir = H.project(revs)
    local run = H.spawn({ "upgrade", "--url", db.url }, { dir = dir })
    -- wait until two revisions are committed, then kill tide itself (not the shell around it)
    local deadline = core.now() + 20
    while core.now() < deadline and #H.applied(db) < 2 do
      core.sleep(0.05)
    end
    local killed = false
    for _, pid in ipairs(H.tide_pids(run.pid)) do
      killed = os.execute("kill -9 " .. pid) and true
    end
    assert.is_true(killed, "did not find the running tide")
    local r = run.wait()
    assert.are_not.equal(0, r.code)
    local done = #H.applied(db)
    assert.is_true(done >= 2 and done < 6, done .. " revisions applied before the kill")
    local again = H.tide({ "upgrade", "--lock-wait", "20", "--url", db.url }, { dir = dir })
    assert.are.equal(0, again.code, again.output)
    assert.are.same({ "001", "002", "003", "004", "005", "006" }, H.applied(db))
    assert.are.same({ "001", "002", "003", "004", "005", "006" }, applied_rows(db, "upgrade"))
    assert.are.same({ "k1", "k2", "k3", "k4", "k5", "k6" }, H.tables(db))
  end)

  it("commits a revision and its state and history rows together: failing bookkeeping leaves no trace", function()
    local dir = H.project(H.chain(2))
    assert.are.equal(0, H.tide({ "upgrade", "001", "--url", db.url }, { dir = dir }).code)
    -- From now on the state row of 002 cannot be written: its table must not stay behind.
    H.sql(db, "CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
      .. "RAISE EXCEPTION 'no state row for %', NEW.revision USING ERRCODE = 'P0001'; END $$; "
      .. "CREATE TRIGGER refuse BEFORE INSERT ON tide.revision FOR EACH ROW EXECUTE FUNCTION public.refuse()")
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.are.equal(6, r.code, r.output)
    assert.truthy(r.stderr:find("revision 002", 1, true), r.stderr)
    assert.truthy(r.stderr:find("no state row for 002", 1, true), r.stderr)
    assert.are.same({ "001" }, H.applied(db))
    assert.are.same({ "t1" }, H.tables(db))
    local f = failures(db)
    assert.are.equal(1, #f)
    assert.are.equal("002", f[1].revision)
    assert.are.equal("P0001", f[1].sqlstate)
    assert.are.equal(1, #applied_rows(db, "upgrade"))
  end)

  it("exits 3 when the server refuses tide's own bookkeeping, changing nothing", function()
    local role = "spec_limited_" .. db.name:sub(-12)
    H.sql(nil, "CREATE ROLE " .. role .. " NOLOGIN")
    local ok, err = pcall(function()
      local dir = H.project(H.chain(1))
      -- tide connects as the sandbox superuser but runs as a role that may not create schemas
      local r = H.tide({ "upgrade", "--json", "--url", db.url .. "?options=-c%20role%3D" .. role }, { dir = dir })
      assert.are.equal(3, r.code, r.output)
      assert.are.equal("42501", H.json(r).error.sqlstate)
      assert.are.same({}, H.sql(db, "SELECT 1 FROM pg_namespace WHERE nspname = 'tide'"))
      assert.are.same({}, H.tables(db))
    end)
    H.sql(nil, "DROP ROLE " .. role)
    assert(ok, err)
  end)

  it("records a revision whose file was edited while the run was under way as failed (exit 6)", function()
    local dir = H.project {
      ["001_a.lua"] = H.revision { revision = "001", up = "CREATE TABLE a (id int); SELECT pg_sleep(1)" },
      ["002_b.lua"] = H.revision { revision = "002", down_revision = "001", up = "CREATE TABLE b (id int)" },
    }
    local run = H.spawn({ "upgrade", "--url", db.url }, { dir = dir })
    local deadline = core.now() + 20
    while core.now() < deadline and #H.sql(nil, "SELECT 1 FROM pg_stat_activity WHERE datname = $1 "
      .. "AND query LIKE '%pg_sleep(1)%' AND pid <> pg_backend_pid()", db.name) == 0 do
      core.sleep(0.02)
    end
    H.write(dir .. "/versions/002_b.lua", H.revision { revision = "002", down_revision = "001",
      up = "CREATE TABLE b_edited (id int)" })
    local r = run.wait()
    assert.are.equal(6, r.code, r.stderr)
    assert.matches("versions/002_b.lua changed or disappeared while tide was running", r.stderr)
    assert.are.same({ "001" }, H.applied(db))
    assert.are.same({ "a" }, H.tables(db))
    local f = failures(db)
    assert.are.equal(1, #f)
    assert.are.equal("002", f[1].revision)
  end)

  it("forwards a revision's server notices to stderr as tide: server: lines", function()
    local dir = H.project {
      ["001_a.lua"] = H.revision { revision = "001",
        up = "DO $$ BEGIN RAISE NOTICE 'hello from 001'; RAISE WARNING 'careful in 001'; END $$" },
    }
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.are.equal(0, r.code, r.output)
    assert.truthy(r.stderr:find("tide: server: NOTICE: hello from 001", 1, true), r.stderr)
    assert.truthy(r.stderr:find("tide: server: WARNING: careful in 001", 1, true), r.stderr)
    assert.is_nil(r.stdout:find("hello from 001", 1, true), "notices belong on stderr: " .. r.stdout)
  end)

  it("sets its own search_path, whatever the database's default, and takes tide.lua's", function()
    H.sql(db, "CREATE SCHEMA decoy; CREATE SCHEMA app; ALTER DATABASE " .. db.name .. " SET search_path = decoy")
    local revs = { ["001_a.lua"] = H.revision { revision = "001", up = "CREATE TABLE placed (id int)" } }
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = H.project(revs) })
    assert.are.equal(0, r.code, r.output)
    assert.are.same({ "placed" }, H.tables(db, "public"))
    assert.are.same({}, H.tables(db, "decoy"))
    local other = H.fresh_db()
    H.sql(other, "CREATE SCHEMA app; CREATE SCHEMA decoy")
    r = H.tide({ "upgrade", "--url", other.url }, { dir = H.project(revs, "return { search_path = 'app' }\n") })
    assert.are.equal(0, r.code, r.output)
    assert.are.same({ "placed" }, H.tables(other, "app"))
    assert.are.same({}, H.tables(other, "public"))
  end)

  it("starts every revision from the same session: role, search_path, settings and temporary tables", function()
    local other = "spec_other_" .. db.name:sub(-12)
    H.sql(nil, "CREATE ROLE " .. other .. " NOLOGIN")
    local ok, err = pcall(function()
      H.sql(db, "CREATE SCHEMA evil; GRANT ALL ON SCHEMA evil, public TO " .. other)
      local function setter(id, parent, extra, up)
        return H.revision { revision = id, down_revision = parent, extra = extra, up = up }
      end
      local dir = H.project {
        ["001_a.lua"] = setter("001", nil, nil, "CREATE TABLE t1 (id int); "
          .. "GRANT USAGE ON SCHEMA tide TO " .. other .. "; GRANT ALL ON ALL TABLES IN SCHEMA tide TO " .. other
          .. "; GRANT ALL ON ALL SEQUENCES IN SCHEMA tide TO " .. other),
        -- each leaves something behind with SET instead of SET LOCAL
        ["002_b.lua"] = setter("002", "001", nil, "SET ROLE " .. other .. "; SET search_path = evil, public; "
          .. "SET work_mem = '7MB'; CREATE TEMP TABLE t1 (id int)"),
        ["003_c.lua"] = setter("003", "002", nil, "CREATE TABLE t3 AS SELECT current_user::text AS who, "
          .. "current_setting('work_mem') AS work_mem; INSERT INTO t1 VALUES (3)"),
        ["004_d.lua"] = setter("004", "003", "transaction = false,", "SET ROLE " .. other
          .. "; SET search_path = evil; SET statement_timeout = '7s'"),
        ["005_e.lua"] = setter("005", "004", nil, "CREATE TABLE t5 AS SELECT current_user::text AS who, "
          .. "current_setting('statement_timeout') AS statement_timeout"),
      }
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.output)
      local me = os.getenv("PGUSER")
      -- t3 and t5 are tide's role's, in public; t1 got 003's row, not a temporary table of 002
      assert.are.same({ "t1", "t3", "t5" }, H.tables(db))
      assert.are.same({}, H.tables(db, "evil"))
      assert.are.same({ { who = me, work_mem = "4MB" } }, H.sql(db, "SELECT who, work_mem FROM t3"))
      assert.are.same({ { who = me, statement_timeout = "0" } }, H.sql(db, "SELECT who, statement_timeout FROM t5"))
      assert.are.same({ { n = 1 } }, H.sql(db, "SELECT count(*)::int AS n FROM t1"))
      assert.are.same({ { owner = me } }, H.sql(db, "SELECT DISTINCT tableowner::text AS owner FROM pg_tables "
        .. "WHERE tablename IN ('t3', 't5')"))
    end)
    H.sql(db, "DROP OWNED BY " .. other)
    H.sql(nil, "DROP ROLE " .. other)
    assert(ok, err)
  end)

  it("keeps recording after a revision's DEALLOCATE ALL, DISCARD ALL or RESET, and keeps its search_path", function()
    H.sql(db, "CREATE SCHEMA decoy; ALTER DATABASE " .. db.name .. " SET search_path = decoy")
    local revs = {
      ["001_a.lua"] = H.revision { revision = "001", up = "DEALLOCATE ALL" },
      ["002_b.lua"] = H.revision { revision = "002", down_revision = "001", up = "DISCARD ALL",
        extra = "transaction = false," },
      ["003_c.lua"] = H.revision { revision = "003", down_revision = "002", up = "RESET search_path" },
      ["004_d.lua"] = H.revision { revision = "004", down_revision = "003", up = "CREATE TABLE placed (id int)" },
    }
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = H.project(revs) })
    assert.are.equal(0, r.code, r.output)
    assert.are.same({ "001", "002", "003", "004" }, H.applied(db))
    assert.are.same({ "placed" }, H.tables(db, "public"))
    assert.are.same({}, H.tables(db, "decoy"))
  end)

  -- The state and history rows go out with COMMIT in one round trip, their values written as
  -- literals (lua/tide/track.lua): they must read back exactly as the file has them.
  it("records message and source byte for byte, quotes, backslashes and UTF-8 included", function()
    local message = [[it's a \ "test" – ünïcode; -- not a comment]]
    local source = H.revision { revision = "001", message = message, up = [[SELECT E'a\\b', 'c''d']] }
    local dir = H.project { ["001_q.lua"] = source }
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.are.equal(0, r.code, r.output)
    local row = H.sql(db, "SELECT message, source, checksum, duration_ms FROM tide.revision")[1]
    assert.are.equal(message, row.message)
    assert.are.equal(source, row.source)
    assert.are.equal(core.checksum(source), row.checksum)
    local h = H.sql(db, "SELECT duration_ms, checksum FROM tide.history WHERE outcome = 'applied'")[1]
    assert.are.equal(row.duration_ms, h.duration_ms)
    assert.is_true(h.duration_ms > 0)
  end)

  -- BEGIN and the SET LOCAL timeouts travel with the revision's first statement (tide.db).
  it("runs a revision that sends nothing, or only queries, inside its transaction and timeouts", function()
    local dir = H.project {
      ["001_empty.lua"] = H.revision { revision = "001", up = "SELECT 1" }:gsub('db:exec%("SELECT 1"%)', ""),
      ["002_query.lua"] = [[
return {
  revision = "002",
  down_revision = "001",
  message = "query first",
  lock_timeout = "7s",
  upgrade = function(db)
    local row = db:one("SELECT current_setting('lock_timeout') AS lt")
    db:exec("CREATE TABLE seen (lt text)")
    db:query("INSERT INTO seen VALUES ($1)", row.lt)
  end,
}
]],
    }
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.are.equal(0, r.code, r.output)
    assert.are.same({ "001", "002" }, H.applied(db))
    -- SET LOCAL outside a transaction block changes nothing: 7s proves BEGIN went first
    assert.are.equal("7s", H.sql(db, "SELECT lt FROM seen")[1].lt)
    assert.is_nil(r.stderr:find("WARNING", 1, true), r.stderr)
  end)

  describe("--single-transaction", function()
    it("applies nothing when one revision fails, and still records the failure", function()
      local dir = H.project(five_with_failing_third())
      local r = H.tide({ "upgrade", "--single-transaction", "--url", db.url }, { dir = dir })
      assert.are.equal(6, r.code, r.output)
      assert.are.same({}, H.applied(db))
      assert.are.same({}, H.tables(db))
      assert.are.same({}, applied_rows(db, "upgrade"))
      local f = failures(db)
      assert.are.equal(1, #f)
      assert.are.equal("003", f[1].revision)
      assert.matches("single%-transaction", r.stderr)
    end)

    it("applies everything when nothing fails, one history row per revision", function()
      local dir = H.project(H.chain(5))
      local r = H.tide({ "upgrade", "--single-transaction", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "001", "002", "003", "004", "005" }, H.applied(db))
      assert.are.same({ "001", "002", "003", "004", "005" }, applied_rows(db, "upgrade"))
      assert.are.same({ "t1", "t2", "t3", "t4", "t5" }, H.tables(db))
    end)

    it("refuses a revision with transaction = false before running anything", function()
      local revs = H.chain(2)
      revs["003_c.lua"] = H.revision { revision = "003", down_revision = "002", extra = "transaction = false,",
        up = "CREATE TABLE t3 (id int)" }
      local dir = H.project(revs)
      local r = H.tide({ "upgrade", "--single-transaction", "--url", db.url }, { dir = dir })
      assert.are.equal(2, r.code, r.output)
      assert.matches("transaction = false", r.stderr)
      assert.are.same({}, H.tables(db))
    end)
  end)

  describe("downgrade", function()
    it("reverts children first, deleting state rows and appending history rows", function()
      local dir = H.project(H.chain(4))
      assert.are.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
      local r = H.tide({ "downgrade", "--no-backup", "002", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "001", "002" }, H.applied(db))
      assert.are.same({ "t1", "t2" }, H.tables(db))
      assert.are.same({ "004", "003" }, applied_rows(db, "downgrade"))
    end)

    it("stops at a failing downgrade: earlier reverts stay, the failing one stays applied", function()
      local revs = H.chain(4)
      revs["002_t2.lua"] = H.revision { revision = "002", down_revision = "001", up = "CREATE TABLE t2 (id int)",
        down_sql = "DROP TABLE t2; DROP TABLE no_such_table" }
      local dir = H.project(revs)
      assert.are.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
      local r = H.tide({ "downgrade", "--no-backup", "base", "--url", db.url }, { dir = dir })
      assert.are.equal(6, r.code, r.output)
      assert.are.same({ "001", "002" }, H.applied(db))
      assert.are.same({ "t1", "t2" }, H.tables(db))
      assert.are.same({ "004", "003" }, applied_rows(db, "downgrade"))
      local f = failures(db)
      assert.are.equal(1, #f)
      assert.are.equal("002", f[1].revision)
      assert.are.equal("downgrade", f[1].direction)
      assert.are.equal("42P01", f[1].sqlstate)
      assert.truthy(r.stderr:find("versions/002_t2.lua", 1, true), r.stderr)
    end)

    it("with --single-transaction reverts nothing when one downgrade fails", function()
      local revs = H.chain(4)
      revs["002_t2.lua"] = H.revision { revision = "002", down_revision = "001", up = "CREATE TABLE t2 (id int)",
        down_sql = "DROP TABLE no_such_table" }
      local dir = H.project(revs)
      assert.are.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
      local r = H.tide({ "downgrade", "--no-backup", "base", "--single-transaction", "--url", db.url }, { dir = dir })
      assert.are.equal(6, r.code, r.output)
      assert.are.same({ "001", "002", "003", "004" }, H.applied(db))
      assert.are.same({ "t1", "t2", "t3", "t4" }, H.tables(db))
      assert.are.same({}, applied_rows(db, "downgrade"))
    end)

    it("refuses to revert a revision without a downgrade function, before reverting anything", function()
      local dir = H.project {
        ["001_a.lua"] = 'return { revision = "001", message = "m", upgrade = function(db) '
          .. 'db:exec("CREATE TABLE a (id int)") end }\n',
        ["002_b.lua"] = H.revision { revision = "002", down_revision = "001", up = "CREATE TABLE b (id int)",
          down_sql = "DROP TABLE b" },
      }
      assert.are.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
      local r = H.tide({ "downgrade", "--no-backup", "base", "--url", db.url }, { dir = dir })
      assert.are.equal(2, r.code, r.output)
      assert.matches("no downgrade", r.stderr)
      assert.are.same({ "001", "002" }, H.applied(db))
    end)
  end)

  describe("a revision that ends its own transaction", function()
    -- 001 creates t1; 002 is the revision under test; nothing of 002 may stay behind
    local function run(up, extra)
      local dir = H.project {
        ["001_a.lua"] = H.revision { revision = "001", up = "CREATE TABLE t1 (id int)" },
        ["002_b.lua"] = H.revision { revision = "002", down_revision = "001", up = up, extra = extra },
      }
      return H.tide({ "upgrade", "--url", db.url }, { dir = dir }), dir
    end

    for _, case in ipairs {
      { "CREATE TABLE a (id int); ROLLBACK; CREATE TABLE b (id int)", "ROLLBACK" },
      { "CREATE TABLE a (id int); COMMIT; SELECT 1/0", "COMMIT" },
      { "CREATE TABLE a (id int); COMMIT; CREATE TABLE b (id int)", "COMMIT" },
      { "CREATE TABLE a (id int);\n  end work", "END" },
      { "CREATE TABLE a (id int); /* done */ Abort", "ABORT" },
      { "CREATE TABLE a (id int); COMMIT AND CHAIN; CREATE TABLE b (id int)", "COMMIT" },
      { "CREATE TABLE a (id int); ROLLBACK TRANSACTION AND CHAIN", "ROLLBACK" },
      { "CREATE TABLE a (id int); PREPARE TRANSACTION 'tide_spec'", "PREPARE TRANSACTION" },
      { "COMMIT", "COMMIT" },
    } do
      it("is refused before anything is sent: " .. case[1]:gsub("\n", " "), function()
        local r = run(case[1])
        assert.are.equal(6, r.code, r.output)
        assert.truthy(r.stderr:find("revision 002 (versions/002_b.lua:6) failed in upgrade: " .. case[2]
          .. " would end the transaction tide runs this revision in", 1, true), r.stderr)
        assert.truthy(r.stderr:find("rolled back; earlier revisions of this run stay applied", 1, true), r.stderr)
        assert.are.same({ "001" }, H.applied(db))
        assert.are.same({ "t1" }, H.tables(db))
        local f = failures(db)
        assert.are.equal(1, #f)
        assert.are.equal("002", f[1].revision)
      end)
    end

    it("is refused through db:query too", function()
      local dir = H.project {
        ["001_a.lua"] = 'return { revision = "001", message = "m", upgrade = function(db)\n'
          .. '  db:exec("CREATE TABLE a (id int)")\n  db:query("COMMIT")\nend }\n',
      }
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(6, r.code, r.output)
      assert.truthy(r.stderr:find("(versions/001_a.lua:3) failed in upgrade: COMMIT would end", 1, true), r.stderr)
      assert.are.same({}, H.tables(db))
    end)

    it("is not confused by those words in strings, comments, dollar quotes, savepoints or function bodies", function()
      local r = run("CREATE TABLE a (t text DEFAULT 'x; COMMIT'); COMMENT ON TABLE a IS E'it\\'s; ROLLBACK';\n"
        .. "-- COMMIT;\n/* ROLLBACK; /* nested */ END; */\n"
        .. "SAVEPOINT s; CREATE TABLE gone (id int); ROLLBACK TO SAVEPOINT s; RELEASE s;\n"
        .. "SAVEPOINT s2; ROLLBACK WORK TO s2;\n"
        .. "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1;\n"
        .. "  SELECT CASE WHEN true THEN 2 END; END;\n"
        .. "CREATE FUNCTION g() RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM 1; END; $$;\n"
        .. "CREATE RULE r AS ON INSERT TO a DO ALSO (NOTIFY a; NOTIFY b)")
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "001", "002" }, H.applied(db))
      assert.are.same({ "a", "t1" }, H.tables(db))
      assert.are.equal(2, H.sql(db, "SELECT f() AS v")[1].v)
    end)

    it("cannot end it from a DO block or a procedure either: PostgreSQL refuses, nothing stays", function()
      H.sql(db, "CREATE PROCEDURE public.commits() LANGUAGE plpgsql AS $$ BEGIN CREATE TABLE p (id int); COMMIT; "
        .. "END $$")
      for _, up in ipairs { "CREATE TABLE a (id int); DO $$ BEGIN COMMIT; END $$", "CREATE TABLE a (id int); "
        .. "CALL public.commits()" } do
        local r = run(up)
        assert.are.equal(6, r.code, r.output)
        assert.truthy(r.stderr:find("ERROR 2D000: invalid transaction termination", 1, true), r.stderr)
        assert.are.same({ "001" }, H.applied(db))
        assert.are.same({ "t1" }, H.tables(db))
      end
    end)

    it("is stopped, and not recorded, when a statement ends it in a way tide did not see coming", function()
      -- With standard_conforming_strings off (set by an earlier call: the server reads a call's
      -- text whole before running it) the server reads 'x\'' as a whole string and runs the
      -- COMMIT after it; tide's reading (the default, on) finds one string up to the last quote.
      local dir = H.project {
        ["001_a.lua"] = H.revision { revision = "001", up = "CREATE TABLE t1 (id int)" },
        ["002_b.lua"] = 'return { revision = "002", down_revision = "001", message = "m", upgrade = function(db)\n'
          .. '  db:exec("SET LOCAL standard_conforming_strings = off; SET LOCAL escape_string_warning = off")\n'
          .. [[  db:exec("CREATE TABLE a (id int); SELECT 'x\\''; COMMIT; CREATE TABLE b (id int); --'")]] .. "\n"
          .. "end }\n",
      }
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(6, r.code, r.output)
      assert.truthy(r.stderr:find("revision 002 (versions/002_b.lua:3) failed in upgrade: the transaction tide runs "
        .. "this revision in ended during this statement", 1, true), r.stderr)
      assert.truthy(r.stderr:find("NOT rolled back: the revision's transaction had ended", 1, true), r.stderr)
      assert.are.same({ "001" }, H.applied(db))
      assert.are.same({ "a", "b", "t1" }, H.tables(db)) -- committed, as the message says it may be
      assert.are.equal(1, #failures(db))
    end)

    it("is stopped, and not recorded, when the transaction ends around tide.db", function()
      local dir = H.project {
        ["001_a.lua"] = 'return { revision = "001", message = "m", upgrade = function(db)\n'
          .. '  db:exec("CREATE TABLE a (id int)")\n  db.conn:exec("COMMIT")\nend }\n',
      }
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(6, r.code, r.output)
      assert.truthy(r.stderr:find("the transaction tide runs this revision in ended while the revision ran", 1, true),
        r.stderr)
      assert.truthy(r.stderr:find("NOT rolled back: the revision's transaction had ended", 1, true), r.stderr)
      assert.are.same({}, H.applied(db))
      assert.are.same({ "a" }, H.tables(db)) -- committed, as the message says it may be
      local f = failures(db)
      assert.are.equal(1, #f)
    end)

    it("is reported by tide check and tide lint while it is pending", function()
      local dir = H.project {
        ["001_a.lua"] = H.revision { revision = "001", up = "CREATE TABLE t1 (id int)" },
        ["002_b.lua"] = H.revision { revision = "002", down_revision = "001",
          up = "CREATE TABLE a (id int); COMMIT" },
      }
      local r = H.tide({ "check", "--url", db.url }, { dir = dir })
      assert.are.equal(1, r.code, r.output)
      assert.truthy(r.stdout:find("problem: cannot run: revision 002 (versions/002_b.lua:6): COMMIT would end the "
        .. "transaction", 1, true), r.output)
      r = H.tide({ "lint", "--url", db.url }, { dir = dir })
      assert.are.equal(1, r.code, r.output)
      assert.truthy(r.output:find("COMMIT would end the transaction", 1, true), r.output)
      assert.is_false(H.exists(db, "tide.revision"))
    end)
  end)

  describe("transaction = false", function()
    it("runs the revision outside a transaction, so CREATE INDEX CONCURRENTLY works", function()
      local dir = H.project {
        ["001_a.lua"] = H.revision { revision = "001", up = "CREATE TABLE a (id int)" },
        ["002_b.lua"] = H.revision { revision = "002", down_revision = "001", extra = "transaction = false,",
          up = "CREATE INDEX CONCURRENTLY a_id ON a (id)", down_sql = "DROP INDEX CONCURRENTLY a_id" },
      }
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "001", "002" }, H.applied(db))
      assert.is_true(H.exists(db, "public.a_id"))
      local valid = H.sql(db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.a_id'::regclass")
      assert.is_true(valid[1].indisvalid)
      r = H.tide({ "downgrade", "--no-backup", "001", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.output)
      assert.is_false(H.exists(db, "public.a_id"))
    end)

    it("lets a call group statements in BEGIN ... COMMIT, and refuses a call that leaves a transaction open", function()
      local dir = H.project {
        ["001_a.lua"] = H.revision { revision = "001", up = "CREATE TABLE a (id int)" },
        ["002_b.lua"] = H.revision { revision = "002", down_revision = "001", extra = "transaction = false,",
          up = "BEGIN; INSERT INTO a VALUES (1); INSERT INTO a VALUES (2); COMMIT; "
            .. "CREATE INDEX CONCURRENTLY a_id ON a (id)" },
        ["003_c.lua"] = H.revision { revision = "003", down_revision = "002", extra = "transaction = false,",
          up = "BEGIN; INSERT INTO a VALUES (3)" },
      }
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(6, r.code, r.output)
      assert.truthy(r.stderr:find("revision 003 (versions/003_c.lua:7) failed in upgrade: this call left a "
        .. "transaction open", 1, true), r.stderr)
      assert.are.same({ "001", "002" }, H.applied(db))
      assert.are.same({ { n = 2 } }, H.sql(db, "SELECT count(*)::int AS n FROM a"))
    end)

    it("fails CREATE INDEX CONCURRENTLY in an ordinary revision (it does run in a transaction)", function()
      local dir = H.project {
        ["001_a.lua"] = H.revision { revision = "001", up = "CREATE TABLE a (id int)" },
        ["002_b.lua"] = H.revision { revision = "002", down_revision = "001",
          up = "CREATE INDEX CONCURRENTLY a_id ON a (id)" },
      }
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(6, r.code, r.output)
      assert.truthy(r.stderr:find("25001", 1, true), r.stderr)
      assert.are.same({ "001" }, H.applied(db))
    end)

    it("keeps what ran before the failing statement, says so, and records the failure", function()
      local dir = H.project {
        ["001_a.lua"] = H.revision { revision = "001", extra = "transaction = false,",
          up = "CREATE TABLE a (id int); SELECT 1/0" },
      }
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(6, r.code, r.output)
      assert.matches("NOT rolled back", r.stderr)
      assert.are.same({}, H.applied(db))
      assert.are.equal(1, #failures(db))
    end)
  end)

  describe("the tracking schema", function()
    it("is named by --schema", function()
      local dir = H.project(H.chain(2))
      local r = H.tide({ "upgrade", "--schema", "migr", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "001", "002" }, H.applied(db, "migr"))
      assert.is_true(H.exists(db, "migr.revision"))
      assert.is_true(H.exists(db, "migr.history"))
      assert.is_false(H.exists(db, "tide.revision"))
      -- status through the same schema sees the revisions applied
      local s = H.tide({ "status", "--json", "--schema", "migr", "--url", db.url }, { dir = dir })
      assert.are.equal(0, H.json(s).pending)
    end)

    it("is named by `schema` in tide.lua", function()
      local dir = H.project(H.chain(2), 'return { schema = "from_file" }\n')
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "001", "002" }, H.applied(db, "from_file"))
      assert.is_false(H.exists(db, "tide.revision"))
    end)

    it("is named by --schema over tide.lua", function()
      local dir = H.project(H.chain(1), 'return { schema = "from_file" }\n')
      local r = H.tide({ "upgrade", "--schema", "from_flag", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "001" }, H.applied(db, "from_flag"))
      assert.is_false(H.exists(db, "from_file.revision"))
    end)

    it("refuses a name that is not a plain identifier (exit 2)", function()
      local dir = H.project(H.chain(1))
      local r = H.tide({ "upgrade", "--schema", "x; DROP TABLE y", "--url", db.url }, { dir = dir })
      assert.are.equal(2, r.code, r.output)
      assert.are.same({}, H.sql(db, "SELECT 1 FROM pg_namespace WHERE nspname LIKE 'x%'"))
    end)

    it("keeps history append-only", function()
      local dir = H.project(H.chain(1))
      assert.are.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
      assert.has_error(function()
        H.sql(db, "DELETE FROM tide.history")
      end)
      assert.has_error(function()
        H.sql(db, "UPDATE tide.history SET outcome = 'failed'")
      end)
      assert.are.equal(1, #H.history(db))
    end)
  end)

  describe("progress", function()
    -- 001 sleeps `seconds`, in a step
    local function slow(seconds)
      return { ["001_slow.lua"] = [[
return {
  revision = "001", message = "slow backfill",
  upgrade = function(db)
    db:exec("CREATE TABLE slow (id int)")
    db:step("fill", function(db) db:exec("SELECT pg_sleep(]] .. seconds .. [[)") end)
  end,
  downgrade = function(db) db:exec("DROP TABLE slow") end,
}
]],
      ["002_steps.lua"] = [[
return {
  revision = "002", down_revision = "001", message = "index", transaction = false,
  upgrade = function(db)
    db:step("column", function(db) db:exec("ALTER TABLE slow ADD v int") end)
    db:step("index", function(db) db:exec("CREATE INDEX CONCURRENTLY slow_v ON slow (v)") end)
  end,
  downgrade = function(db) db:exec("DROP INDEX slow_v; ALTER TABLE slow DROP v") end,
}
]],
      }
    end

    it("prints a line as each revision and each step starts, as plain lines off a terminal", function()
      local dir = H.project(slow(0))
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal("tide: upgrade: 2 revisions to head\n"
        .. "tide: [1/2] applying 001 slow backfill\n"
        .. "tide:   step \"fill\"\n"
        .. "tide: applied 001 slow backfill (%d ms)\n"
        .. "tide: [2/2] applying 002 index\n"
        .. "tide:   step \"column\"\n"
        .. "tide:   step \"index\"\n"
        .. "tide: applied 002 index (%d ms)\n",
        (r.stderr:gsub("%(%d+ ms%)", "(%%d ms)")))
      assert.is_nil(r.stderr:find("[\r\027]"), "no carriage return or escape code off a terminal")
      r = H.tide({ "downgrade", "base", "--url", db.url, "--no-backup" }, { dir = dir })
      assert.are.equal(0, r.code, r.output)
      assert.matches("tide: %[1/2%] reverting 002 index\n.*tide: %[2/2%] reverting 001 slow backfill\n", r.stderr)
      -- -q keeps stderr quiet
      r = H.tide({ "upgrade", "-q", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal("", r.stderr)
    end)

    it("shows the elapsed time of a long statement as a live line on a terminal", function()
      local dir = H.project(slow(2.5))
      -- script(1) gives tide a terminal on stdin, stdout and stderr
      local out = os.tmpname()
      local cmd = "unset DATABASE_URL; cd " .. H.shell_quote(dir) .. " && script -qec "
        .. H.shell_quote(H.command { "upgrade", "--url", db.url }) .. " /dev/null > " .. H.shell_quote(out) .. " 2>&1"
      assert.is_true(os.execute(cmd) == true, H.read(out))
      local screen = H.read(out)
      os.remove(out)
      -- pg_sleep(2.5) outlasts the first second: the live line shows at least once, rewritten in place
      assert.matches("\rtide: %[1/2%] applying 001 slow backfill: %d+ s, step \"fill\"\027%[K", screen)
      -- and is cleared before the next ordinary line
      assert.matches("\027%[K\r\027%[Ktide: applied 001 slow backfill %(%d+ ms%)", screen)
      assert.are.same({ "001", "002" }, H.applied(db))
    end)
  end)
end)
