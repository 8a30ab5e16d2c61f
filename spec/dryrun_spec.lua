-- spec/dryrun_spec.lua: `upgrade --sql` (an offline script: applied with psql it gives the same
-- schema and the same tracking rows as `upgrade`) and `--dry-run` (runs, reports, rolls back).
local core = require "tide.core"
local H = require "spec.support.helpers"
local safety = require "tide.safety"

local REVS = {
  ["001_users.lua"] = [[
local schema = require "tide.schema"
return {
  revision = "001",
  message = "users",
  upgrade = function(db)
    schema.create_table(db, "users", { columns = {
      { "id", "bigint", identity = "always", primary_key = true },
      { "email", "text", not_null = true },
    } })
    db:exec("COMMENT ON TABLE users IS 'it''s -- not a comment; really'")
  end,
  downgrade = function(db)
    schema.drop_table(db, "users")
  end,
}
]],
  ["002_seed.lua"] = [[
return {
  revision = "002",
  down_revision = "001",
  message = "seed",
  upgrade = function(db)
    db:query("INSERT INTO users (id, email) OVERRIDING SYSTEM VALUE VALUES ($1, $2)", 1, "o'hara@example.com")
    db:exec("CREATE FUNCTION users_count() RETURNS bigint LANGUAGE sql AS $f$ SELECT count(*) FROM users; $f$")
  end,
  downgrade = function(db)
    db:exec("DROP FUNCTION users_count(); DELETE FROM users")
  end,
}
]],
  ["003_index.lua"] = [[
return {
  revision = "003",
  down_revision = "002",
  message = "index",
  transaction = false,
  upgrade = function(db)
    db:step("email", function(db) db:exec("CREATE INDEX CONCURRENTLY users_email ON users (email)") end)
  end,
  downgrade = function(db)
    db:exec("DROP INDEX CONCURRENTLY users_email")
  end,
}
]],
}

local function snapshot(db)
  local conn <close> = core.connect(db.url)
  return safety.snapshot(conn, "tide")
end

local function psql(db, file)
  local cmd = string.format("psql -X -q -v ON_ERROR_STOP=1 -d %s -f %s 2>&1", H.shell_quote(db.url),
    H.shell_quote(file))
  local p = assert(io.popen(cmd))
  local output = p:read("a")
  local ok = p:close()
  return ok, output
end

describe("dry runs #db", function()
  after_each(H.cleanup)

  it("--sql writes a script in UTF-8 that says so: psql with PGCLIENTENCODING=SJIS applies it as written", function()
    -- the UTF-8 bytes of "ā" end in a Shift-JIS lead byte, which would swallow the escaping after it
    local message = "\u{101}\\ and \u{101}' \u{8868}"
    local dir = H.project { ["001_a.lua"] = H.revision { revision = "001", message = message,
      up = "CREATE TABLE t (id int)" } }
    local db = H.fresh_db()
    local r = H.tide({ "upgrade", "--sql", "--url", db.url }, { dir = dir, env = { PGCLIENTENCODING = "SJIS" } })
    assert.equal(0, r.code, r.stderr)
    local file = H.tmpdir() .. "/up.sql"
    H.write(file, r.stdout)
    local p = assert(io.popen(string.format("PGCLIENTENCODING=SJIS psql -X -q -v ON_ERROR_STOP=1 -d %s -f %s 2>&1",
      H.shell_quote(db.url), H.shell_quote(file))))
    local output = p:read("a")
    assert.is_true(p:close(), output)
    assert.equal(message, H.sql(db, "SELECT message FROM tide.revision")[1].message)
  end)

  it("--sql prints a script that psql applies to the same schema and tracking rows as upgrade", function()
    local dir = H.project(REVS)
    local a, b = H.fresh_db(), H.fresh_db()
    local r = H.tide({ "upgrade", "--sql", "--url", b.url }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.matches("%-%- tide bookkeeping", r.stdout)
    assert.matches("%-%- revision 003: index .-\n%-%- transaction = false", r.stdout)
    -- nothing changed on the database the script was planned from
    assert.same({}, H.tables(b))
    assert.same({}, H.applied(b))
    local file = H.tmpdir() .. "/up.sql"
    H.write(file, r.stdout)
    local ok, output = psql(b, file)
    assert.is_true(ok, output)
    assert.equal(0, H.tide({ "upgrade", "--url", a.url }, { dir = dir }).code)
    assert.same(snapshot(a), snapshot(b))
    assert.same(H.applied(a), H.applied(b))
    assert.same({ { email = "o'hara@example.com" } }, H.sql(b, "SELECT email FROM users"))
    -- the script's bookkeeping is tide's own: the next run has nothing to do and nothing drifted
    assert.matches("nothing to do", H.tide({ "upgrade", "--url", b.url }, { dir = dir }).stdout)
    assert.equal(0, H.tide({ "check", "--url", b.url }, { dir = dir }).code)
    -- and a downgrade script reverts it
    r = H.tide({ "downgrade", "base", "--sql", "--url", b.url }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    H.write(file, r.stdout)
    ok, output = psql(b, file)
    assert.is_true(ok, output)
    assert.same({}, H.tables(b))
    assert.same({}, H.applied(b))
  end)

  it("--sql fails on a revision that reads data, saying so", function()
    local dir = H.project {
      ["001_read.lua"] = [[
return { revision = "001", message = "read", upgrade = function(db)
  local row = db:one("SELECT count(*) AS n FROM pg_class")
  db:exec("CREATE TABLE r (n int)")
end }
]],
    }
    local db = H.fresh_db()
    local r = H.tide({ "upgrade", "--sql", "--url", db.url }, { dir = dir })
    assert.equal(6, r.code)
    assert.matches("revision 001 %(.-001_read.lua%): revision 001 reads data", r.stderr)
    assert.matches("offline SQL script cannot do", r.stderr)
    assert.same({}, H.tables(db))
  end)

  it("--dry-run runs the revisions, reports their time, lists transaction = false as skipped", function()
    local dir = H.project(REVS)
    local db = H.fresh_db()
    local before = snapshot(db)
    local r = H.tide({ "upgrade", "--dry-run", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.matches("dry run: applied 2 revisions to head in %d+ ms, then rolled back: 001, 002", r.stdout)
    assert.matches("003%s+skipped%s+index %(transaction = false%)", r.stdout)
    assert.same(before, snapshot(db))
    assert.same({}, H.applied(db))
    assert.same({ { n = 0 } }, H.sql(db, "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'tide'"))
    local j = H.tide({ "upgrade", "--dry-run", "--json", "--url", db.url }, { dir = dir })
    assert.equal(0, j.code, j.stderr)
    local result = require("tide.json").decode(j.stdout)
    assert.is_true(result.dry_run)
    assert.is_true(result.revisions[3].skipped)
  end)

  it("--dry-run reports a failing revision and still leaves nothing", function()
    local revs = H.chain(2)
    revs["003_bad.lua"] = H.revision { revision = "003", down_revision = "002", up = "ALTER TABLE nope ADD x int" }
    local dir = H.project(revs)
    local db = H.fresh_db()
    local r = H.tide({ "upgrade", "--dry-run", "--url", db.url }, { dir = dir })
    assert.equal(6, r.code)
    assert.matches("revision 003 .- failed in upgrade: ERROR 42P01", r.stderr)
    assert.matches("rolled back, with every revision of this %-%-dry%-run", r.stderr)
    assert.same({}, H.tables(db))
  end)
end)
