-- spec/steps_spec.lua: non-transactional revisions (transaction = false): CREATE INDEX
-- CONCURRENTLY with tide's lock held, db:step checkpoints, resume after a failure and after a
-- kill, status of a partial revision, other revisions waiting, `tide resolve`, and the INVALID
-- leftover of an interrupted CREATE INDEX CONCURRENTLY.
local core = require "tide.core"
local H = require "spec.support.helpers"

-- A revision file (upgrade body given as Lua) with transaction = false.
local function nontx(id, parent, body, down)
  return string.format([[
return {
  revision = %q,
  down_revision = %s,
  message = "nontx %s",
  transaction = false,
  upgrade = function(db)
%s
  end,
  downgrade = function(db)
%s
  end,
}
]], id, parent and string.format("%q", parent) or "nil", id, body, down or "    db:exec('SELECT 1')")
end

local STEPPED = [[
    db:step("create", function(db) db:exec("CREATE TABLE s (id int, v int)") end)
    db:step("fill", function(db) db:exec("INSERT INTO s SELECT g, g FROM generate_series(1, 100) g") end)
    db:step("index", function(db)
      db:exec("SELECT pg_sleep(CASE WHEN to_regclass('public.go') IS NULL THEN 30 ELSE 0 END)")
      db:exec("CREATE INDEX CONCURRENTLY s_v ON s (v)")
    end)
]]

-- Starts tide with exec, so the pid is tide's own (for kill -9).
local function spawn_exec(args, dir)
  local out = os.tmpname()
  local parts = { "cd", H.shell_quote(dir), "&&", "unset DATABASE_URL;", "exec", H.shell_quote(H.bin) }
  for _, a in ipairs(args) do
    parts[#parts + 1] = H.shell_quote(a)
  end
  local p = assert(io.popen("(" .. table.concat(parts, " ") .. ") >" .. out .. " 2>&1 & echo $!", "r"))
  local pid = tonumber(p:read("l"))
  p:close()
  return pid, out
end

local function wait_for(db, sql, seconds)
  local deadline = core.now() + (seconds or 20)
  while core.now() < deadline do
    local ok, rows = pcall(H.sql, db, sql)
    if ok and rows[1] and rows[1].ok then
      return true
    end
    core.sleep(0.05)
  end
  error("timed out waiting for: " .. sql, 2)
end

describe("tide.runner #db transaction = false", function()
  after_each(H.cleanup)

  it("runs CREATE INDEX CONCURRENTLY outside a transaction while tide holds its lock", function()
    local db = H.fresh_db()
    local revs = H.chain(1)
    revs["002_cic.lua"] = nontx("002", "001", [[
    db:exec("CREATE INDEX CONCURRENTLY t1_id ON t1 (id)")
    local schema = require "tide.schema"
    schema.create_index(db, "t1", "id", { name = "t1_id2", concurrently = true })
]])
    local dir = H.project(revs)
    local r = H.tide({ "upgrade", "--url", db.url, "--lock-wait", "5" }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.same({ { n = 2 } }, H.sql(db, "SELECT count(*)::int AS n FROM pg_index i JOIN pg_class c "
      .. "ON c.oid = i.indexrelid WHERE c.relname IN ('t1_id', 't1_id2') AND i.indisvalid"))
    assert.same({ "001", "002" }, H.applied(db))
  end)

  it("sends the statements of one db:exec one at a time, so CONCURRENTLY works in a multi-statement string", function()
    local db = H.fresh_db()
    local dir = H.project { ["001_m.lua"] = nontx("001", nil, [[
    db:exec("CREATE TABLE m (id int); CREATE INDEX CONCURRENTLY m_id ON m (id); SELECT 'a;b'")
]]) }
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.same({ "m" }, H.tables(db))
  end)

  it("a partially reverted revision resumes its downgrade steps, and blocks other runs meanwhile", function()
    local db = H.fresh_db()
    local revs = H.chain(1)
    revs["002_steps.lua"] = nontx("002", "001", [[
    db:step("x", function(db) db:exec("CREATE TABLE dx ()") end)
    db:step("y", function(db) db:exec("CREATE TABLE dy ()") end)
]], [[
    db:step("drop y", function(db) db:exec("DROP TABLE dy") end)
    db:step("drop x", function(db) db:exec("SELECT 1 FROM public.gate; DROP TABLE dx") end)
]])
    local dir = H.project(revs)
    assert.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
    local r = H.tide({ "downgrade", "001", "--no-backup", "--url", db.url }, { dir = dir })
    assert.equal(6, r.code)
    local st = H.tide({ "status", "--url", db.url }, { dir = dir })
    assert.matches('partially reverted: 1/2 steps, failed at step "drop x"', st.stdout)
    r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(6, r.code)
    assert.matches("other revisions wait until it is settled: rerun `tide downgrade`", r.stderr)
    H.sql(db, "CREATE TABLE public.gate ()")
    r = H.tide({ "downgrade", "001", "--no-backup", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.matches('step "drop y" finished in an earlier run: skipped', r.stderr)
    assert.same({ "001" }, H.applied(db))
    assert.same({ "gate", "t1" }, H.tables(db))
  end)

  it("resumes after the last finished step when rerun after a failure; status shows where it stopped", function()
    local db = H.fresh_db()
    local revs = H.chain(1)
    revs["002_steps.lua"] = nontx("002", "001", [[
    db:step("a", function(db) db:exec("CREATE TABLE a_done (n int)"); db:exec("INSERT INTO a_done VALUES (1)") end)
    db:step("b", function(db) db:exec("INSERT INTO a_done SELECT 1 / (SELECT count(*) FROM fixed)::int") end)
    db:step("c", function(db) db:exec("CREATE TABLE c_done ()") end)
]])
    revs["003_after.lua"] = H.revision { revision = "003", down_revision = "002", up = "CREATE TABLE after3 ()" }
    local dir = H.project(revs)
    H.sql(db, "CREATE TABLE fixed (x int)")
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(6, r.code)
    assert.matches("ERROR 22012", r.stderr)
    assert.matches("NOT rolled back", r.stderr)
    assert.same({ "001" }, H.applied(db))
    local st = H.tide({ "status", "--url", db.url }, { dir = dir })
    assert.matches('%[~%] 002 .*partially applied: 1/3 steps, failed at step "b" with error ERROR 22012', st.stdout)
    assert.matches("%[ %] 003", st.stdout)
    -- other revisions wait: a downgrade is refused while 002 is partial
    local down = H.tide({ "downgrade", "base", "--url", db.url }, { dir = dir })
    assert.equal(6, down.code)
    assert.matches("other revisions wait until it is settled", down.stderr)
    assert.matches("tide resolve 002", down.stderr)
    -- fix the cause and rerun: step a is not repeated (a_done keeps one row)
    H.sql(db, "INSERT INTO fixed VALUES (1)")
    r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.matches('step "a" finished in an earlier run: skipped', r.stderr)
    assert.same({ { n = 2 } }, H.sql(db, "SELECT count(*)::int AS n FROM a_done"))
    assert.same({ "001", "002", "003" }, H.applied(db))
    assert.same({ { n = 0 } }, H.sql(db, "SELECT count(*)::int AS n FROM tide.step"))
  end)

  it("resumes after a kill -9 in the middle of a step, dropping the INVALID index left behind", function()
    local db = H.fresh_db()
    local revs = H.chain(1)
    revs["002_steps.lua"] = nontx("002", "001", STEPPED)
    local dir = H.project(revs)
    local pid = spawn_exec({ "upgrade", "--url", db.url }, dir)
    wait_for(db, "SELECT count(*) = 2 AS ok FROM tide.step WHERE revision = '002'")
    wait_for(db, "SELECT count(*) > 0 AS ok FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(CASE%'")
    assert(os.execute("kill -9 " .. pid))
    -- the server notices the dead client only when it next writes: end its backends for it
    H.sql(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
      .. "AND application_name = 'tide' AND pid <> pg_backend_pid()")
    local st = H.tide({ "status", "--url", db.url }, { dir = dir })
    assert.matches("partially applied: 2/3 steps, interrupted", st.stdout)
    -- leave an INVALID index of the same name, as a killed CREATE INDEX CONCURRENTLY does
    H.sql(db, "INSERT INTO s VALUES (1, 1)")
    pcall(H.sql, db, "CREATE UNIQUE INDEX CONCURRENTLY s_v ON s (v)")
    local valid = "SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = 's_v'::regclass"
    assert.same({ { valid = false } }, H.sql(db, valid))
    H.sql(db, "CREATE TABLE public.go ()") -- ($user is the schema tide here)
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.matches('step "create" finished in an earlier run: skipped', r.stderr)
    assert.matches("dropping the INVALID index", r.stderr)
    assert.same({ { n = 101 } }, H.sql(db, "SELECT count(*)::int AS n FROM s"))
    assert.same({ { valid = true } }, H.sql(db, valid))
    assert.same({ "001", "002" }, H.applied(db))
  end)

  it("`tide resolve` records the operator's decision, with who and why, in history", function()
    local db = H.fresh_db()
    local revs = H.chain(1)
    revs["002_steps.lua"] = nontx("002", "001", [[
    db:step("a", function(db) db:exec("CREATE TABLE r_a ()") end)
    db:step("b", function(db) db:exec("SELECT * FROM missing_table") end)
]])
    local dir = H.project(revs)
    assert.equal(6, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
    local bad = H.tide({ "resolve", "002", "--applied", "--url", db.url }, { dir = dir })
    assert.equal(2, bad.code)
    assert.matches("needs %-%-reason", bad.stderr)
    local nothing = H.tide({ "resolve", "001", "--applied", "--reason", "x", "--url", db.url }, { dir = dir })
    assert.equal(2, nothing.code)
    assert.matches("not partially applied", nothing.stderr)
    local r = H.tide({ "resolve", "002", "--reverted", "--reason", "dropped r_a by hand", "--url", db.url },
      { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.matches("resolved 002 as reverted", r.stdout)
    assert.same({ "001" }, H.applied(db))
    local h = H.sql(db, "SELECT direction, outcome, note, os_user, db_user FROM tide.history "
      .. "WHERE direction = 'resolve'")
    assert.equal(1, #h)
    assert.same({ "resolve", "reverted", "dropped r_a by hand" }, { h[1].direction, h[1].outcome, h[1].note })
    assert.is_true(#h[1].os_user > 0 and #h[1].db_user > 0)
    -- and --applied on a new failure
    assert.equal(6, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
    r = H.tide({ "resolve", "002", "--applied", "--reason", "created missing_table step by hand", "--url", db.url },
      { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.same({ "001", "002" }, H.applied(db))
    assert.equal("nothing to do", H.tide({ "upgrade", "--url", db.url }, { dir = dir }).stdout:match("nothing to do"))
  end)
end)
