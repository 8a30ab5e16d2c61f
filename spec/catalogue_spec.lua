-- The bad input catalogue: every failure a user can cause, with the exit code and the message
-- README.md's "Bad input catalogue" table promises, and a check that the database is exactly as
-- it was (tables, tide's state rows and history, schemas). The README table and CASES must
-- list the same cases: the first spec below holds them to each other. CATALOGUE_PRINT=1 prints
-- each case's exit code and first line, for writing the table.
local H = require "spec.support.helpers"
local core = require "tide.core"

local function rev(id, parent, up)
  return H.revision { revision = id, down_revision = parent, up = up or ("CREATE TABLE t" .. id .. " (id int)") }
end

local GOOD = { ["001_a.lua"] = rev("001"), ["002_b.lua"] = rev("002", "001") }

local function with(extra)
  local files = {}
  for k, v in pairs(GOOD) do
    files[k] = v
  end
  for k, v in pairs(extra) do
    files[k] = v or nil
  end
  return files
end

-- Everything a failed run must leave as it was.
local function snapshot(db)
  local s = {
    tables = table.concat(H.tables(db), ","),
    schemas = H.sql(db, "SELECT string_agg(nspname, ',' ORDER BY nspname) AS s FROM pg_namespace "
      .. "WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'")[1].s,
  }
  if H.sql(db, "SELECT to_regclass('tide.revision') IS NOT NULL AS p")[1].p then
    s.state = H.sql(db, "SELECT string_agg(revision || ':' || checksum, ',' ORDER BY revision) AS s "
      .. "FROM tide.revision")[1].s
    s.history = H.sql(db, "SELECT count(*) AS n FROM tide.history")[1].n
  end
  return s
end

-- Each case: files of the project (nil: GOOD), optional tide.lua, what to run before (applied
-- with a good project), the arguments (the URL is added unless `url` is given), a setup that
-- may return a cleanup, and a check(db, result, snapshot before) of what the case promises
-- beyond the message (the failure's history row, no password in the output).
local CASES = {
  { id = "syntax-error",
    files = with { ["003_c.lua"] = "return {\n  revision = \"003\",\n  message = 'x' 'y' +\n}\n" } },
  { id = "unknown-key", files = with { ["003_c.lua"] = rev("003", "002"):gsub("down_revision", "down_revison") } },
  { id = "missing-field", files = with { ["003_c.lua"] = "return { revision = '003', down_revision = '002', "
    .. "message = 'm' }\n" } },
  { id = "not-a-table", files = with { ["003_c.lua"] = "return 42\n" } },
  { id = "duplicate-id", files = with { ["003_c.lua"] = rev("002", "001") } },
  { id = "unknown-parent", files = with { ["003_c.lua"] = rev("003", "0002") } },
  { id = "cycle", files = { ["001_a.lua"] = rev("001", "002"), ["002_b.lua"] = rev("002", "001") } },
  { id = "several-heads", files = with { ["003_c.lua"] = rev("003", "001") } },
  { id = "unknown-target", args = { "upgrade", "nope" } },
  { id = "ambiguous-target", files = with { ["010_c.lua"] = rev("010", "002") }, args = { "upgrade", "0" } },
  { id = "unknown-command", args = { "upgrad" } },
  { id = "unknown-flag", args = { "upgrade", "--singel-transaction" } },
  { id = "script-needs-data", args = { "upgrade", "--sql" }, files = with { ["003_c.lua"] = "return { revision = "
    .. "'003', down_revision = '002', message = 'm', upgrade = function(db)\n  repeat\n    local _, n = "
    .. "db:query('DELETE FROM t001 WHERE ctid IN (SELECT ctid FROM t001 LIMIT 100)')\n  until n == 0\nend }\n" } },
  { id = "bad-config", tide_lua = "return { ulr = 'x' }\n" },
  { id = "bad-url", url = "postgresql://tide@127.0.0.1:%zz/db" },
  { id = "wrong-password", url = function(db)
    return H.url(db.name, os.getenv("PGUSER"), "not-the-password") .. "?passfile=/dev/null"
  end, check = function(_, r)
    assert.falsy(r.output:find("not-the-password", 1, true), r.output)
  end },
  { id = "server-down", url = function()
    return H.url("postgres", os.getenv("PGUSER")):gsub(":%d+/", ":" .. H.closed_port() .. "/")
  end },
  { id = "unknown-database", url = function()
    return H.url("tide_no_such_database")
  end },
  { id = "lock-held", args = { "upgrade", "--lock-wait", "1" }, setup = function(db)
    local holder = core.connect(db.url, "catalogue-holder")
    holder:query("SELECT pg_advisory_lock(hashtextextended('tide:tide', 0))")
    return function()
      holder:close()
    end
  end },
  { id = "database-ahead", before = with { ["003_c.lua"] = rev("003", "002") } },
  { id = "edited-applied-file", before = GOOD, files = with {
    ["001_a.lua"] = rev("001", nil, "CREATE TABLE t001 (id bigint)"), ["003_c.lua"] = rev("003", "002") } },
  { id = "upload-refused", files = with { ["003_c.lua"] = rev("003", "002") }, before = GOOD,
    tide_lua = function()
      return string.format("return { backup = { to = 'http://127.0.0.1:%d/backups/', deadline = 2, "
        .. "max_attempts = 2 } }\n", H.closed_port())
    end },
  { id = "backup-folder-missing", files = with { ["003_c.lua"] = rev("003", "002") }, before = GOOD,
    tide_lua = function()
      return string.format("return { backup = { to = 'file://%s/not/mounted/' } }\n", H.tmpdir())
    end },
  { id = "plaintext-credentials", files = with { ["003_c.lua"] = rev("003", "002") }, before = GOOD,
    tide_lua = "return { backup = { to = 'http://backup.example.invalid/db/', "
      .. "headers = { ['X-Api-Key'] = 'k' } } }\n" },
  { id = "disk-full", files = with { ["003_c.lua"] = rev("003", "002") }, before = GOOD, root = true,
    setup = function(_, dir)
      local mnt = dir .. "/full"
      assert(os.execute("mkdir -p " .. H.shell_quote(mnt) .. " " .. H.shell_quote(dir .. "/backups")))
      assert(os.execute("mount -t tmpfs -o size=64k tide-catalogue " .. H.shell_quote(mnt)))
      H.write(dir .. "/tide.lua", string.format("return { backup = { to = 'file://%s/backups/', tmp_dir = %q } }\n",
        dir, mnt))
      return function()
        os.execute("umount " .. H.shell_quote(mnt))
      end
    end },
  { id = "revision-fails", files = with { ["003_c.lua"] = rev("003", "002", "SELECT 1/0") }, before = GOOD,
    changes = true, check = function(db, _, before)
      -- exactly one new history row: the failure, with its SQLSTATE
      local rows = H.sql(db, "SELECT revision, direction, outcome, sqlstate, error FROM tide.history "
        .. "ORDER BY id OFFSET $1", before.history)
      assert.are.equal(1, #rows)
      assert.are.same({ "003", "upgrade", "failed", "22012" },
        { rows[1].revision, rows[1].direction, rows[1].outcome, rows[1].sqlstate })
      assert.matches("division by zero", rows[1].error)
    end },
  { id = "empty-target", args = { "upgrade", "" } },
  { id = "negative-retries", args = { "upgrade", "--lock-retries", "-1" } },
  { id = "bad-limit", before = GOOD, args = { "history", "--applied", "--limit", "-1" } },
  { id = "ends-transaction", before = GOOD, changes = true,
    files = with { ["003_c.lua"] = rev("003", "002", "CREATE TABLE c (id int); COMMIT") } },
  { id = "endless-revision", files = with { ["003_c.lua"] = "while true do end\n" } },
  { id = "endless-config", tide_lua = "while true do end\n" },
  { id = "long-target", args = { "upgrade", string.rep("z", 100 * 1024) } },
  { id = "bad-parameter", before = GOOD, changes = true, files = with {
    ["003_c.lua"] = H.revision { revision = "003", down_revision = "002", up = "CREATE TABLE t003 (id int)" }
      :gsub('db:exec%("CREATE TABLE t003 %(id int%)"%)', 'db:exec("CREATE TABLE t003 (id int)")\n    '
        .. 'db:query("SELECT $1::int", {})') } },
  { id = "no-dev-database", before = GOOD, args = { "diff", "--from", "base", "--to", "head" } },
  { id = "bad-rename-hint", before = GOOD, args = { "diff", "--from", "001", "--to", "head", "--dev-url",
    H.url("postgres"), "--rename", "nosuch=t9" } },
  { id = "autogenerate-without-target", before = GOOD, args = { "new", "x", "--autogenerate" } },
}

-- The README's table: | `id` | what | exit | `` message (plain text) `` | what changed |
local function readme_rows()
  local readme = H.read(H.source_dir .. "/README.md")
  local section = readme:match("\n## Bad input catalogue\n(.-)\n## ")
  assert(section, "README.md has no \"Bad input catalogue\" section")
  local rows = {}
  for id, exit, message in section:gmatch("\n| `([%w-]+)` |[^|]*| (%d+) | `` (.-) `` |") do
    rows[id] = { exit = tonumber(exit), message = message }
  end
  return rows
end

describe("the bad input catalogue #db", function()
  local rows = readme_rows()
  after_each(H.cleanup)

  it("lists in README.md exactly the cases this spec runs", function()
    local ids = {}
    for _, c in ipairs(CASES) do
      ids[c.id] = true
      assert.is_not_nil(rows[c.id], "README.md lacks case " .. c.id)
    end
    for id in pairs(rows) do
      assert.is_true(ids[id] == true, "README.md lists " .. id .. " but no spec runs it")
    end
  end)

  for _, c in ipairs(CASES) do
    it(c.id .. ": the README's exit code and message, and nothing changed", function()
      if c.root and io.popen("id -u"):read("l") ~= "0" then
        pending("mounting a tmpfs needs root (CI runs as root)")
        return
      end
      local expected = rows[c.id] or { exit = -1, message = "(not in README.md)" }
      local db = H.fresh_db()
      if c.before then
        local r = H.tide({ "upgrade", "heads", "--url", db.url }, { dir = H.project(c.before) })
        assert.are.equal(0, r.code, r.output)
      end
      local tide_lua = type(c.tide_lua) == "function" and c.tide_lua() or c.tide_lua
      local dir = H.project(c.files or GOOD, tide_lua)
      local cleanup = c.setup and c.setup(db, dir)
      local url = type(c.url) == "function" and c.url(db) or c.url or db.url
      local args = { table.unpack(c.args or { "upgrade" }) }
      args[#args + 1] = "--url"
      args[#args + 1] = url
      local before = snapshot(db)
      local r = H.tide(args, { dir = dir })
      if cleanup then
        cleanup()
      end
      if os.getenv("CATALOGUE_PRINT") then
        io.stderr:write(string.format("\n%s | %d | %s\n", c.id, r.code, (r.stderr:gsub("\n.*", ""))))
      end
      assert.are.equal(expected.exit, r.code, r.output)
      assert.truthy(r.stderr:find(expected.message, 1, true), "expected `" .. expected.message .. "` in: " .. r.stderr)
      assert.truthy(r.stderr:find("tide: ", 1, true), r.stderr)
      if not c.changes then
        assert.are.same(before, snapshot(db))
      else
        local after = snapshot(db)
        assert.are.same(before.tables, after.tables)
        assert.are.same(before.state, after.state)
      end
      if c.check then
        c.check(db, r, before)
      end
    end)
  end
end)
