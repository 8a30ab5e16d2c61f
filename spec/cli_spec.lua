-- spec/cli_spec.lua: tide.cli (lua/tide/cli.lua) through the real binary against the sandbox
-- server: every command, global flags on either side of the command word, --json parsed back,
-- exit codes (lua/tide/errors.lua), the config precedence and passwords kept out of output.
local H = require "spec.support.helpers"
local core = require "tide.core"
local json = require "tide.json"

local COMMANDS = { "upgrade", "downgrade", "current", "status", "history", "heads", "show", "branches", "new",
  "revision", "merge", "init", "stamp", "check", "version", "help" }

-- The revisions ids of a list of JSON objects.
local function ids(list)
  local out = {}
  for i, r in ipairs(list) do
    out[i] = r.revision
  end
  return out
end

-- The revision files of a project's versions/, in name order (what `ls` shows).
local function files_of(d)
  local names = assert(core.listdir(d .. "/versions"))
  local out = {}
  for _, n in ipairs(names) do
    if n:match("%.lua$") then
      out[#out + 1] = n
    end
  end
  table.sort(out)
  return out
end

local ID = "^%d%d%d%d%d%d%d%dT%d%d%d%d%d%d%-%x%x%x%x$"

local function branched_project()
  return H.project {
    ["001_a.lua"] = H.revision { revision = "001", up = "CREATE TABLE a (id int)", down_sql = "DROP TABLE a" },
    ["002_b.lua"] = H.revision { revision = "002", down_revision = "001", up = "CREATE TABLE b (id int)",
      down_sql = "DROP TABLE b" },
    ["003_c.lua"] = H.revision { revision = "003", down_revision = "001", up = "CREATE TABLE c (id int)",
      down_sql = "DROP TABLE c" },
  }
end

describe("tide command line #db", function()
  local db, dir

  before_each(function()
    db = H.fresh_db()
    dir = H.project(H.chain(3))
  end)

  after_each(function()
    H.cleanup()
  end)

  local function tide(args, opts)
    opts = opts or {}
    opts.dir = opts.dir or dir
    return H.tide(args, opts)
  end

  describe("upgrade", function()
    it("applies every pending revision and says which", function()
      local r = tide { "upgrade", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      assert.matches("^applied 3 revisions in %d+ ms: 001, 002, 003; the database is now at 003 %(head%)\n$", r.stdout)
      assert.are.same({ "001", "002", "003" }, H.applied(db))
      assert.are.same({ "t1", "t2", "t3" }, H.tables(db))
    end)

    it("stops at a target and then at +N", function()
      assert.are.equal(0, tide({ "upgrade", "001", "--url", db.url }).code)
      assert.are.same({ "001" }, H.applied(db))
      local r = tide { "upgrade", "+1", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      assert.matches("^applied 1 revision in %d+ ms: 002; the database is now at 002\n$", r.stdout)
      assert.are.same({ "001", "002" }, H.applied(db))
    end)

    it("prints its result as JSON", function()
      local r = tide { "upgrade", "--json", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      local out = H.json(r)
      assert.are.equal("upgrade", out.direction)
      assert.are.equal("head", out.target)
      assert.is_false(out.nothing_to_do)
      assert.are.same({ "001", "002", "003" }, ids(out.revisions))
      assert.is_number(out.revisions[1].duration_ms)
      assert.are.equal(out.run_id, H.history(db)[1].run_id)
    end)

    it("says there is nothing to do, also in JSON", function()
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }).code)
      local r = tide { "upgrade", "--json", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      assert.is_true(H.json(r).nothing_to_do)
      assert.are.equal(3, #H.history(db))
    end)

    it("refuses an unknown target with exit 2 and changes nothing", function()
      local r = tide { "upgrade", "nope", "--url", db.url }
      assert.are.equal(2, r.code, r.output)
      assert.matches('unknown target "nope"', r.stderr)
      assert.are.same({}, H.applied(db))
    end)

    it("refuses -N with exit 2", function()
      assert.are.equal(2, tide({ "upgrade", "-1", "--url", db.url }).code)
    end)

    it("refuses to run when the database has a revision the files do not know (exit 8)", function()
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }).code)
      local r = tide({ "upgrade", "--url", db.url }, { dir = H.project(H.chain(2)) })
      assert.are.equal(8, r.code, r.output)
      assert.matches("revision 003", r.stderr)
      assert.are.same({ "001", "002", "003" }, H.applied(db))
      assert.are.equal(3, #H.history(db))
    end)
  end)

  describe("downgrade", function()
    before_each(function()
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }).code)
    end)

    it("reverts down to a target, which stays applied", function()
      local r = tide { "downgrade", "--no-backup", "001", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      assert.matches("^reverted 2 revisions in %d+ ms: 003, 002; the database is now at 001\n$", r.stdout)
      assert.are.same({ "001" }, H.applied(db))
      assert.are.same({ "t1" }, H.tables(db))
    end)

    -- Before: "reverted 1 revision to -1": the flag, not where the database is.
    it("reverts the last N with -N, and everything with base, naming the revision reached", function()
      local r = tide { "downgrade", "--no-backup", "-1", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      assert.matches("^reverted 1 revision in %d+ ms: 003; the database is now at 002\n$", r.stdout)
      assert.are.same({ "001", "002" }, H.applied(db))
      r = tide { "downgrade", "--no-backup", "base", "--json", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      assert.are.same({}, H.json(r).reached)
      assert.are.equal(0, tide({ "upgrade", "+1", "--url", db.url }).code)
      r = tide { "downgrade", "--no-backup", "base", "--url", db.url }
      assert.matches("^reverted 1 revision in %d+ ms: 001; the database is now at base %(no revision applied%)\n$",
        r.stdout)
      assert.are.same({}, H.applied(db))
      assert.are.same({}, H.tables(db))
    end)

    -- Before: the dry run's summary and the progress line said "to -1", the flag as typed.
    it("names the revision a relative target leads to in the progress line and a dry run's summary", function()
      local r = tide { "downgrade", "-1", "--dry-run", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      assert.matches("^dry run: reverted 1 revision to 002 in %d+ ms, then rolled back: 003\n", r.stdout)
      assert.truthy(r.stderr:find("tide: downgrade (dry run, rolled back at the end): 1 revision to 002\n", 1, true),
        r.stderr)
      r = tide { "downgrade", "--no-backup", "-3", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      assert.truthy(r.stderr:find("tide: downgrade: 3 revisions to base\n", 1, true), r.stderr)
      r = tide { "upgrade", "+2", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      assert.truthy(r.stderr:find("tide: upgrade: 2 revisions to 002\n", 1, true), r.stderr)
    end)

    it("prints its result as JSON", function()
      local r = tide { "downgrade", "--no-backup", "-2", "--json", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      local out = H.json(r)
      assert.are.equal("downgrade", out.direction)
      assert.are.equal("-2", out.target)
      assert.are.same({ "003", "002" }, ids(out.revisions))
    end)

    it("needs a target (exit 2)", function()
      local r = tide { "downgrade", "--no-backup", "--url", db.url }
      assert.are.equal(2, r.code, r.output)
      assert.matches("usage: tide downgrade", r.stderr)
      assert.are.same({ "001", "002", "003" }, H.applied(db))
    end)

    -- Before: `unknown target "+1" ... (did you mean `001`?)`, an id unrelated to the intent.
    it("explains what a downgrade target is when given head, heads or +N (exit 2)", function()
      for _, target in ipairs { "head", "heads", "+1" } do
        local r = tide { "downgrade", target, "--url", db.url }
        assert.are.equal(2, r.code, r.output)
        assert.truthy(r.stderr:find("tide: downgrade target " .. target .. ": a downgrade target is where to stop, "
          .. "below what is applied: a revision (it stays applied), -N (revert the last N applied revisions) or "
          .. "base (revert them all)", 1, true), r.stderr)
        assert.matches("To revert the latest revision: `tide downgrade %-1`", r.stderr)
        assert.is_nil(r.stderr:find("did you mean", 1, true), r.stderr)
      end
      assert.are.same({ "001", "002", "003" }, H.applied(db))
    end)
  end)

  describe("current", function()
    it("says base before anything is applied, without creating tide's schema", function()
      local r = tide { "current", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      assert.matches("base", r.stdout)
      assert.are.same({}, H.sql(db, "SELECT 1 FROM pg_namespace WHERE nspname = 'tide'"))
      assert.are.same({}, H.json(tide { "current", "--json", "--url", db.url }).current)
    end)

    it("shows the revision the database is at, and whether it is the head", function()
      assert.are.equal(0, tide({ "upgrade", "002", "--url", db.url }).code)
      local r = tide { "current", "--json", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      local cur = H.json(r).current
      assert.are.equal(1, #cur)
      assert.are.equal("002", cur[1].revision)
      assert.is_false(cur[1].head)
      assert.are.equal("create t2", cur[1].message)
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }).code)
      assert.matches("003 %(head%)", tide({ "current", "--url", db.url }).stdout)
    end)

    it("shows one current revision per branch", function()
      local d = branched_project()
      assert.are.equal(0, tide({ "upgrade", "heads", "--url", db.url }, { dir = d }).code)
      local cur = H.json(tide({ "current", "--json", "--url", db.url }, { dir = d })).current
      assert.are.same({ "002", "003" }, ids(cur))
    end)
  end)

  describe("status", function()
    it("lists applied and pending revisions with their messages", function()
      assert.are.equal(0, tide({ "upgrade", "001", "--url", db.url }).code)
      local r = tide { "status", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      assert.matches("%[x%] 001%s+create t1", r.stdout)
      assert.matches("%[ %] 002%s+create t2%s+pending", r.stdout)
      assert.matches("2 pending", r.stdout)
    end)

    it("prints JSON with every revision's state", function()
      assert.are.equal(0, tide({ "upgrade", "001", "--url", db.url }).code)
      local out = H.json(tide { "status", "--json", "--url", db.url })
      assert.are.equal(2, out.pending)
      assert.are.same({ "003" }, out.heads)
      assert.are.equal("tide", out.schema)
      assert.are.same({ "001", "002", "003" }, ids(out.revisions))
      assert.are.equal("applied", out.revisions[1].state)
      assert.are.equal("pending", out.revisions[2].state)
      assert.are.equal("create t1", out.revisions[1].message)
      assert.is_string(out.revisions[1].applied_at)
    end)

    -- Before: "database: (PG* environment)", naming nothing.
    it("names the database it reached, host:port/database, wherever the address came from", function()
      local port = os.getenv("PGPORT")
      local r = tide({ "status" }, { env = { PGDATABASE = db.name }, unset = { "DATABASE_URL" } })
      assert.are.equal(0, r.code, r.output)
      assert.truthy(r.stdout:find("database: 127.0.0.1:" .. port .. "/" .. db.name
        .. ", from libpq environment (PG* variables)\n", 1, true), r.stdout)
      r = tide { "status", "--json", "--url", db.url }
      assert.are.equal("127.0.0.1:" .. port .. "/" .. db.name, H.json(r).database)
      assert.are.equal("--url", H.json(r).url_source)
    end)

    -- Before: %-40s padded bytes, so a line with "é" or "表" in its message ended its column early.
    it("aligns its columns by display width, whatever the messages' language", function()
      local d = H.project {
        ["001_a.lua"] = H.revision { revision = "001", message = "ajouter la colonne créée" },
        ["002_b.lua"] = H.revision { revision = "002", down_revision = "001", message = "添加发票表" },
        ["003_c.lua"] = H.revision { revision = "003", down_revision = "002", message = "plain" },
      }
      assert.are.equal(0, tide({ "upgrade", "001", "--url", db.url }, { dir = d }).code)
      local r = tide({ "status", "--url", db.url }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      -- the display column at which "applied" / "pending" starts, counting CJK as two columns
      local function column(line)
        local before = line:match("^(.- +)applied ") or line:match("^(.- +)pending$")
        local w = 0
        for _, c in utf8.codes(before) do
          w = w + ((c >= 0x4E00 and c <= 0x9FFF) and 2 or 1)
        end
        return w
      end
      local columns = {}
      for line in r.stdout:gmatch("[^\n]+") do
        if line:match("^%[") then
          columns[#columns + 1] = column(line)
        end
      end
      assert.are.same({ columns[1], columns[1], columns[1] }, columns)
    end)

    it("marks a file changed since it was applied", function()
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }).code)
      local path = dir .. "/versions/002_t2.lua"
      H.write(path, H.read(path) .. "-- edited\n")
      local out = H.json(tide { "status", "--json", "--url", db.url })
      assert.is_true(out.revisions[2].changed)
    end)
  end)

  describe("history", function()
    it("shows the graph from the files, newest first, without a database", function()
      local r = tide { "history", "--url", "postgresql://nobody@127.0.0.1:" .. H.closed_port() .. "/x" }
      assert.are.equal(0, r.code, r.output)
      assert.matches("002 %-> 003 %(head%), create t3", r.stdout)
      assert.matches("<base> %-> 001, create t1", r.stdout)
      local out = H.json(tide { "history", "--json" })
      assert.are.same({ "003", "002", "001" }, ids(out.revisions))
      assert.are.same({ "002" }, out.revisions[1].down_revision)
      assert.are.same({}, out.revisions[3].down_revision)
      assert.is_true(out.revisions[1].head)
    end)

    it("shows what ran on the database with --applied, failures included", function()
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }).code)
      assert.are.equal(0, tide({ "downgrade", "--no-backup", "-1", "--url", db.url }).code)
      local r = tide { "history", "--applied", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      assert.matches("downgrade%s+003%s+reverted", r.stdout)
      local out = H.json(tide { "history", "--applied", "--json", "--url", db.url })
      assert.are.equal(4, #out.applied)
      assert.are.equal("downgrade", out.applied[1].direction)
      assert.are.equal("003", out.applied[1].revision)
      assert.are.equal("upgrade", out.applied[4].direction)
      assert.are.equal("001", out.applied[4].revision)
      assert.are.equal(core.version, out.applied[1].tide_version)
      assert.are.equal(os.getenv("PGUSER"), out.applied[1].db_user)
    end)

    -- Before: silently ignored, printing the whole graph.
    it("refuses --limit without --applied (exit 2)", function()
      local r = tide { "history", "--limit", "2" }
      assert.are.equal(2, r.code, r.output)
      assert.matches("tide: %-%-limit goes with %-%-applied", r.stderr)
      assert.are.equal("", r.stdout)
    end)

    it("shows each run's backup reference and a --no-backup note with --applied", function()
      local backups = H.tmpdir {}
      local r = tide { "upgrade", "--backup-to", "file://" .. backups .. "/", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      r = tide { "downgrade", "-1", "--no-backup", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      r = tide { "history", "--applied", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      local lines = {}
      for line in r.stdout:gmatch("[^\n]+") do
        lines[#lines + 1] = line
      end
      assert.are.equal(4, #lines, r.stdout)
      assert.matches(" downgrade 003 +reverted .* note: %-%-no%-backup$", lines[1])
      assert.is_nil(lines[1]:find("backup: ", 1, true))
      for i = 2, 4 do
        assert.truthy(lines[i]:find("  backup: file://" .. backups .. "/", 1, true), lines[i])
      end
    end)

    -- Before: a downgrade's row said `applied`.
    it("says reverted for downgrades, in rows written before too", function()
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }).code)
      assert.are.equal(0, tide({ "downgrade", "--no-backup", "-1", "--url", db.url }).code)
      assert.are.equal("reverted",
        H.sql(db, "SELECT outcome FROM tide.history WHERE direction = 'downgrade'")[1].outcome)
      -- a row as tides before this one wrote it
      H.sql(db, "INSERT INTO tide.history (run_id, revision, direction, outcome, started_at, duration_ms, os_user, "
        .. "host, tide_version) VALUES ('old', '002', 'downgrade', 'applied', now(), 1, 'u', 'h', '0.0.1')")
      local r = tide { "history", "--applied", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      assert.matches("downgrade 002 +reverted ", r.stdout)
      assert.matches("downgrade 003 +reverted ", r.stdout)
      assert.is_nil(r.stdout:find("downgrade %S+ +applied"), r.stdout)
      local out = H.json(tide { "history", "--applied", "--json", "--url", db.url })
      assert.are.same({ "reverted", "reverted" }, { out.applied[1].outcome, out.applied[2].outcome })
    end)

    it("limits --applied to --limit rows", function()
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }).code)
      local out = H.json(tide { "history", "--applied", "--limit", "2", "--json", "--url", db.url })
      assert.are.same({ "003", "002" }, ids(out.applied))
    end)

    it("refuses a --limit that is not a whole number of 1 or more (exit 2), before connecting", function()
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }).code)
      for _, limit in ipairs { "-1", "0", "1.5", "many", "99999999999999999999" } do
        local r = tide { "history", "--applied", "--limit", limit, "--url", db.url }
        assert.are.equal(2, r.code, limit .. ": " .. r.output)
        assert.truthy(r.stderr:find("--limit " .. limit .. ": give a whole number of 1 or more", 1, true), r.stderr)
      end
    end)

    it("shows an empty --applied history on a database tide never touched", function()
      local out = H.json(tide { "history", "--applied", "--json", "--url", db.url })
      assert.are.same({}, out.applied)
    end)
  end)

  describe("heads", function()
    it("lists the one head", function()
      local r = tide { "heads" }
      assert.are.equal(0, r.code, r.output)
      assert.matches("003 %(head%)", r.stdout)
    end)

    it("lists every head as JSON", function()
      local out = H.json(tide({ "heads", "--json" }, { dir = branched_project() }))
      assert.are.same({ "002", "003" }, ids(out.heads))
      assert.matches("versions/002_b.lua$", out.heads[1].file)
    end)
  end)

  describe("new", function()
    it("writes the first revision as a root, and the next one on top of the head", function()
      local d = H.project {}
      local r = tide({ "new", "--json", "Create users table" }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      local first_id = H.json(r).revision
      assert.matches(ID, first_id)
      local first = H.read(d .. "/versions/" .. first_id .. "_create_users_table.lua")
      assert.truthy(first, r.output)
      assert.matches("down_revision = nil", first)
      r = tide({ "new", "--json", "add email" }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      local out = H.json(r)
      assert.matches(ID, out.revision)
      assert.are.same({ first_id }, out.down_revision)
      assert.truthy(H.read(d .. "/versions/" .. out.revision .. "_add_email.lua"):find(
        'down_revision = "' .. first_id .. '"', 1, true))
      -- the files load and run
      r = tide({ "upgrade", "--url", db.url }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ first_id, out.revision }, H.applied(db))
    end)

    -- Before: both branches got "004", and the merged code failed with `duplicate revision id`.
    it("gives revisions written on two branches different ids: after the merge, `tide merge` joins them", function()
      local a, b = H.project(H.chain(3)), H.project(H.chain(3))
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }, { dir = a }).code)
      local ra = tide({ "new", "--json", "feature a" }, { dir = a })
      local rb = tide({ "new", "--json", "feature b" }, { dir = b })
      assert.are.equal(0, ra.code, ra.output)
      assert.are.equal(0, rb.code, rb.output)
      local ida, idb = H.json(ra).revision, H.json(rb).revision
      assert.are_not.equal(ida, idb)
      -- the merge of the two branches: b's file lands beside a's
      H.write(a .. "/versions/" .. idb .. "_feature_b.lua", H.read(b .. "/versions/" .. idb .. "_feature_b.lua"))
      local r = tide({ "upgrade", "--url", db.url }, { dir = a })
      assert.are.equal(5, r.code, r.output)
      assert.matches("multiple heads", r.stderr)
      r = tide({ "merge", "-m", "join features" }, { dir = a })
      assert.are.equal(0, r.code, r.output)
      r = tide({ "upgrade", "--url", db.url }, { dir = a })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal(6, #H.applied(db))
    end)

    it("names revisions so that files list in the order they were written, after numbered ones", function()
      local d = H.project(H.chain(2))
      local made = {}
      for i = 1, 3 do
        local r = tide({ "new", "--json", "step " .. i }, { dir = d })
        assert.are.equal(0, r.code, r.output)
        assert.matches(ID, H.json(r).revision)
        made[i] = H.json(r).revision .. "_step_" .. i .. ".lua"
      end
      assert.are.same({ "001_t1.lua", "002_t2.lua", made[1], made[2], made[3] }, files_of(d))
      local r = tide({ "status", "--url", db.url }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      -- the id column fits the generated ids: the messages start in one column
      local columns = {}
      for line in r.stdout:gmatch("[^\n]+") do
        local at = line:find("create t%d") or line:find("step %d")
        if at then
          columns[#columns + 1] = at
        end
      end
      assert.are.equal(5, #columns, r.stdout)
      for _, c in ipairs(columns) do
        assert.are.equal(columns[1], c, r.stdout)
      end
    end)

    it("takes the id from --rev-id, as Alembic's revision --rev-id does", function()
      local d = H.project(H.chain(2))
      local r = tide({ "new", "--rev-id", "003", "third" }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      assert.matches('revision = "003"', H.read(d .. "/versions/003_third.lua"))
      assert.matches('down_revision = "002"', H.read(d .. "/versions/003_third.lua"))
      r = tide({ "new", "--rev-id", "003", "again" }, { dir = d })
      assert.are.equal(2, r.code, r.output)
      assert.matches('revision "003" already exists', r.stderr)
      for _, bad in ipairs { "a b", "head", "-1", string.rep("x", 65) } do
        r = tide({ "new", "--rev-id", bad, "bad" }, { dir = d })
        assert.are.equal(2, r.code, bad .. ": " .. r.output)
        assert.matches("%-%-rev%-id", r.stderr)
      end
      assert.are.same({ "001_t1.lua", "002_t2.lua", "003_third.lua" }, files_of(d))
    end)

    it("says how to fix a duplicate id (exit 5)", function()
      local d = H.project(H.chain(3))
      H.write(d .. "/versions/003_other.lua", H.revision { revision = "003", down_revision = "002" })
      local r = tide({ "heads" }, { dir = d })
      assert.are.equal(5, r.code, r.output)
      local first, hint = r.stderr:match("^tide: ([^\n]*)\n  hint: ([^\n]*)")
      assert.matches('duplicate revision id "003" %(also in versions/003_', first)
      assert.truthy(hint, r.stderr)
      assert.matches("Give one of them a new id %(for example revision = \"%d+T%d+%-%x+\" in versions/003_", hint)
      assert.matches('change down_revision = "003" to it', hint)
      assert.matches("`tide merge`", hint)
    end)

    it("refuses when there are several heads (exit 5) and writes nothing", function()
      local d = branched_project()
      local r = tide({ "new", "more" }, { dir = d })
      assert.are.equal(5, r.code, r.output)
      assert.matches("multiple heads", r.stderr)
      assert.are.same({ "001_a.lua", "002_b.lua", "003_c.lua" }, files_of(d))
    end)

    it("needs a message (exit 2)", function()
      assert.are.equal(2, tide({ "new" }).code)
    end)

    it("creates the versions folder in a new project", function()
      local d = H.tmpdir {}
      local r = tide({ "new", "--json", "first" }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      assert.truthy(H.read(d .. "/versions/" .. H.json(r).revision .. "_first.lua"))
    end)

    -- Before: "Añadir código" made a_adir_c_digo.
    it("keeps the file name ASCII: Latin letters lose their accents, other scripts are left out", function()
      local d = H.project {}
      for _, case in ipairs { { "Añadir código ñandú", "_anadir_codigo_nandu.lua" },
        { "Straße für Größen", "_strasse_fur_grossen.lua" }, { "添加发票表", "_revision.lua" },
        { "Łódź: nowa tabela 表", "_lodz_nowa_tabela.lua" } } do
        local r = tide({ "new", "--json", case[1] }, { dir = d })
        assert.are.equal(0, r.code, r.output)
        local out = H.json(r)
        assert.are.equal("versions/" .. out.revision .. case[2], out.file)
        assert.truthy(H.read(d .. "/" .. out.file), out.file)
      end
      -- and the messages are kept as written
      local r = tide({ "heads", "--json" }, { dir = d })
      assert.are.equal("Łódź: nowa tabela 表", H.json(r).heads[1].message)
    end)

    it("writes a file that loads even when the message has several lines", function()
      local d = H.project {}
      local r = tide({ "new", "first line\nsecond line" }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      local heads = tide({ "heads", "--json" }, { dir = d })
      assert.are.equal(0, heads.code, heads.output)
      assert.are.equal("first line\nsecond line", H.json(heads).heads[1].message)
    end)
  end)

  describe("merge", function()
    it("writes a merge revision over the heads, leaving one head", function()
      local d = branched_project()
      local r = tide({ "merge", "-m", "join branches", "--json" }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      local out = H.json(r)
      assert.matches(ID, out.revision)
      assert.are.same({ "002", "003" }, out.down_revision)
      assert.truthy(H.read(d .. "/versions/" .. out.revision .. "_join_branches.lua"))
      assert.are.same({ out.revision }, ids(H.json(tide({ "heads", "--json" }, { dir = d })).heads))
      r = tide({ "upgrade", "--url", db.url }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "001", "002", "003", out.revision }, H.applied(db))
    end)

    it("takes Alembic's `heads` argument, and nothing else", function()
      local d = branched_project()
      local r = tide({ "merge", "-m", "join", "nope" }, { dir = d })
      assert.are.equal(2, r.code, r.output)
      assert.matches('tide merge joins every head: write `heads` or nothing, not "nope"', r.stderr)
      assert.are.same({ "001_a.lua", "002_b.lua", "003_c.lua" }, files_of(d))
      r = tide({ "merge", "-m", "join", "heads", "--json" }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "002", "003" }, H.json(r).down_revision)
    end)

    it("refuses when there is only one head (exit 2)", function()
      local r = tide { "merge" }
      assert.are.equal(2, r.code, r.output)
      assert.matches("nothing to merge", r.stderr)
    end)
  end)

  describe("stamp", function()
    it("records revisions as applied without running them", function()
      local r = tide { "stamp", "002", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "001", "002" }, H.applied(db))
      assert.are.same({}, H.tables(db))
      local hist = H.history(db)
      assert.are.equal(2, #hist)
      assert.are.equal("stamp", hist[1].direction)
    end)

    it("forgets revisions with base, appending unstamp rows", function()
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }).code)
      local r = tide { "stamp", "base", "--json", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      local out = H.json(r)
      assert.are.same({ "001", "002", "003" }, out.unstamped)
      assert.are.same({}, H.applied(db))
      assert.are.same({ "t1", "t2", "t3" }, H.tables(db))
      assert.are.equal(3, #H.sql(db, "SELECT 1 FROM tide.history WHERE direction = 'unstamp'"))
    end)

    it("needs a target (exit 2)", function()
      assert.are.equal(2, tide({ "stamp", "--url", db.url }).code)
    end)
  end)

  describe("check", function()
    it("passes with valid files, one head and an up-to-date database", function()
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }).code)
      local r = tide { "check", "--json", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
      local out = H.json(r)
      assert.is_true(out.ok)
      assert.are.equal(0, out.pending)
      assert.are.same({}, out.problems)
    end)

    it("fails (exit 1) with several heads", function()
      local r = tide({ "check", "--json", "--url", db.url }, { dir = branched_project() })
      assert.are.equal(1, r.code, r.output)
      local out = H.json(r)
      assert.is_false(out.ok)
      assert.matches("multiple heads", out.problems[1])
    end)

    it("fails (exit 1) when the database is ahead of the files", function()
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }).code)
      local r = tide({ "check", "--url", db.url }, { dir = H.project(H.chain(2)) })
      assert.are.equal(1, r.code, r.output)
      assert.matches("the database has revision 003", r.stdout)
    end)

    it("fails (exit 1) when an applied file changed", function()
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }).code)
      local path = dir .. "/versions/001_t1.lua"
      H.write(path, (H.read(path):gsub("create t1", "create t1 again")))
      local r = tide { "check", "--url", db.url }
      assert.are.equal(1, r.code, r.output)
      assert.matches("revision 001 .* changed since it was applied", r.stdout)
    end)

    it("does not count a re-saved file (CRLF, trailing spaces) as changed", function()
      assert.are.equal(0, tide({ "upgrade", "--url", db.url }).code)
      local path = dir .. "/versions/001_t1.lua"
      H.write(path, (H.read(path):gsub("\n", "   \r\n")))
      local r = tide { "check", "--url", db.url }
      assert.are.equal(0, r.code, r.output)
    end)

    it("checks only the files with --offline", function()
      local r = tide { "check", "--offline", "--url", "postgresql://x@127.0.0.1:" .. H.closed_port() .. "/x" }
      assert.are.equal(0, r.code, r.output)
    end)

    it("counts in singular and plural", function()
      local r = tide({ "check", "--offline" }, { dir = H.project(H.chain(1)) })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal("ok: 1 revision, 0 pending\n", r.stdout)
      r = tide { "check", "--offline" }
      assert.are.equal("ok: 3 revisions, 0 pending\n", r.stdout)
    end)

    it("fails (exit 5) with a file that does not load", function()
      H.write(dir .. "/versions/004_bad.lua", "return {")
      local r = tide { "check", "--offline" }
      assert.are.equal(5, r.code, r.output)
      assert.truthy(r.stderr:find("versions/004_bad.lua:1:", 1, true), r.stderr)
    end)
  end)

  describe("version", function()
    it("prints tide's version, anywhere, as text or JSON", function()
      local r = H.tide({ "version" }, { dir = "/" })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal("tide " .. core.version .. "\n", r.stdout)
      assert.are.equal(core.version, H.json(H.tide({ "--json", "version" }, { dir = "/" })).version)
    end)

    it("answers --version as most programs do, whatever else is on the line", function()
      for _, args in ipairs { { "--version" }, { "upgrade", "head", "--version" } } do
        local r = H.tide(args, { dir = "/" })
        assert.are.equal(0, r.code, r.output)
        assert.are.equal("tide " .. core.version .. "\n", r.stdout)
      end
      assert.are.equal(core.version, H.json(H.tide({ "--version", "--json" }, { dir = "/" })).version)
    end)
  end)

  describe("help", function()
    it("is `tide --help` as a command, and `tide help COMMAND` is the command's --help", function()
      local r = H.tide({ "help" }, { dir = "/" })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal(H.tide({ "--help" }, { dir = "/" }).stdout, r.stdout)
      r = H.tide({ "help", "upgrade" }, { dir = "/" })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal(H.tide({ "upgrade", "--help" }, { dir = "/" }).stdout, r.stdout)
      assert.matches("usage: tide upgrade", r.stdout)
    end)

    it("refuses an unknown command with a suggestion (exit 2)", function()
      local r = H.tide({ "help", "upgade" }, { dir = "/" })
      assert.are.equal(2, r.code, r.output)
      assert.matches("unknown command `upgade` %(did you mean `upgrade`%?%)", r.stderr)
    end)
  end)

  describe("Alembic's words", function()
    it("writes a revision with `revision -m`, as `new` does", function()
      local d = H.project(H.chain(1))
      local r = tide({ "revision", "-m", "add email", "--json" }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      local out = H.json(r)
      assert.matches(ID, out.revision)
      assert.are.same({ "001" }, out.down_revision)
      assert.matches('message = "add email"', H.read(d .. "/versions/" .. out.revision .. "_add_email.lua"))
      r = tide({ "new", "-m", "add name", "--rev-id", "003" }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      assert.truthy(H.read(d .. "/versions/003_add_name.lua"):find('down_revision = "' .. out.revision .. '"', 1,
        true))
    end)

    it("needs the message once (exit 2)", function()
      local d = H.project(H.chain(1))
      for _, args in ipairs { { "revision" }, { "new", "x", "-m", "y" } } do
        local r = tide(args, { dir = d })
        assert.are.equal(2, r.code, r.output)
        assert.matches('give the message once, as "MESSAGE" or %-m "MESSAGE"', r.stderr)
      end
      assert.are.same({ "001_t1.lua" }, files_of(d))
    end)

    it("shows one revision with `show REV`, from the files alone", function()
      local r = tide({ "show", "002", "--url", "postgresql://nobody@127.0.0.1:" .. H.closed_port() .. "/x" },
        { dir = branched_project() })
      assert.are.equal(0, r.code, r.output)
      assert.matches("revision: +002 %(head%)\n", r.stdout)
      assert.matches("parents: +001\n", r.stdout)
      assert.matches("children: +none\n", r.stdout)
      assert.matches("file: +versions/002_b%.lua\n", r.stdout)
      assert.matches("message: +revision 002\n", r.stdout)
      local out = H.json(tide({ "show", "00", "--json" }, { dir = H.project(H.chain(1)) }))
      assert.are.equal("001", out.revision)
      assert.are.same({}, out.down_revision)
      assert.is_true(out.transaction)
      r = tide({ "show", "1" }, { dir = branched_project() })
      assert.are.equal(2, r.code, r.output)
      assert.matches('unknown target "1"', r.stderr)
    end)

    it("shows the branch points with `branches`", function()
      local r = tide({ "branches" }, { dir = branched_project() })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal("001 (branch point), revision 001\n  -> 002 (head), revision 002\n"
        .. "  -> 003 (head), revision 003\n", r.stdout)
      r = tide { "branches" }
      assert.are.equal(0, r.code, r.output)
      assert.matches("no branch points", r.stdout)
      assert.are.same({}, H.json(tide { "branches", "--json" }).branches)
    end)

    it("starts a project with `init`: a tide.lua that loads and an empty versions/, keeping what exists", function()
      local d = H.tmpdir {}
      local r = H.tide({ "init" }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      assert.matches("created tide.lua\ncreated versions/\n", r.stdout)
      assert.is_true(core.isdir(d .. "/versions"))
      assert.are.equal(".tide-cache*\n", H.read(d .. "/versions/.gitignore"))
      local written = H.read(d .. "/tide.lua")
      assert.matches('versions = "versions"', written)
      -- the scaffold loads, and the project works from there
      r = H.tide({ "new", "first" }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      r = H.tide({ "upgrade", "--url", db.url }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal(1, #H.applied(db))
      -- a second init changes nothing
      H.write(d .. "/tide.lua", written .. "-- mine\n")
      r = H.tide({ "init" }, { dir = d })
      assert.are.equal(0, r.code, r.output)
      assert.matches("kept tide.lua %(it exists%)\nkept versions/ %(it exists%)", r.stdout)
      assert.are.equal(written .. "-- mine\n", H.read(d .. "/tide.lua"))
      -- -C and --versions
      r = H.tide({ "init", "-C", d .. "/other", "--versions", "db" }, { dir = d })
      assert.are.equal(2, r.code, r.output)
      assert(os.execute("mkdir " .. H.shell_quote(d .. "/other")))
      r = H.tide({ "init", "-C", d .. "/other", "--versions", "db" }, { dir = "/" })
      assert.are.equal(0, r.code, r.output)
      assert.is_true(core.isdir(d .. "/other/db"))
      assert.matches('versions = "db"', H.read(d .. "/other/tide.lua"))
    end)
  end)

  describe("--help", function()
    for _, cmd in ipairs(COMMANDS) do
      it("explains `" .. cmd .. "`, before or after the command word", function()
        for _, args in ipairs { { cmd, "--help" }, { "--help", cmd }, { cmd, "-h" } } do
          local r = H.tide(args, { dir = "/" })
          assert.are.equal(0, r.code, table.concat(args, " ") .. ": " .. r.output)
          assert.truthy(r.stdout:find("usage: tide " .. cmd, 1, true), r.stdout)
          assert.matches("global flags", r.stdout)
        end
      end)
    end

    it("lists a command's own flags and points to `tide --help` for the global ones", function()
      local r = H.tide({ "upgrade", "--help" }, { dir = "/" })
      assert.are.equal(0, r.code, r.output)
      assert.matches("\n  %-%-single%-transaction +run every revision in one transaction", r.stdout)
      assert.matches("\n  %-%-backup%-to URL +backup destination", r.stdout)
      assert.matches("global flags: see `tide %-%-help` %(%-%-url, %-C, ", r.stdout)
      assert.is_nil(r.stdout:find("retry a revision that hit lock_timeout", 1, true), r.stdout)
      r = H.tide({ "status", "--help" }, { dir = "/" })
      assert.is_nil(r.stdout:find("single-transaction", 1, true), r.stdout)
      assert.is_nil(r.stdout:find("database to migrate", 1, true), r.stdout)
      assert.matches("see `tide %-%-help`", r.stdout)
    end)

    it("lists every command with `tide --help`", function()
      local r = H.tide({ "--help" }, { dir = "/" })
      assert.are.equal(0, r.code, r.output)
      for _, cmd in ipairs(COMMANDS) do
        assert.matches("\n  " .. cmd .. " ", r.stdout)
      end
    end)

    it("shows the help and exits 2 without a command", function()
      local r = H.tide({}, { dir = "/" })
      assert.are.equal(2, r.code, r.output)
      assert.matches("usage: tide COMMAND", r.stdout)
    end)
  end)

  describe("global flags", function()
    it("work before the command word", function()
      local r = H.tide({ "--json", "-C", dir, "--url", db.url, "upgrade" }, { dir = "/" })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal("upgrade", H.json(r).direction)
      assert.are.same({ "001", "002", "003" }, H.applied(db))
    end)

    it("work after the command word and its argument", function()
      local r = H.tide({ "upgrade", "002", "--url", db.url, "-C", dir, "--json" }, { dir = "/" })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "001", "002" }, ids(H.json(r).revisions))
    end)

    it("accept --flag=value", function()
      local r = H.tide({ "--url=" .. db.url, "status", "--json", "-C", dir }, { dir = "/" })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal(3, H.json(r).pending)
    end)

    it("take the revisions from --versions DIR", function()
      local other = H.tmpdir {
        ["migrations/001_x.lua"] = H.revision { revision = "x1", up = "CREATE TABLE from_versions_flag (id int)" },
      }
      for _, args in ipairs {
        { "--versions", other .. "/migrations", "upgrade", "--url", db.url },
        { "downgrade", "--no-backup", "base", "--url", db.url, "--versions", other .. "/migrations" },
      } do
        local r = tide(args)
        assert.are.equal(0, r.code, r.output)
      end
      assert.are.same({ "x1" }, ids(H.json(tide { "history", "--json", "--versions", other .. "/migrations" })
        .revisions))
      assert.are.same({}, H.applied(db))
      assert.are.equal(2, #H.history(db))
    end)

    it("reads a relative --versions DIR relative to -C DIR, as git -C does", function()
      local root = H.tmpdir {
        ["proj/migrations/001_x.lua"] = H.revision { revision = "rel1" },
        ["proj/db/002_y.lua"] = H.revision { revision = "rel2" },
        ["proj/tide.lua"] = 'return { versions = "db" }\n',
      }
      local r = H.tide({ "-C", "proj", "--versions", "migrations", "heads", "--json" }, { dir = root })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "rel1" }, ids(H.json(r).heads))
      r = H.tide({ "heads", "--json", "-C", "proj" }, { dir = root })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "rel2" }, ids(H.json(r).heads))
      r = H.tide({ "heads", "--json", "--versions", root .. "/proj/migrations", "-C", "proj" }, { dir = root })
      assert.are.same({ "rel1" }, ids(H.json(r).heads))
    end)

    it("refuses a tide.lua with a syntax error, naming file and line (exit 2)", function()
      local d = H.project(H.chain(1), "return {\n  url = 'x'\n  schema = 'y'\n}\n")
      local r = tide({ "status" }, { dir = d })
      assert.are.equal(2, r.code, r.output)
      assert.matches("tide.lua:3:", r.stderr)
    end)

    it("refuses a tide.lua value of the wrong type (exit 2)", function()
      local d = H.project(H.chain(1), 'return { cache = "yes" }\n')
      local r = tide({ "status" }, { dir = d })
      assert.are.equal(2, r.code, r.output)
      assert.matches("`cache` must be a boolean", r.stderr)
    end)

    it("stops a tide.lua that loops forever (exit 2) and a revision file that does (exit 5), any command", function()
      local d = H.project(H.chain(1), "local n = 0\nwhile true do n = n + 1 end\nreturn {}\n")
      local r = tide({ "status", "--url", db.url }, { dir = d })
      assert.are.equal(2, r.code, r.output)
      assert.truthy(r.stderr:find("tide.lua:2: its top level ran over the load budget of 100000000 Lua instructions",
        1, true), r.stderr)
      local revs = H.chain(1)
      revs["002_loop.lua"] = "while true do end\n"
      d = H.project(revs, "return { load_instructions = 1000000 }\n")
      for _, cmd in ipairs { "status", "upgrade", "check", "history" } do
        r = tide({ cmd, "--url", db.url }, { dir = d })
        assert.are.equal(5, r.code, cmd .. ": " .. r.output)
        assert.truthy(r.stderr:find("versions/002_loop.lua:1: its top level ran over the load budget of 1000000 Lua "
          .. "instructions (an endless loop?); `load_instructions` in tide.lua raises it", 1, true), r.stderr)
      end
      assert.is_false(H.exists(db, "tide.revision"))
    end)

    it("refuses a search_path with a NUL byte (exit 2)", function()
      local d = H.project(H.chain(1), 'return { search_path = "public\\0x" }\n')
      local r = tide({ "upgrade", "--url", db.url }, { dir = d })
      assert.are.equal(2, r.code, r.output)
      assert.truthy(r.stderr:find("search_path: a NUL byte cannot reach the server", 1, true), r.stderr)
      assert.are.same({}, H.applied(db))
    end)

    it("refuses a load budget that is not a positive number (exit 2)", function()
      local d = H.project(H.chain(1), "return { load_memory_mb = 0 }\n")
      local r = tide({ "status", "--url", db.url }, { dir = d })
      assert.are.equal(2, r.code, r.output)
      assert.truthy(r.stderr:find("load_memory_mb 0: give a positive number", 1, true), r.stderr)
    end)

    it("refuses -C of a folder that does not exist (exit 2)", function()
      local r = H.tide({ "status", "-C", "/nonexistent/tide-spec" }, { dir = "/" })
      assert.are.equal(2, r.code, r.output)
      assert.matches("/nonexistent/tide%-spec", r.stderr)
    end)

    it("refuses an unknown flag with a suggestion (exit 2)", function()
      local r = tide { "upgrade", "--singel-transaction", "--url", db.url }
      assert.are.equal(2, r.code, r.output)
      assert.matches("did you mean `%-%-single%-transaction`", r.stderr)
      assert.are.same({}, H.applied(db))
    end)

    it("refuses an unknown command with a suggestion (exit 2)", function()
      local r = tide { "upgade" }
      assert.are.equal(2, r.code, r.output)
      assert.matches("did you mean `upgrade`", r.stderr)
    end)

    it("refuses a flag without its value (exit 2)", function()
      assert.are.equal(2, tide({ "status", "--url" }).code)
    end)

    it("refuses a negative or fractional --lock-retries, and lock_retries in tide.lua, before connecting", function()
      for _, n in ipairs { "-1", "1.5" } do
        local r = tide { "upgrade", "--lock-retries", n, "--url", db.url }
        assert.are.equal(2, r.code, n .. ": " .. r.output)
        assert.truthy(r.stderr:find("lock_retries " .. n .. ": give a whole number, 0 or more", 1, true), r.stderr)
      end
      local d = H.project(H.chain(1), "return { lock_retries = -2 }\n")
      local r = tide({ "upgrade", "--url", db.url }, { dir = d })
      assert.are.equal(2, r.code, r.output)
      assert.truthy(r.stderr:find("lock_retries -2: give a whole number, 0 or more", 1, true), r.stderr)
      assert.are.same({}, H.applied(db))
      assert.is_false(H.exists(db, "tide.history"))
    end)

    it("refuses an empty target (it is a prefix of every id) with exit 2, changing nothing", function()
      local one = H.project(H.chain(1))
      for _, args in ipairs { { "upgrade", "" }, { "downgrade", "" }, { "stamp", "" } } do
        args[#args + 1] = "--url"
        args[#args + 1] = db.url
        local r = tide(args, { dir = one })
        assert.are.equal(2, r.code, args[1] .. ": " .. r.output)
        assert.truthy(r.stderr:find('unknown target "": give head, heads, base, +N, -N or a revision id', 1, true),
          r.stderr)
      end
      assert.are.same({}, H.applied(db))
      assert.are.same({}, H.tables(db))
    end)

    it("refuses extra arguments (exit 2)", function()
      assert.are.equal(2, tide({ "upgrade", "001", "002", "--url", db.url }).code)
      assert.are.same({}, H.applied(db))
    end)
  end)

  describe("what it echoes of user input", function()
    -- one piece of user input is at most core.echo_limit bytes in output or storage, then the marker
    local MAX = core.echo_limit + 64

    local function assert_cut(text, what)
      assert.truthy(text:find(" ... [cut, ", 1, true), what .. ": no cut marker in " .. text:sub(1, 300))
    end

    it("cuts a 10 MB message in upgrade, status, JSON and the state row", function()
      local d = H.project {
        ["001_a.lua"] = H.revision { revision = "001", message = string.rep("m", 10 * 1024 * 1024) },
      }
      local r = tide({ "upgrade", "--url", db.url }, { dir = d })
      assert.are.equal(0, r.code, r.stderr:sub(1, 300))
      assert.is_true(#r.output < 8 * MAX, #r.output .. " bytes of output")
      for _, args in ipairs { { "status" }, { "status", "--json" }, { "current" } } do
        args[#args + 1] = "--url"
        args[#args + 1] = db.url
        r = tide(args, { dir = d })
        assert.are.equal(0, r.code, r.stderr)
        assert.is_true(#r.output < 4 * MAX, table.concat(args, " ") .. ": " .. #r.output .. " bytes")
        assert_cut(r.stdout, args[1])
      end
      local stored = H.sql(db, "SELECT message FROM tide.revision")[1].message
      assert.is_true(#stored < MAX, #stored .. " bytes stored")
      assert_cut(stored, "state row")
    end)

    it("cuts a 5 MB failing statement and a long error message on stderr and in the history row", function()
      local d = H.project {
        ["001_a.lua"] = H.revision { revision = "001",
          up = "SELECT '" .. string.rep("x", 5 * 1024 * 1024) .. "', 1/0" },
        ["002_b.lua"] = 'return { revision = "002", down_revision = "001", message = "m", upgrade = function(db)\n'
          .. '  error(string.rep("e", 1000000)) end }\n',
      }
      local r = tide({ "upgrade", "--url", db.url }, { dir = d })
      assert.are.equal(6, r.code)
      assert.is_true(#r.stderr < 4 * MAX, #r.stderr .. " bytes on stderr")
      assert.truthy(r.stderr:find("statement: SELECT 'xxx", 1, true), r.stderr:sub(1, 300))
      assert_cut(r.stderr, "statement")
      H.write(d .. "/versions/001_a.lua", H.revision { revision = "001" })
      r = tide({ "upgrade", "--url", db.url }, { dir = d })
      assert.are.equal(6, r.code)
      assert.is_true(#r.stderr < 4 * MAX, #r.stderr .. " bytes on stderr")
      assert_cut(r.stderr, "Lua error")
      for _, row in ipairs(H.sql(db, "SELECT revision, length(error) AS n FROM tide.history "
        .. "WHERE outcome = 'failed'")) do
        assert.is_true(row.n < 2 * MAX, row.revision .. ": " .. row.n .. " bytes stored")
      end
    end)

    it("cuts a server notice that quotes a 1 MB identifier", function()
      local d = H.project { ["001_a.lua"] = H.revision { revision = "001",
        up = "CREATE TABLE t (" .. string.rep("c", 1024 * 1024) .. " int)" } }
      local r = tide({ "upgrade", "--url", db.url }, { dir = d })
      assert.are.equal(0, r.code, r.stderr:sub(1, 300))
      assert.truthy(r.stderr:find("tide: server: NOTICE: identifier \"ccc", 1, true), r.stderr:sub(1, 300))
      assert_cut(r.stderr, "notice")
      assert.is_true(#r.stderr < 4 * MAX, #r.stderr .. " bytes on stderr")
    end)

    it("cuts a 100 KB target, command, flag and database name", function()
      local long = string.rep("z", 100 * 1024)
      for _, case in ipairs {
        { { "upgrade", long, "--url", db.url }, 2 },
        { { long }, 2 },
        { { "status", "--" .. long }, 2 },
        { { "status", "--url", H.url(long) }, 3 },
      } do
        local r = tide(case[1])
        assert.are.equal(case[2], r.code, r.output:sub(1, 300))
        assert.is_true(#r.output < 4 * MAX, #r.output .. " bytes of output")
        assert_cut(r.stderr, case[1][1]:sub(1, 20))
      end
    end)

    it("refuses a revision id longer than 255 bytes (exit 5)", function()
      local d = H.project { ["001_a.lua"] = H.revision { revision = string.rep("r", 256) } }
      local r = tide({ "status", "--url", db.url }, { dir = d })
      assert.are.equal(5, r.code, r.output:sub(1, 300))
      assert.truthy(r.stderr:find("revision id of 256 bytes: at most 255", 1, true), r.stderr)
    end)
  end)

  describe("exit codes", function()
    it("is 3 when the server cannot be reached, with JSON naming the kind", function()
      local r = tide { "status", "--json", "--url", "postgresql://x@127.0.0.1:" .. H.closed_port() .. "/x" }
      assert.are.equal(3, r.code, r.output)
      local out = H.json(r)
      assert.are.equal("connect", out.error.kind)
      assert.are.equal(3, out.error.exit_code)
    end)

    it("is 5 for a revision that fails to load, reported in JSON too", function()
      H.write(dir .. "/versions/004_bad.lua", "return { revision = 'x', messag = 'y' }")
      local r = tide { "upgrade", "--json", "--url", db.url }
      assert.are.equal(5, r.code, r.output)
      local out = H.json(r)
      assert.are.equal("load", out.error.kind)
      assert.matches("did you mean `message`", out.error.message)
      assert.are.same({}, H.applied(db))
    end)

    it("is 6 for a revision that fails to run, reported in JSON with revision and sqlstate", function()
      H.write(dir .. "/versions/004_bad.lua", H.revision { revision = "004", down_revision = "003",
        up = "SELECT 1/0" })
      local r = tide { "upgrade", "--json", "--url", db.url }
      assert.are.equal(6, r.code, r.output)
      local out = H.json(r)
      assert.are.equal("run", out.error.kind)
      assert.are.equal("004", out.error.revision)
      assert.are.equal("22012", out.error.sqlstate)
      assert.matches("versions/004_bad.lua$", out.error.file)
      assert.are.same({ "001", "002", "003" }, H.applied(db))
    end)

    -- Before: `statement: BEGIN; SET LOCAL lock_timeout = '5s'; ... SELECT 1/0`.
    it("names the revision's own statement, without the BEGIN and SET LOCAL tide sent with it", function()
      H.write(dir .. "/versions/004_bad.lua", H.revision { revision = "004", down_revision = "003",
        up = "SELECT 1/0" })
      local r = tide { "upgrade", "--url", db.url }
      assert.are.equal(6, r.code, r.output)
      assert.matches("\n  statement: SELECT 1/0\n", r.stderr)
      assert.is_nil(r.stderr:find("SET LOCAL", 1, true), r.stderr)
    end)

    -- Before: "revision 004 (versions/004_bad.lua:5) failed in upgrade: versions/004_bad.lua:5: unknown ...".
    it("names the file and line of a DSL error once", function()
      H.write(dir .. "/versions/004_bad.lua", [[
local schema = require "tide.schema"
return { revision = "004", down_revision = "003", message = "typo",
  upgrade = function(db)
    db:exec("CREATE TABLE bad (id int)")
    schema.create_polcy(db, "bad", "p", { using = "true" })
  end }
]])
      local r = tide { "upgrade", "--url", db.url }
      assert.are.equal(6, r.code, r.output)
      local first = r.stderr:match("tide: (revision 004 [^\n]*)")
      assert.are.equal("revision 004 (versions/004_bad.lua:5) failed in upgrade: unknown function "
        .. "`schema.create_polcy`: did you mean `rls.create_policy`?", first)
      assert.are.same({ "001", "002", "003" }, H.applied(db))
      assert.is_false(H.exists(db, "bad"))
    end)

    it("is 2 for a tide.lua with an unknown key", function()
      local d = H.project(H.chain(1), 'return { urll = "x" }\n')
      local r = tide({ "status" }, { dir = d })
      assert.are.equal(2, r.code, r.output)
      assert.matches("did you mean `url`", r.stderr)
    end)
  end)

  describe("configuration precedence", function()
    local dbs

    before_each(function()
      dbs = { flag = H.fresh_db(), env = H.fresh_db(), file = H.fresh_db(), pg = H.fresh_db() }
    end)

    -- Runs `tide upgrade` with the given sources and returns which database got the revisions.
    local function target_of(sources)
      local d = H.project(H.chain(1), sources.file and string.format("return { url = %q }\n", dbs.file.url) or nil)
      local args = { "upgrade" }
      if sources.flag then
        args[#args + 1] = "--url"
        args[#args + 1] = dbs.flag.url
      end
      local env = { PGDATABASE = dbs.pg.name }
      if sources.env then
        env.DATABASE_URL = dbs.env.url
      end
      local r = H.tide(args, { dir = d, env = env, unset = {} })
      assert.are.equal(0, r.code, r.output)
      local hit = {}
      for name, which in pairs(dbs) do
        if #H.applied(which) > 0 then
          hit[#hit + 1] = name
          H.sql(which, "DROP SCHEMA tide CASCADE; DROP TABLE t1")
        end
      end
      return table.concat(hit, ",")
    end

    it("takes --url over everything", function()
      assert.are.equal("flag", target_of { flag = true, env = true, file = true })
    end)

    it("takes DATABASE_URL over tide.lua and PG* variables", function()
      assert.are.equal("env", target_of { env = true, file = true })
    end)

    it("takes tide.lua's url over PG* variables", function()
      assert.are.equal("file", target_of { file = true })
    end)

    it("falls back to libpq's PG* variables", function()
      assert.are.equal("pg", target_of {})
    end)

    it("ignores an empty DATABASE_URL", function()
      local d = H.project(H.chain(1), string.format("return { url = %q }\n", dbs.file.url))
      local r = H.tide({ "upgrade" }, { dir = d, env = { DATABASE_URL = "" }, unset = {} })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "001" }, H.applied(dbs.file))
    end)
  end)

  describe("passwords", function()
    local password

    before_each(function()
      password = H.password()
      assert.is_string(password)
      assert.is_true(#password >= 8)
    end)

    local function assert_hidden(r, secret)
      assert.is_nil(r.stdout:find(secret, 1, true), "password printed on stdout: " .. r.stdout)
      assert.is_nil(r.stderr:find(secret, 1, true), "password printed on stderr: " .. r.stderr)
    end

    it("never prints the password of a URL when the password is wrong", function()
      local secret = "Sp3cWrongPassw0rd"
      local url = H.url(db.name, os.getenv("PGUSER"), secret)
      for _, args in ipairs { { "upgrade", "--url", url }, { "status", "--json", "--url", url },
        { "upgrade", "--verbose", "--url", url } } do
        local r = tide(args)
        assert.are.equal(3, r.code, r.output)
        assert.matches("password authentication failed", r.output)
        assert_hidden(r, secret)
      end
    end)

    it("never prints the password when a revision fails", function()
      H.write(dir .. "/versions/004_bad.lua", H.revision { revision = "004", down_revision = "003",
        up = "SELECT 1/0" })
      local url = H.url(db.name, os.getenv("PGUSER"), password)
      for _, args in ipairs { { "upgrade", "--url", url }, { "upgrade", "--json", "--verbose", "--url", url },
        { "status", "--url", url }, { "status", "--json", "--url", url }, { "check", "--url", url },
        { "history", "--applied", "--url", url } } do
        local r = tide(args)
        assert_hidden(r, password)
      end
      assert.are.same({ "001", "002", "003" }, H.applied(db))
    end)

    it("never prints the password when the server is down", function()
      local secret = "Sp3cDownPassw0rd"
      local url = string.format("postgresql://tide:%s@127.0.0.1:%d/x", secret, H.closed_port())
      for _, args in ipairs { { "upgrade", "--url", url }, { "status", "--json", "--url", url } } do
        local r = tide(args)
        assert.are.equal(3, r.code, r.output)
        assert_hidden(r, secret)
      end
      local r = tide({ "upgrade" }, { env = { DATABASE_URL = url }, unset = {} })
      assert.are.equal(3, r.code, r.output)
      assert_hidden(r, secret)
    end)

    it("never prints a password given as a keyword string", function()
      local secret = "Sp3cKeyw0rdPassw0rd"
      local conninfo = string.format("host=127.0.0.1 port=%s dbname=%s password=%s", os.getenv("PGPORT"), db.name,
        secret)
      local r = tide { "upgrade", "--url", conninfo }
      assert.are.equal(3, r.code, r.output)
      assert_hidden(r, secret)
    end)

    it("never prints the password in a lock timeout message", function()
      local holder <close> = core.connect(db.url, "spec-holder")
      holder:query("SELECT pg_advisory_lock(hashtextextended('tide:tide', 0))")
      local url = H.url(db.name, os.getenv("PGUSER"), password)
      local r = tide { "upgrade", "--lock-wait", "0.5", "--url", url }
      assert.are.equal(4, r.code, r.output)
      assert_hidden(r, password)
    end)

    -- Runs `tide upgrade --url url` while the spec holds the migration lock, and returns tide's
    -- /proc/<pid>/cmdline read while it waits for the lock, then lets it finish.
    local function cmdline_while_waiting(url)
      local holder = core.connect(db.url, "spec-holder")
      holder:query("SELECT pg_advisory_lock(hashtextextended('tide:tide', 0))")
      local run = H.spawn({ "upgrade", "--lock-wait", "20", "--url", url }, { dir = dir })
      local cmdline
      local deadline = core.now() + 10
      while core.now() < deadline and not cmdline do
        -- a waiting tide tries pg_try_advisory_lock between pauses
        local waiting = #H.sql(db, "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
          .. "AND query LIKE '%pg_try_advisory_lock%' AND pid <> pg_backend_pid()") > 0
        for _, pid in ipairs(waiting and H.tide_pids(run.pid) or {}) do
          cmdline = (H.read("/proc/" .. pid .. "/cmdline") or ""):gsub("%z", " ")
        end
        core.sleep(0.05)
      end
      holder:close()
      local r = run.wait()
      assert.are.equal(0, r.code, r.stderr)
      assert_hidden(r, password)
      assert.is_string(cmdline, "did not find the waiting tide process")
      assert.truthy(cmdline:find("--url", 1, true), cmdline)
      return cmdline
    end

    it("hides a URL's password from /proc/<pid>/cmdline while tide runs", function()
      local cmdline = cmdline_while_waiting(H.url(db.name, os.getenv("PGUSER"), password))
      assert.is_nil(cmdline:find(password, 1, true), "password visible in /proc/<pid>/cmdline: " .. cmdline)
      assert.are.same({ "001", "002", "003" }, H.applied(db))
    end)

    it("hides a ?password= query parameter from /proc/<pid>/cmdline", function()
      local cmdline = cmdline_while_waiting(H.url(db.name) .. "?sslmode=disable&password=" .. password)
      assert.is_nil(cmdline:find(password, 1, true), "password visible in /proc/<pid>/cmdline: " .. cmdline)
    end)

    it("hides a keyword string's password from /proc/<pid>/cmdline", function()
      local cmdline = cmdline_while_waiting(string.format("host=%s port=%s dbname=%s password=%s",
        os.getenv("PGHOST"), os.getenv("PGPORT"), db.name, password))
      assert.is_nil(cmdline:find(password, 1, true), "password visible in /proc/<pid>/cmdline: " .. cmdline)
    end)

    -- libpq percent-decodes a URL parameter's name: `%70assword` is its password. Hiding works
    -- on what libpq parses, so every place that shows a URL hides it too.
    it("hides a password named %70assword in /proc/<pid>/cmdline, status and errors", function()
      local url = H.url(db.name) .. "?sslmode=disable&%70assword=" .. password
      local cmdline = cmdline_while_waiting(url)
      assert.is_nil(cmdline:find(password, 1, true), "password visible in /proc/<pid>/cmdline: " .. cmdline)
      local no_passfile = { dir = dir, unset = { "PGPASSFILE", "DATABASE_URL" } }
      local r = tide({ "status", "--url", url }, no_passfile)
      assert.are.equal(0, r.code, r.output) -- the password did reach libpq
      -- status names the database it reached, from the live connection, not the URL as typed
      assert.matches("database: [^\n]*/" .. db.name .. ", from %-%-url\n", r.stdout)
      assert_hidden(r, password)
      -- an unknown database, and a string libpq cannot parse, whose error quotes it
      r = tide({ "status", "--url", H.url("tide_no_such_db") .. "?%70assword=" .. password }, no_passfile)
      assert.are.equal(3, r.code, r.output)
      assert.matches("does not exist", r.stderr)
      assert_hidden(r, password)
      r = tide({ "status", "--url", H.url(db.name) .. "?%70assword=" .. password .. "%zz" }, no_passfile)
      assert.are.equal(3, r.code, r.output)
      assert.matches("percent%-encoded", r.stderr)
      assert_hidden(r, password)
    end)

    -- libpq accepts spaces around `=` in a keyword string: the mask must too (fixed in 6f205c7).
    it("hides a keyword string's password written as `password = value` from /proc/<pid>/cmdline", function()
      local cmdline = cmdline_while_waiting(string.format("host=%s port=%s dbname=%s password = %s",
        os.getenv("PGHOST"), os.getenv("PGPORT"), db.name, password))
      assert.is_nil(cmdline:find(password, 1, true), "password visible in /proc/<pid>/cmdline: " .. cmdline)
    end)
  end)
end)

describe("tide.json", function()
  it("round-trips what tide prints", function()
    local value = { a = { 1, 2, 3 }, b = "x\"y\n\1", c = true, d = 1.5, e = "café ✓" }
    assert.are.same(value, json.decode(json.encode(value)))
  end)

  it("prints valid UTF-8 for a message that is not (a Latin-1 file, say)", function()
    local text = json.encode { message = "caf\xe9 ok \xff\xfe end" }
    assert.is_number(utf8.len(text))
    assert.are.equal("caf\u{FFFD} ok \u{FFFD}\u{FFFD} end", json.decode(text).message)
  end)

  it("prints valid UTF-8 from `tide heads --json` for a Latin-1 revision file", function()
    local dir = H.project { ["001_a.lua"] = H.revision { revision = "001", message = "caf\xe9" } }
    local r = H.tide({ "heads", "--json" }, { dir = dir })
    assert.are.equal(0, r.code, r.output)
    assert.is_number(utf8.len(r.stdout), "not UTF-8: " .. r.stdout)
    assert.are.equal("caf\u{FFFD}", H.json(r).heads[1].message)
    H.cleanup()
  end)
end)
