-- spec/dryrun_spec.lua: `upgrade --sql` (an offline script: applied with psql it gives the same
-- schema and the same tracking rows as `upgrade`) and `--dry-run` (runs, reports, rolls back).
local core = require "tide.core"
local H = require "spec.support.helpers"
local schema_snapshot = require "tide.snapshot"

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
local sql = require "tide.sql"
return {
  revision = "002",
  down_revision = "001",
  message = "seed",
  upgrade = function(db)
    local email = sql.literal("o'hara@example.com")
    db:exec("INSERT INTO users (id, email) OVERRIDING SYSTEM VALUE VALUES (1, " .. email .. ")")
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
  return schema_snapshot.read(conn, "tide")
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

  -- The issue's trial: a batched backfill loops on db:query's count until no row changes. A
  -- recording answers 0, so the loop ran once and the script held one UPDATE of 5000 rows.
  local BACKFILL = {
    ["001_orders.lua"] = H.revision { revision = "001", message = "orders",
      up = "CREATE TABLE orders (id int PRIMARY KEY, done boolean); "
        .. "INSERT INTO orders SELECT g FROM generate_series(1, 12000) g", down_sql = "DROP TABLE orders" },
    ["002_backfill.lua"] = [[
return {
  revision = "002",
  down_revision = "001",
  message = "backfill done",
  upgrade = function(db)
    repeat
      local _, n = db:query("UPDATE orders SET done = false WHERE id IN "
        .. "(SELECT id FROM orders WHERE done IS NULL LIMIT 5000)")
    until n == 0
    db:exec("ALTER TABLE orders ALTER done SET NOT NULL")
  end,
  downgrade = function(db)
    db:exec("ALTER TABLE orders ALTER done DROP NOT NULL; UPDATE orders SET done = NULL")
  end,
}
]],
    ["003_read.lua"] = [[
return { revision = "003", down_revision = "002", message = "read", upgrade = function(db)
  local row = db:one("SELECT count(*) AS n FROM orders")
  db:exec("CREATE TABLE r" .. row.n .. " ()")
end }
]],
  }

  it("--sql refuses revisions whose SQL depends on what db:query returns, naming each; writes nothing", function()
    local dir = H.project(BACKFILL)
    local db = H.fresh_db()
    local r = H.tide({ "upgrade", "--sql", "--url", db.url }, { dir = dir })
    assert.equal(6, r.code, r.output)
    assert.equal("", r.stdout)
    assert.matches("tide: cannot write the upgrade script:\n", r.stderr)
    assert.matches("\n  revision 002 %(versions/002_backfill.lua:7%): its SQL depends on what db:query returns there, "
      .. "so no script can hold it\n", r.stderr)
    assert.matches("\n  revision 003 %(versions/003_read.lua:2%): its SQL depends on what db:query returns there",
      r.stderr)
    assert.matches("%-%-mark%-unknown writes the script", r.stderr)
    assert.not_matches("revision 001", r.stderr)
    assert.same({}, H.tables(db))
    assert.same({}, H.applied(db))
    -- the same for a downgrade script
    assert.equal(0, H.tide({ "upgrade", "002", "--url", db.url }, { dir = dir }).code)
    r = H.tide({ "downgrade", "base", "--sql", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.output) -- these downgrades only exec
    assert.same({ "001", "002" }, H.applied(db))
  end)

  it("--sql --mark-unknown writes the script with the revision's place marked, and psql stops there", function()
    local dir = H.project(BACKFILL)
    local db = H.fresh_db()
    local r = H.tide({ "upgrade", "002", "--sql", "--mark-unknown", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.output)
    assert.matches("tide: warning: revision 002 %(versions/002_backfill.lua:7%): its SQL depends on what db:query "
      .. "returns there, so no script can hold it: its place in the script is marked", r.stderr)
    assert.matches("%-%- INCOMPLETE: the statements of revision 002 cannot be known", r.stdout)
    assert.matches("%-%- revision 002: backfill done .-\nBEGIN;\n.-%-%- tide: UNKNOWN STATEMENTS of revision 002 "
      .. "%(upgrade%)", r.stdout)
    -- what the recording saw is there as comments, not as statements
    assert.matches("\n%-%-   UPDATE orders SET done = false", r.stdout)
    assert.not_matches("\nUPDATE orders", r.stdout)
    assert.not_matches("\nALTER TABLE orders ALTER done SET NOT NULL", r.stdout)
    local file = H.tmpdir() .. "/up.sql"
    H.write(file, r.stdout)
    local ok, output = psql(db, file)
    assert.is_falsy(ok, output)
    assert.matches("tide: the statements of revision 002 %(upgrade%) are not in this script", output)
    -- 001 ran and is recorded; nothing of 002
    assert.same({ "001" }, H.applied(db))
    assert.same({ { n = 12000 } }, H.sql(db, "SELECT count(*)::int AS n FROM orders WHERE done IS NULL"))
    -- tide itself runs it whole
    r = H.tide({ "upgrade", "002", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.output)
    assert.same({ { n = 0 } }, H.sql(db, "SELECT count(*)::int AS n FROM orders WHERE done IS NULL"))
  end)

  it("--sql refuses a revision that cannot run, with file and line", function()
    local dir = H.project {
      ["001_typo.lua"] = [[
local schema = require "tide.schema"
return { revision = "001", message = "typo", upgrade = function(db)
  schema.create_table(db, "t", { columns = { { "id", "bigint", refrences = "users" } } })
end }
]],
    }
    local db = H.fresh_db()
    local r = H.tide({ "upgrade", "--sql", "--url", db.url }, { dir = dir })
    assert.equal(6, r.code, r.output)
    assert.equal("", r.stdout)
    assert.matches("\n  revision 001 %(versions/001_typo.lua:3%) cannot run: unknown option `refrences`", r.stderr)
    assert.not_matches("%-%-mark%-unknown", r.stderr)
    r = H.tide({ "upgrade", "--sql", "--mark-unknown", "--url", db.url }, { dir = dir })
    assert.equal(6, r.code, r.output)
  end)

  it("--sql stores no source text in its bookkeeping unless --embed-sources", function()
    local dir = H.project(REVS)
    local db = H.fresh_db()
    local r = H.tide({ "upgrade", "001", "--sql", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.output)
    assert.not_matches("schema.create_table", r.stdout, nil, true)
    r = H.tide({ "upgrade", "001", "--sql", "--embed-sources", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.output)
    assert.truthy(r.stdout:find('local schema = require "tide.schema"', 1, true), r.stdout)
    -- applied from a script without sources, an edited file is still drift, said plainly
    r = H.tide({ "upgrade", "001", "--sql", "--url", db.url }, { dir = dir })
    local file = H.tmpdir() .. "/up.sql"
    H.write(file, r.stdout)
    local ok, output = psql(db, file)
    assert.is_true(ok, output)
    H.write(dir .. "/versions/001_users.lua", REVS["001_users.lua"] .. "-- edited\n")
    r = H.tide({ "check", "--url", db.url }, { dir = dir })
    assert.equal(1, r.code, r.output)
    assert.matches("revision 001 %(versions/001_users.lua%) changed since it was applied on .-its source was not "
      .. "stored when it was applied %(an `upgrade %-%-sql` script made without %-%-embed%-sources%)", r.stdout)
  end)

  it("refuses --mark-unknown and --embed-sources without --sql (exit 2)", function()
    local dir = H.project(REVS)
    for _, flag in ipairs { "--mark-unknown", "--embed-sources" } do
      local r = H.tide({ "upgrade", flag, "--url", "postgresql://nobody@127.0.0.1:1/none" }, { dir = dir })
      assert.equal(2, r.code, r.output)
      assert.matches("tide: " .. flag:gsub("%-", "%%-") .. " only applies to a script: add %-%-sql", r.stderr)
    end
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
