-- spec/authoring_spec.lua: the authoring commands against the real server: tide diff, tide dump,
-- tide new --autogenerate, tide check --schema (tide.commands.authoring, tide.sources, tide.schema_drift).
local H = require "spec.support.helpers"

local function seed_project(extra, tide_lua)
  local files = {
    ["001_initial.lua"] = H.read(H.source_dir .. "/versions/001_initial.lua"),
    ["002_add_indexes.lua"] = H.read(H.source_dir .. "/versions/002_add_indexes.lua"),
  }
  for k, v in pairs(extra or {}) do
    files[k] = v
  end
  return H.project(files, tide_lua)
end

-- The scratch databases tide made on the server and left behind.
local function dev_databases()
  return H.sql(nil, "SELECT datname FROM pg_database WHERE datname LIKE 'tide\\_dev\\_%'")
end

local dev_url = H.url("postgres")

describe("tide diff #db", function()
  teardown(H.cleanup)

  it("exits 0 and says so when two databases have the same schema", function()
    local a, b = H.fresh_db(), H.fresh_db()
    H.sql(a, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    H.sql(b, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    local r = H.tide { "diff", "--from", a.url, "--to", b.url }
    assert.are.equal(0, r.code, r.output)
    assert.matches("no difference", r.stdout)
  end)

  it("prints upgrade and downgrade and exits 1 when they differ; --json gives the change list", function()
    local a, b = H.fresh_db(), H.fresh_db()
    H.sql(a, "CREATE TABLE t (id int PRIMARY KEY)")
    H.sql(b, "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL DEFAULT ''); CREATE INDEX t_v ON t (v)")
    local r = H.tide { "diff", "--from", a.url, "--to", b.url }
    assert.are.equal(1, r.code, r.output)
    assert.matches('schema.add_column%(db, "t", { "v", "text", default = "", not_null = true }%)', r.stdout)
    assert.matches('schema.create_index%(db, "t", "v", { name = "t_v", concurrently = true }%)', r.stdout)
    assert.matches('schema.drop_column%(db, "t", "v"%)', r.stdout)
    local j = H.tide { "diff", "--from", a.url, "--to", b.url, "--json" }
    assert.are.equal(1, j.code)
    local result = H.json(j)
    assert.is_false(result.equal)
    assert.are.same({ "column", "index" }, { result.changes[1].kind, result.changes[2].kind })
    assert.are.equal("ALTER TABLE t ADD COLUMN v text DEFAULT ''::text NOT NULL", result.changes[1].sql[1])
    local s = H.tide { "diff", "--from", a.url, "--to", b.url, "--format", "sql" }
    assert.are.equal("-- tide diff: from " .. a.url:gsub("^.*@", "postgresql://" .. os.getenv("PGUSER") .. "@")
      .. " to " .. b.url .. ": 2 changes\nALTER TABLE t ADD COLUMN v text DEFAULT ''::text NOT NULL;\n"
      .. "CREATE INDEX t_v ON t USING btree (v);\n", s.stdout)
  end)

  it("replays revisions on a dev database it creates and drops (base, head, a revision id)", function()
    local before = #dev_databases()
    local dir = seed_project()
    local r = H.tide({ "diff", "--from", "001", "--to", "head", "--dev-url", dev_url }, { dir = dir })
    assert.are.equal(1, r.code, r.output)
    assert.matches("from revisions at 001 to revisions at head: 22 changes", r.stdout)
    assert.matches('schema.create_index%(db, "users", "email", { unique = true, concurrently = true }%)', r.stdout)
    assert.matches("transaction = false", r.stdout)
    local b = H.tide({ "diff", "--from", "base", "--to", "001", "--dev-url", dev_url }, { dir = dir })
    assert.are.equal(1, b.code, b.output)
    assert.matches('rls.create_policy%(db, "users", "users_self_or_admin"', b.stdout)
    assert.are.equal(before, #dev_databases())
  end)

  it("compares with a desired-state schema.lua and schema.sql", function()
    local dir = seed_project {
      ["../schema.lua"] = [[
local schema = require "tide.schema"
return function(db)
  schema.create_table(db, "notes", { columns = { { "id", "bigint", primary_key = true }, { "body", "text" } } })
end
]],
      ["../schema.sql"] = "CREATE TABLE notes (id bigint PRIMARY KEY, body text);",
    }
    local lua = H.tide({ "diff", "--from", "base", "--to", "schema.lua", "--dev-url", dev_url }, { dir = dir })
    assert.are.equal(1, lua.code, lua.output)
    assert.matches('schema.create_table%(db, "notes"', lua.stdout)
    local same = H.tide({ "diff", "--from", "schema.sql", "--to", "schema.lua", "--dev-url", dev_url }, { dir = dir })
    assert.are.equal(0, same.code, same.output)
  end)

  it("turns a drop and a create into a rename only with a --rename hint", function()
    local a, b = H.fresh_db(), H.fresh_db()
    H.sql(a, "CREATE TABLE t (id int PRIMARY KEY, mail text)")
    H.sql(b, "CREATE TABLE people (id int PRIMARY KEY, email text); ALTER TABLE people RENAME CONSTRAINT people_pkey "
      .. "TO t_pkey")
    local guess = H.tide { "diff", "--from", a.url, "--to", b.url }
    assert.matches('schema.drop_table%(db, "t"%)', guess.stdout)
    assert.matches("-- destructive: drop table public.t", guess.stdout)
    local hinted = H.tide { "diff", "--from", a.url, "--to", b.url, "--rename", "t=people,people.mail=email" }
    assert.are.equal(1, hinted.code, hinted.output)
    assert.matches('db:exec%("ALTER TABLE t RENAME TO people"%)', hinted.stdout)
    assert.matches('schema.rename_column%(db, "people", "mail", "email"%)', hinted.stdout)
    assert.not_matches("drop_table", hinted.stdout)
  end)

  it("names what differs when it has no change that says it (a partition key), exit 1", function()
    local a, b = H.fresh_db(), H.fresh_db()
    H.sql(a, "CREATE TABLE p (a int, b int) PARTITION BY RANGE (a)")
    H.sql(b, "CREATE TABLE p (a int, b int) PARTITION BY LIST (a)")
    local r = H.tide { "diff", "--from", a.url, "--to", b.url }
    assert.are.equal(1, r.code, r.output)
    assert.matches("%-%- differs, and tide has no change that says it: %+ table | public.p | partitioned by LIST %(a%)",
      r.stdout)
  end)

  it("lists what it does not compare, and leaves tide's own schema out", function()
    local a, b = H.fresh_db(), H.fresh_db()
    H.sql(a, "CREATE TYPE pair AS (x int, y int); CREATE SCHEMA tide; CREATE TABLE tide.revision (id int)")
    local r = H.tide { "diff", "--from", a.url, "--to", b.url }
    assert.are.equal(0, r.code, r.output)
    assert.matches("%-%- not compared: composite type public.pair", r.stdout)
  end)

  it("refuses bad input with exit 2 and one line", function()
    local dir = seed_project()
    local cases = {
      { { "diff", "--to", "head" }, "tide diff needs %-%-from X and %-%-to Y" },
      { { "diff", "--from", "base", "--to", "head" }, "this needs a dev database: give %-%-dev%-url URL" },
      { { "diff", "--from", "base", "--to", "nope", "--dev-url", dev_url }, 'unknown target "nope"' },
      { { "diff", "--from", "base", "--to", "head", "--rename", "t", "--dev-url", dev_url },
        "%-%-rename t: write old=new" },
      { { "diff", "--from", "base", "--to", "head", "--format", "yaml" }, "%-%-format yaml: use lua or sql" },
    }
    for _, case in ipairs(cases) do
      local r = H.tide(case[1], { dir = dir })
      assert.are.equal(2, r.code, r.output)
      assert.matches(case[2], r.stderr)
    end
    local hint = H.tide({ "diff", "--from", "001", "--to", "head", "--rename", "nosuch=x", "--dev-url", dev_url },
      { dir = dir })
    assert.are.equal(2, hint.code, hint.output)
    assert.matches("%-%-rename nosuch=x: no table, column, index, constraint or policy nosuch", hint.stderr)
  end)
end)

describe("the dev database #db", function()
  local ROLE = "tide_spec_nocreatedb"
  setup(function()
    H.sql(nil, string.format("DO $$BEGIN CREATE ROLE %s LOGIN PASSWORD 'pw'; EXCEPTION WHEN duplicate_object "
      .. "THEN NULL; END$$", ROLE))
  end)
  teardown(function()
    H.cleanup()
    pcall(H.sql, nil, "DROP ROLE IF EXISTS " .. ROLE)
  end)

  it("is dropped also when what runs in it fails", function()
    local before = #dev_databases()
    local dir = seed_project { ["../schema.sql"] = "CREATE TABLE broken (id int REFERENCES nowhere)" }
    local r = H.tide({ "diff", "--from", "base", "--to", "schema.sql", "--dev-url", dev_url }, { dir = dir })
    assert.are.equal(6, r.code, r.output)
    assert.matches('schema.sql: ERROR 42P01: relation "nowhere" does not exist', r.stderr)
    assert.are.equal(before, #dev_databases())
  end)

  it("for a role that may not create databases is the one named, which must be empty and is emptied again",
    function()
      local db = H.fresh_db()
      H.sql(nil, "ALTER DATABASE " .. db.name .. " OWNER TO " .. ROLE)
      local url = H.url(db.name, ROLE, "pw")
      local dir = seed_project()
      local r = H.tide({ "diff", "--from", "base", "--to", "head", "--dev-url", url }, { dir = dir })
      assert.are.equal(1, r.code, r.output)
      assert.matches('schema.create_table%(db, "users"', r.stdout)
      assert.are.same({}, H.tables(db))
      assert.is_nil(H.sql(db, "SELECT 1 AS x FROM pg_namespace WHERE nspname = 'tide'")[1])
      assert.are.equal(0, #H.sql(db, "SELECT 1 FROM pg_proc WHERE pronamespace = 'public'::regnamespace"))
      H.sql(db, "CREATE TABLE leftover (id int)")
      local busy = H.tide({ "diff", "--from", "base", "--to", "head", "--dev-url", url }, { dir = dir })
      assert.are.equal(2, busy.code, busy.output)
      assert.matches("the role may not create databases, and the database named is not empty", busy.stderr)
      assert.not_matches("pw@", busy.stderr)
    end)
end)

describe("tide dump #db", function()
  teardown(H.cleanup)

  it("prints the same bytes twice, and its SQL rebuilds the same schema", function()
    local db = H.fresh_db()
    local dir = seed_project()
    assert.are.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
    local one = H.tide({ "dump", "--url", db.url }, { dir = dir })
    local two = H.tide({ "dump", "--url", db.url }, { dir = dir })
    assert.are.equal(0, one.code, one.output)
    assert.are.equal(one.stdout, two.stdout)
    assert.matches("CREATE TABLE users %(", one.stdout)
    assert.not_matches("tide%.revision", one.stdout)
    local copy = H.fresh_db()
    H.sql(copy, (one.stdout:gsub("^%-%-[^\n]*\n", "")))
    local d = H.tide({ "diff", "--from", db.url, "--to", copy.url }, { dir = dir })
    assert.are.equal(0, d.code, d.output)
  end)

  it("names what it does not compare", function()
    local db = H.fresh_db()
    H.sql(db, "CREATE TYPE pair AS (x int, y int); CREATE TABLE t (id int); CREATE VIEW v AS SELECT id FROM t;"
      .. "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';"
      .. "CREATE TRIGGER v_insert INSTEAD OF INSERT ON v FOR EACH ROW EXECUTE FUNCTION f()")
    local r = H.tide { "dump", "--url", db.url }
    assert.are.equal(0, r.code, r.output)
    assert.matches("\n%-%- not compared: composite type public.pair\n", r.stdout)
    assert.matches("\n%-%- not compared: trigger on a view v_insert on v\n", r.stdout)
  end)

  it("--format lua writes a desired-state schema.lua that diff finds equal", function()
    local db = H.fresh_db()
    local dir = seed_project()
    assert.are.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
    local r = H.tide({ "dump", "--format", "lua", "--url", db.url }, { dir = dir })
    assert.are.equal(0, r.code, r.output)
    assert.matches("^%-%- The schema of [^\n]*\nlocal schema = require \"tide.schema\"\n", r.stdout)
    H.write(dir .. "/schema.lua", r.stdout)
    local d = H.tide({ "diff", "--from", db.url, "--to", "schema.lua", "--dev-url", dev_url }, { dir = dir })
    assert.are.equal(0, d.code, d.output)
  end)
end)

describe("tide new --autogenerate #db", function()
  teardown(H.cleanup)

  it("writes the next revision from head to the target, linted, and it applies", function()
    local dev = H.fresh_db()
    local dir = seed_project()
    assert.are.equal(0, H.tide({ "upgrade", "--url", dev.url }, { dir = dir }).code)
    H.sql(dev, "ALTER TABLE accounts ADD COLUMN note text; CREATE POLICY accounts_read ON accounts FOR SELECT "
      .. "USING (note IS NOT NULL)")
    local r = H.tide({ "new", "account notes", "--autogenerate", "--to", dev.url, "--dev-url", dev_url }, { dir = dir })
    assert.are.equal(0, r.code, r.output)
    -- (whatever id scheme `tide new` uses: the file and id it reports)
    local file, id = r.stdout:match("created (versions/[^ ]+_account_notes%.lua) %(revision ([^)]+)%)")
    assert.is_string(file, r.stdout)
    local text = H.read(dir .. "/" .. file)
    local head = "-- " .. id .. ": account notes\n-- Written by `tide new --autogenerate` from "
    assert.are.equal(head, text:sub(1, #head))
    assert.matches('schema.add_column%(db, "accounts", { "note", "text" }%)', text)
    assert.matches('rls.create_policy%(db, "accounts", "accounts_read"', text)
    assert.matches('down_revision = "002"', text)
    -- the file it wrote lints clean; the seed's 001 alone (without 003, which revokes it) keeps its
    -- SECURITY DEFINER helper executable by PUBLIC, and only that is found
    local lint = H.json(H.tide({ "lint", "--all", "--json" }, { dir = dir }))
    local found = {}
    for _, f in ipairs(lint.problems) do
      found[#found + 1] = f.revision .. " " .. f.rule
    end
    assert.are.same({ "001 definer_public" }, found)
    assert.are.equal(3, lint.checked)
    local live = H.fresh_db()
    assert.are.equal(0, H.tide({ "upgrade", "--url", live.url }, { dir = dir }).code)
    local same = H.tide({ "diff", "--from", live.url, "--to", dev.url }, { dir = dir })
    assert.are.equal(0, same.code, same.output)
  end)

  it("prints the lint findings of what it wrote, and says where it drops data", function()
    local dev = H.fresh_db()
    local dir = seed_project()
    assert.are.equal(0, H.tide({ "upgrade", "--url", dev.url }, { dir = dir }).code)
    H.sql(dev, "ALTER TABLE cards DROP COLUMN redeemed_at")
    local r = H.tide({ "new", "no redemption", "--autogenerate", "--to", dev.url, "--dev-url", dev_url }, { dir = dir })
    assert.are.equal(0, r.code, r.output)
    local file, id = r.stdout:match("created (versions/[^ ]+_no_redemption%.lua) %(revision ([^)]+)%)")
    assert.is_string(file, r.stdout)
    assert.truthy(r.stderr:find("tide: warning: lint destructive: revision " .. id .. " (" .. file .. ")", 1, true),
      r.stderr)
    assert.truthy(r.stderr:find(file .. " drops data in 1 place: read it before it runs", 1, true), r.stderr)
    assert.matches("%-%- destructive: drop column public.cards.redeemed_at %(its data is lost%)\n%s+"
      .. 'schema.drop_column%(db, "cards", "redeemed_at"%)', H.read(dir .. "/" .. file))
  end)

  it("takes the target from tide.lua, and writes nothing when head already matches it", function()
    local dev = H.fresh_db()
    local dir = seed_project(nil, string.format("return { dev_url = %q, autogenerate = { to = %q } }", dev_url,
      dev.url))
    assert.are.equal(0, H.tide({ "upgrade", "--url", dev.url }, { dir = dir }).code)
    local r = H.tide({ "new", "nothing" , "--autogenerate" }, { dir = dir })
    assert.are.equal(0, r.code, r.output)
    assert.matches("no changes: nothing written", r.stdout)
    assert.are.same({ ".keep", "001_initial.lua", "002_add_indexes.lua" }, (function()
      local names = {}
      for name in io.popen("ls -a " .. H.shell_quote(dir .. "/versions")):lines() do
        if name ~= "." and name ~= ".." and not name:match("^%.tide%-cache") then
          names[#names + 1] = name
        end
      end
      table.sort(names)
      return names
    end)())
  end)

  it("refuses an unknown key under autogenerate in tide.lua, and a missing target", function()
    local dir = seed_project(nil, "return { autogenerate = { too = 'x' } }")
    local r = H.tide({ "new", "x", "--autogenerate" }, { dir = dir })
    assert.are.equal(2, r.code, r.output)
    assert.matches("unknown key `autogenerate.too` %(did you mean `to`%?%)", r.stderr)
    local none = H.tide({ "new", "x", "--autogenerate" }, { dir = seed_project() })
    assert.are.equal(2, none.code, none.output)
    assert.matches("tide new %-%-autogenerate needs a target", none.stderr)
  end)
end)

describe("tide check --schema #db", function()
  local ROLE = "tide_check_app"
  setup(function()
    H.sql(nil, string.format("DO $$BEGIN CREATE ROLE %s; EXCEPTION WHEN duplicate_object THEN NULL; END$$", ROLE))
  end)
  teardown(function()
    H.cleanup()
    pcall(H.sql, nil, "DROP ROLE IF EXISTS " .. ROLE)
  end)

  -- A database at head, read-only from then on (what tide does to it must not write).
  local function live()
    local db = H.fresh_db()
    local dir = seed_project()
    assert.are.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
    return db, dir
  end

  local function check(db, dir, json)
    H.sql(nil, "ALTER DATABASE " .. db.name .. " SET default_transaction_read_only = on")
    local r = H.tide({ "check", "--schema", "--dev-url", dev_url, "--url", db.url, json and "--json" or nil },
      { dir = dir })
    H.sql(nil, "ALTER DATABASE " .. db.name .. " RESET default_transaction_read_only")
    return r
  end

  it("reports nothing on an untouched database", function()
    local db, dir = live()
    local r = check(db, dir)
    assert.are.equal(0, r.code, r.output)
    assert.matches("ok: the live schema is what revisions 002 give", r.stdout)
  end)

  local cases = {
    { "RLS disabled", "ALTER TABLE users DISABLE ROW LEVEL SECURITY",
      "RLS: row%-level security disabled: public.users" },
    { "NO FORCE", "ALTER TABLE vms NO FORCE ROW LEVEL SECURITY",
      "RLS: row%-level security no longer forced: public.vms" },
    { "a policy dropped", "DROP POLICY whitelist_grantee ON whitelist",
      "RLS: policy dropped: public.whitelist.whitelist_grantee" },
    { "a policy edited", "ALTER POLICY accounts_owner_or_admin ON accounts USING (true)",
      "RLS: policy changed: public.accounts.accounts_owner_or_admin" },
    { "a column added", "ALTER TABLE cards ADD COLUMN code text",
      "drift: column public.cards.code exists only in the live database" },
    { "an index dropped", "DROP INDEX ix_vms_status",
      "drift: index public.ix_vms_status is missing from the live database" },
    -- qualified: the sandbox's role is called tide, so "$user" would put it in tide's schema
    { "a function replaced", "CREATE OR REPLACE FUNCTION public.app_current_user_id() RETURNS bigint LANGUAGE sql "
      .. "STABLE RETURN 1", "drift: function public.app_current_user_id%(%) differs" },
    { "a grant added", "GRANT SELECT ON cards TO " .. ROLE, "RLS: grant widened: public.cards" },
  }
  for _, case in ipairs(cases) do
    it("catches " .. case[1] .. " made with psql, exit 1", function()
      local db, dir = live()
      H.sql(db, case[2])
      local r = check(db, dir)
      assert.are.equal(1, r.code, r.output)
      assert.matches(case[3], r.stdout)
      assert.matches("schema check failed: ", r.stdout)
    end)
  end

  it("lists RLS regressions before other differences, also in --json", function()
    local db, dir = live()
    H.sql(db, "ALTER TABLE cards ADD COLUMN code text; ALTER TABLE users NO FORCE ROW LEVEL SECURITY")
    local r = check(db, dir)
    assert.are.equal(1, r.code, r.output)
    assert.is_true(r.stdout:find("RLS: ", 1, true) < r.stdout:find("drift: ", 1, true), r.stdout)
    local j = H.json(check(db, dir, true))
    assert.is_false(j.ok)
    assert.are.equal("row-level security no longer forced", j.rls[1].what)
    assert.are.equal("public.cards.code", j.changes[1].name)
  end)
end)
