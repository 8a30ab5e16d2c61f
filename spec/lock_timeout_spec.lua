-- spec/lock_timeout_spec.lua: a revision's lock timeouts, retried with backoff (tide.runner),
-- against the sandbox server. (The tracking schema's in-place upgrade is in track_spec.lua.)
local core = require "tide.core"
local H = require "spec.support.helpers"

local function revs_with_alter(extra)
  local revs = H.chain(1)
  revs["002_alter.lua"] = H.revision {
    revision = "002",
    down_revision = "001",
    up = "ALTER TABLE t1 ADD COLUMN x int",
    down_sql = "ALTER TABLE t1 DROP COLUMN x",
    extra = extra,
  }
  return revs
end

-- A session holding ACCESS SHARE on t1 in an open transaction: ALTER TABLE t1 must wait for it.
local function blocker(db)
  local conn = core.connect(db.url, "blocker-app")
  conn:exec("BEGIN; LOCK TABLE t1 IN ACCESS SHARE MODE; SELECT 'blocking' AS what")
  return conn
end

describe("tide.runner #db lock timeouts", function()
  after_each(H.cleanup)

  it("retries a revision that hits lock_timeout and applies it once the blocker ends", function()
    local db = H.fresh_db()
    local dir = H.project(revs_with_alter('lock_timeout = "100ms",'))
    assert.equal(0, H.tide({ "upgrade", "001", "--url", db.url }, { dir = dir }).code)
    local b = blocker(db)
    local run = H.spawn({ "upgrade", "--url", db.url, "--lock-retries", "6" }, { dir = dir })
    core.sleep(1.2)
    b:exec("COMMIT")
    b:close()
    local r = run.wait()
    assert.equal(0, r.code, r.stderr)
    assert.matches("lock timeout after 100ms %(attempt 1 of 7%), blocked by pid %d+ "
      .. "%(application_name \"blocker%-app\"",
      r.stderr)
    assert.matches("holds AccessShareLock on t1", r.stderr)
    assert.same({ "001", "002" }, H.applied(db))
    -- every failed attempt is in history
    local failed = H.sql(db, "SELECT count(*)::int AS n FROM tide.history "
      .. "WHERE outcome = 'failed' AND sqlstate = '55P03'")
    assert.is_true(failed[1].n >= 1)
  end)

  it("gives up after --lock-retries and names the blocker (pid, application_name, query)", function()
    local db = H.fresh_db()
    local dir = H.project(revs_with_alter())
    assert.equal(0, H.tide({ "upgrade", "001", "--url", db.url }, { dir = dir }).code)
    local b = blocker(db)
    local pid = b:info().pid
    local r = H.tide({ "upgrade", "--url", db.url, "--lock-timeout", "50ms", "--lock-retries", "1" }, { dir = dir })
    b:exec("ROLLBACK")
    b:close()
    assert.equal(6, r.code)
    assert.matches("ERROR 55P03", r.stderr)
    assert.matches("gave up after 2 attempts; blocked by pid " .. pid .. " %(application_name \"blocker%-app\"",
      r.stderr)
    assert.matches("SELECT 'blocking' AS what", r.stderr, 1, true)
    assert.same({ "001" }, H.applied(db))
    assert.same({ "id" }, (function()
      local cols = {}
      local sql = "SELECT attname FROM pg_attribute WHERE attrelid = 't1'::regclass AND attnum > 0"
      for _, row in ipairs(H.sql(db, sql)) do
        cols[#cols + 1] = row.attname
      end
      return cols
    end)())
  end)

  it("retries a stepped CREATE INDEX CONCURRENTLY that waited too long for an older transaction", function()
    local db = H.fresh_db()
    local revs = H.chain(1)
    revs["002_cic.lua"] = [[
return { revision = "002", down_revision = "001", message = "cic", transaction = false, lock_timeout = "100ms",
  upgrade = function(db)
    db:step("index", function(db) db:exec("CREATE INDEX CONCURRENTLY t1_id ON t1 (id)") end)
  end }
]]
    local dir = H.project(revs)
    assert.equal(0, H.tide({ "upgrade", "001", "--url", db.url }, { dir = dir }).code)
    local b = core.connect(db.url, "old-transaction")
    b:exec("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class") -- holds a snapshot
    local run = H.spawn({ "upgrade", "--url", db.url, "--lock-retries", "8" }, { dir = dir })
    core.sleep(1.2)
    b:exec("COMMIT")
    b:close()
    local r = run.wait()
    assert.equal(0, r.code, r.stderr)
    assert.matches("blocked by pid %d+ %(application_name \"old%-transaction\", .-in a transaction open since",
      r.stderr)
    assert.same({ { valid = true } }, H.sql(db, "SELECT indisvalid AS valid FROM pg_index "
      .. "WHERE indexrelid = 't1_id'::regclass"))
    assert.same({ "001", "002" }, H.applied(db))
  end)

  it("sets lock_timeout only after tide's own lock is held (a per-revision value wins over the default)", function()
    local db = H.fresh_db()
    local revs = H.chain(1)
    revs["002_show.lua"] = [[
return { revision = "002", down_revision = "001", message = "show", lock_timeout = "1234ms",
  statement_timeout = "1min",
  upgrade = function(db)
    local row = db:one("SELECT current_setting('lock_timeout') AS lt, current_setting('statement_timeout') AS st")
    db:exec("CREATE TABLE seen (lt text, st text)")
    db:query("INSERT INTO seen VALUES ($1, $2)", row.lt, row.st)
  end }
]]
    local dir = H.project(revs)
    local r = H.tide({ "upgrade", "--url", db.url, "--lock-timeout", "3s" }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.same({ { lt = "1234ms", st = "1min" } }, H.sql(db, "SELECT lt, st FROM seen"))
  end)

  it("rejects a --lock-retries that is not a whole number", function()
    local dir = H.project(H.chain(1))
    local r = H.tide({ "upgrade", "--url", H.url("postgres"), "--lock-retries", "many" }, { dir = dir })
    assert.equal(2, r.code)
    assert.matches("%-%-lock%-retries needs a whole number", r.stderr)
  end)
end)
