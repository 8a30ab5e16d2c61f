-- spec/auto_spec.lua: `tide auto` (start-up upgrade behind AUTO_IMPROVE_DATABASE) and
-- `tide test` (round trip on a scratch database), against the sandbox server.
local core = require "tide.core"
local H = require "spec.support.helpers"

describe("tide auto #db", function()
  after_each(H.cleanup)

  it("does nothing, without connecting, when AUTO_IMPROVE_DATABASE is unset or false", function()
    local dir = H.project(H.chain(2))
    local bad = "postgresql://nobody@127.0.0.1:1/none"
    local r = H.tide({ "auto", "--url", bad }, { dir = dir, unset = { "DATABASE_URL", "AUTO_IMPROVE_DATABASE" } })
    assert.equal(0, r.code, r.stderr)
    assert.matches("not upgrading: AUTO_IMPROVE_DATABASE is not set", r.stdout)
    r = H.tide({ "auto", "--url", bad }, { dir = dir, env = { AUTO_IMPROVE_DATABASE = "false" } })
    assert.equal(0, r.code, r.stderr)
    r = H.tide({ "auto", "--url", bad }, { dir = dir, env = { AUTO_IMPROVE_DATABASE = "yes" } })
    assert.equal(0, r.code, r.stderr)
    assert.matches("neither true/1 nor false/0", r.stderr)
  end)

  it("upgrades to head with one progress line per revision when it is true or 1", function()
    local db = H.fresh_db()
    local dir = H.project(H.chain(3))
    local r = H.tide({ "auto", "--url", db.url }, { dir = dir, env = { AUTO_IMPROVE_DATABASE = "true" } })
    assert.equal(0, r.code, r.stderr)
    assert.matches("%[1/3%] applying 001 create t1", r.stderr)
    assert.matches("%[3/3%] applying 003 create t3", r.stderr)
    assert.matches("applied 3 revisions: 001, 002, 003", r.stdout)
    assert.same({ "001", "002", "003" }, H.applied(db))
    r = H.tide({ "auto", "--url", db.url }, { dir = dir, env = { AUTO_IMPROVE_DATABASE = "1" } })
    assert.equal(0, r.code, r.stderr)
    assert.matches("up to date", r.stdout)
  end)

  it("never waits for the lock when nothing is pending", function()
    local db = H.fresh_db()
    local dir = H.project(H.chain(1))
    assert.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
    local holder = core.connect(db.url, "other-tide")
    holder:query("SELECT pg_advisory_lock(hashtextextended('tide:tide', 0))")
    local t0 = core.now()
    local r = H.tide({ "auto", "--url", db.url, "--lock-wait", "30" }, { dir = dir,
      env = { AUTO_IMPROVE_DATABASE = "true" } })
    holder:close()
    assert.equal(0, r.code, r.stderr)
    assert.is_true(core.now() - t0 < 5)
  end)

  it("refuses with exit 8 when the database has revisions this build does not know", function()
    local db = H.fresh_db()
    assert.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = H.project(H.chain(3)) }).code)
    local older = H.project(H.chain(2))
    local r = H.tide({ "auto", "--url", db.url }, { dir = older, env = { AUTO_IMPROVE_DATABASE = "true" } })
    assert.equal(8, r.code)
    assert.matches("applied revision 003, not found in", r.stderr)
  end)
end)

describe("tide test #db", function()
  after_each(H.cleanup)

  local function tide_schema(db)
    return H.sql(db, "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'tide'")[1].n
  end

  it("round-trips complete revisions and leaves the scratch database as it found it, run after run", function()
    local db = H.fresh_db()
    H.sql(db, "CREATE TABLE kept (id int)")
    local dir = H.project(H.chain(3))
    for _ = 1, 2 do
      local r = H.tide({ "test", "--url", db.url }, { dir = dir })
      assert.equal(0, r.code, r.stdout .. r.stderr)
      assert.matches("ok: 3 revisions round%-tripped\n$", r.stdout)
      assert.same({}, H.applied(db))
      assert.same({ "kept" }, H.tables(db))
      assert.equal(0, tide_schema(db))
    end
  end)

  it("says how many revisions round-tripped when one fails, and still leaves the database as found", function()
    local db = H.fresh_db()
    local revs = H.chain(2)
    revs["003_bad.lua"] = H.revision { revision = "003", down_revision = "002", up = "ALTER TABLE nope ADD x int" }
    revs["004_later.lua"] = H.revision { revision = "004", down_revision = "003", up = "CREATE TABLE later ()",
      down_sql = "DROP TABLE later" }
    local dir = H.project(revs)
    local r = H.tide({ "test", "--url", db.url }, { dir = dir })
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.matches("001%s+ok\n002%s+ok\n003%s+upgrade failed\n004%s+not reached\n", r.stdout)
    assert.matches("problem: revision 003 %(.-003_bad.lua:%d+%) failed in upgrade: ERROR 42P01", r.stdout)
    assert.matches("test failed: 2 of 4 revisions round%-tripped, 1 problem\n$", r.stdout)
    assert.same({}, H.applied(db))
    assert.same({}, H.tables(db))
    assert.equal(0, tide_schema(db))
  end)

  it("compares SQL-standard function bodies (BEGIN ATOMIC, RETURN), not their empty prosrc", function()
    local db = H.fresh_db()
    local dir = H.project {
      ["001_f.lua"] = H.revision { revision = "001",
        up = "CREATE FUNCTION answer() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 42; END; "
          .. "CREATE FUNCTION double(x int) RETURNS int LANGUAGE sql RETURN x * 2; "
          .. "CREATE FUNCTION one() RETURNS int LANGUAGE sql IMMUTABLE RETURN 1",
        down_sql = "DROP FUNCTION answer(); DROP FUNCTION double(int); DROP FUNCTION one()" },
      -- the downgrade forgets to put the old bodies back
      ["002_g.lua"] = H.revision { revision = "002", down_revision = "001",
        up = "CREATE OR REPLACE FUNCTION answer() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 43; END; "
          .. "CREATE OR REPLACE FUNCTION double(x int) RETURNS int LANGUAGE sql RETURN x + x; "
          .. "ALTER FUNCTION one() VOLATILE SECURITY DEFINER",
        down_sql = "SELECT 1" },
    }
    local r = H.tide({ "test", "--url", db.url }, { dir = dir })
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.matches("001%s+ok\n002%s+downgrade leaves a trace\n", r.stdout)
    assert.matches("%- function public.answer%(%) %x+", r.stdout)
    assert.matches("%+ function public.answer%(%) %x+", r.stdout)
    assert.matches("%- function public.double%(x integer%) %x+", r.stdout)
    assert.matches("%- function public.one%(%) %x+", r.stdout)
    assert.matches("test failed: 1 of 2 revisions round%-tripped", r.stdout)
    -- 001's downgrade drops both: the database is left as found
    assert.same({}, H.applied(db))
    assert.same({}, H.sql(db, "SELECT proname FROM pg_proc WHERE proname IN ('answer', 'double', 'one')"))
  end)

  it("says so when it cannot leave the database as found: a revision without a downgrade", function()
    local db = H.fresh_db()
    local revs = H.chain(1)
    revs["002_oneway.lua"] = [[
return { revision = "002", down_revision = "001", message = "one way", upgrade = function(db)
  db:exec("CREATE TABLE oneway ()")
end }
]]
    local dir = H.project(revs)
    local r = H.tide({ "test", "--url", db.url }, { dir = dir })
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.matches("001%s+ok\n002%s+no downgrade\n", r.stdout)
    assert.matches("problem: revision 002 %(.-002_oneway.lua%) has no downgrade function\n", r.stdout)
    assert.matches("problem: the scratch database is not as tide test found it: reverting the revisions the test "
      .. "applied failed: revision 002 %(.-002_oneway.lua%) has no downgrade function\n  recreate it before the next "
      .. "run\n", r.stdout)
    assert.matches("test failed: 1 of 2 revisions round%-tripped, 2 problems\n$", r.stdout)
    -- the next run refuses, and says how to empty the database
    r = H.tide({ "test", "--url", db.url }, { dir = dir })
    assert.equal(2, r.code, r.output)
    assert.matches("scratch database with no tide revisions applied", r.stderr)
  end)

  it("reports the first revision whose downgrade leaves a trace, with the difference", function()
    local db = H.fresh_db()
    local revs = H.chain(1)
    revs["002_leaky.lua"] = H.revision { revision = "002", down_revision = "001",
      up = "CREATE TABLE leaky (id int); CREATE INDEX leaky_id ON leaky (id)", down_sql = "DROP INDEX leaky_id" }
    revs["003_later.lua"] = H.revision { revision = "003", down_revision = "002", up = "ALTER TABLE t1 ADD x int",
      down_sql = "SELECT 1" }
    local dir = H.project(revs)
    local r = H.tide({ "test", "--url", db.url }, { dir = dir })
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.matches("002%s+downgrade leaves a trace", r.stdout)
    assert.matches("revision 002 %(.-002_leaky.lua%): the downgrade does not restore the schema", r.stdout)
    assert.matches("%+ relation public.leaky kind r", r.stdout)
    assert.matches("%+ column public.leaky.id integer", r.stdout)
    assert.matches("003%s+not reached\n", r.stdout)
    -- what the leaky downgrade left behind stays (the rest is reverted), and the test says so
    assert.matches("problem: the scratch database is not as tide test found it: its schema differs from before "
      .. "the test %(%- missing, %+ left behind%):\n  %+ column public.leaky.id integer\n  %+ relation public.leaky "
      .. "kind r\n  recreate it before the next run\n", r.stdout)
    assert.matches("test failed: 1 of 3 revisions round%-tripped, 2 problems\n$", r.stdout)
    assert.same({}, H.applied(db))
    assert.same({ "leaky" }, H.tables(db))
  end)

  it("needs --url and an empty scratch database", function()
    local db = H.fresh_db()
    local dir = H.project(H.chain(1))
    local r = H.tide({ "test" }, { dir = dir, env = { DATABASE_URL = db.url }, unset = {} })
    assert.equal(2, r.code)
    assert.matches("needs %-%-url SCRATCH_URL", r.stderr)
    assert.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
    r = H.tide({ "test", "--url", db.url }, { dir = dir })
    assert.equal(2, r.code)
    assert.matches("scratch database with no tide revisions applied", r.stderr)
  end)
end)
