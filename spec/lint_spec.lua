-- spec/lint_spec.lua: tide.lint's rules, each positive and negative, on recorded SQL (no
-- database), then `tide lint` and `tide check` against the sandbox server.
local H = require "spec.support.helpers"
local lint = require "tide.lint"

local function rev(id, extra)
  local r = { revision = id, file = "versions/" .. id .. ".lua", transaction = true, allow = {} }
  for k, v in pairs(extra or {}) do
    r[k] = v
  end
  return r
end

-- The rules found for statements run by one revision (after `setup` statements of an earlier one).
local function rules(statements, opts)
  opts = opts or {}
  local items = {}
  if opts.setup then
    items[1] = { rev = rev("000"), statements = { opts.setup }, direction = "upgrade" }
  end
  items[#items + 1] = { rev = rev("001", opts.rev), statements = { statements },
    direction = opts.direction or "upgrade" }
  local found = {}
  for _, f in ipairs(lint.check(items, opts.lint)) do
    if f.revision == "001" then
      found[#found + 1] = f.allowed and (f.rule .. " (allowed)") or f.rule
    end
  end
  return found
end

describe("tide.lint", function()
  describe("split()", function()
    it("splits on semicolons outside quotes, dollar quotes and comments", function()
      local parts = lint.split("SELECT ';'; -- a; b\nCREATE FUNCTION f() RETURNS int AS $x$ SELECT 1; $x$ LANGUAGE sql;"
        .. " /* ; */ SELECT \"a;b\"")
      assert.equal(3, #parts)
      assert.equal("SELECT ''", parts[1].bare)
      assert.matches("^CREATE FUNCTION F%(%) RETURNS INT AS %$%$", parts[2].bare)
      assert.equal("SELECT A;B", parts[3].bare)
    end)
  end)

  describe("index", function()
    it("flags CREATE INDEX without CONCURRENTLY on an existing table", function()
      assert.same({ "index" }, rules('CREATE INDEX i ON "public"."users" (email)'))
      assert.same({ "index" }, rules("create unique index i on users (email)"))
    end)
    it("accepts CONCURRENTLY, and any index on a table created earlier in the run", function()
      assert.same({}, rules("CREATE INDEX CONCURRENTLY i ON users (email)", { rev = { transaction = false } }))
      assert.same({}, rules("CREATE INDEX i ON users (email)", { setup = 'CREATE TABLE "users" (email text)' }))
    end)
  end)

  describe("not_null", function()
    it("flags ADD COLUMN ... NOT NULL without a default", function()
      assert.same({ "not_null" }, rules("ALTER TABLE users ADD COLUMN age int NOT NULL"))
    end)
    it("accepts a default, a nullable column, or a new table", function()
      assert.same({}, rules("ALTER TABLE users ADD COLUMN age int NOT NULL DEFAULT 0"))
      assert.same({}, rules("ALTER TABLE users ADD COLUMN age int"))
      assert.same({}, rules("ALTER TABLE users ADD COLUMN age int NOT NULL", { setup = "CREATE TABLE users ()" }))
    end)
  end)

  describe("rewrite", function()
    it("flags a column type change", function()
      assert.same({ "rewrite" }, rules("ALTER TABLE users ALTER COLUMN id TYPE bigint"))
      assert.same({ "rewrite" }, rules("ALTER TABLE users ALTER id SET DATA TYPE bigint"))
    end)
    it("accepts other column changes", function()
      assert.same({}, rules("ALTER TABLE users ALTER COLUMN id SET DEFAULT 0"))
    end)
  end)

  describe("not_valid", function()
    it("flags a foreign key or check constraint without NOT VALID", function()
      assert.same({ "not_valid" }, rules("ALTER TABLE a ADD CONSTRAINT a_b FOREIGN KEY (b) REFERENCES b (id)"))
      assert.same({ "not_valid" }, rules("ALTER TABLE a ADD CHECK (n > 0)"))
    end)
    it("accepts NOT VALID, VALIDATE CONSTRAINT and other constraints", function()
      assert.same({}, rules("ALTER TABLE a ADD CONSTRAINT a_b FOREIGN KEY (b) REFERENCES b (id) NOT VALID"))
      assert.same({}, rules("ALTER TABLE a VALIDATE CONSTRAINT a_b"))
      assert.same({}, rules("ALTER TABLE a ADD CONSTRAINT a_u UNIQUE (n)"))
    end)
  end)

  describe("destructive", function()
    it("flags DROP TABLE, DROP COLUMN and TRUNCATE in an upgrade", function()
      assert.same({ "destructive" }, rules("DROP TABLE users"))
      assert.same({ "destructive" }, rules("ALTER TABLE users DROP COLUMN email"))
      assert.same({ "destructive" }, rules("TRUNCATE users"))
    end)
    it("accepts DROP CONSTRAINT, and drops in a downgrade", function()
      assert.same({}, rules("ALTER TABLE users DROP CONSTRAINT users_email_key"))
      assert.same({ "destructive (allowed)" }, rules("DROP TABLE users", { direction = "downgrade" }))
    end)
    it("is allowed per revision with a reason", function()
      assert.same({ "destructive (allowed)" },
        rules("DROP TABLE users", { rev = { allow = { destructive = "unused" } } }))
    end)
    it("flags DROP SCHEMA, a column dropped without the word COLUMN, and drops inside a DO block", function()
      assert.same({ "destructive" }, rules("DROP SCHEMA app CASCADE"))
      assert.same({ "destructive" }, rules("ALTER TABLE ONLY users ADD COLUMN x int, DROP email"))
      assert.same({ "destructive" }, rules("DO $$ BEGIN EXECUTE 'drop table ' || 'users'; END $$"))
    end)
  end)

  describe("drops_data()", function()
    -- the one test behind both lint's `destructive` and the backup's refusal of a downgrade
    -- that loses data without a backup
    it("is true for each statement that loses data", function()
      for _, sql in ipairs {
        "DROP TABLE users", "drop table if exists app.users cascade", "DROP SCHEMA app CASCADE",
        "TRUNCATE users", "TRUNCATE TABLE a, b", "ALTER TABLE users DROP COLUMN email",
        "ALTER TABLE IF EXISTS ONLY app.users DROP COLUMN IF EXISTS email",
        "alter table users drop email", "ALTER TABLE users ADD COLUMN a int, DROP COLUMN b",
        "DO $$ BEGIN DROP TABLE users; END $$", "DO $body$ BEGIN TRUNCATE t; END $body$",
        "CREATE TABLE a (id int); DROP TABLE b",
      } do
        assert.is_true(lint.drops_data(sql), sql)
      end
    end)

    it("is false for what keeps the data, and for the words in comments and strings", function()
      for _, sql in ipairs {
        "ALTER TABLE users DROP CONSTRAINT users_email_key", "ALTER TABLE users ALTER COLUMN a DROP DEFAULT",
        "ALTER TABLE users ALTER COLUMN a DROP NOT NULL", "DROP INDEX users_email", "DROP VIEW v",
        "DROP FUNCTION f()", "DROP POLICY p ON users", "CREATE TABLE t (id int)",
        "-- DROP TABLE users\nCREATE INDEX i ON t (a)", "INSERT INTO notes VALUES ('DROP TABLE users; TRUNCATE x')",
        "/* ALTER TABLE t DROP COLUMN c */ SELECT 1", "DO $$ BEGIN RAISE NOTICE 'x'; END $$", "",
      } do
        assert.is_false(lint.drops_data(sql), sql)
      end
    end)
  end)

  describe("concurrently", function()
    it("flags CONCURRENTLY inside a transactional revision", function()
      assert.same({ "concurrently" }, rules("CREATE INDEX CONCURRENTLY i ON users (email)"))
      assert.same({ "concurrently" }, rules("DROP INDEX CONCURRENTLY i"))
    end)
    it("accepts it with transaction = false, and the word inside a string", function()
      assert.same({}, rules("DROP INDEX CONCURRENTLY i", { rev = { transaction = false } }))
      assert.same({}, rules("COMMENT ON TABLE users IS 'built concurrently'"))
    end)
  end)

  describe("allow", function()
    it("refuses an unknown rule with a suggestion, and an empty reason", function()
      local f = lint.check { { rev = rev("001", { allow = { destructiv = "x", index = "" } }), statements = {},
        direction = "upgrade" } }
      table.sort(f, function(a, b)
        return a.message < b.message
      end)
      assert.equal(2, #f)
      assert.matches("allow.index needs a reason", f[1].message)
      assert.matches("unknown lint rule `destructiv` %(did you mean `destructive`%?%)", f[2].message)
    end)
  end)
end)

describe("tide.lint row-level security rules", function()
  local RLS = { require_rls = true }

  it("says for each rule what to write instead", function()
    for rule, phrase in pairs {
      rls_missing = 'rls.enable_rls(db, "<table>", { force = true })',
      rls_disable = "keep it enabled and forced",
      definer_search_path = "SET search_path = pg_catalog, pg_temp",
      definer_public = "REVOKE ALL ON FUNCTION <name>(...) FROM PUBLIC",
      view_invoker = "WITH (security_invoker = true)",
      policy_per_row = "(SELECT f())",
      grant_public = "grant to the application role instead",
      bypassrls = "connect as a role without it",
    } do
      assert.matches(phrase, lint.rules[rule], 1, true)
    end
  end)

  describe("rls_missing", function()
    it("flags a table created without ENABLE and FORCE when the project requires RLS", function()
      assert.same({ "rls_missing" }, rules("CREATE TABLE t (id int)", { lint = RLS }))
      assert.same({ "rls_missing" }, rules("CREATE TABLE t (id int); ALTER TABLE t ENABLE ROW LEVEL SECURITY",
        { lint = RLS }))
      local f = lint.check({ { rev = rev("001"), statements = { 'CREATE TABLE "billing" (id int)' },
        direction = "upgrade" } }, RLS)
      assert.equal('table billing: ' .. lint.rules.rls_missing, f[1].message)
      assert.equal('CREATE TABLE "billing" (id int)', f[1].statement)
    end)
    it("accepts ENABLE and FORCE in the same revision, a temporary table, or a project without require_rls", function()
      assert.same({}, rules('CREATE TABLE "app"."t" (id int); '
        .. 'ALTER TABLE "app"."t" ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', { lint = RLS }))
      assert.same({}, rules("CREATE TEMP TABLE t (id int)", { lint = RLS }))
      assert.same({}, rules("CREATE TABLE t (id int)"))
    end)
    it("counts as fixed when a later revision enables and forces it", function()
      local f = lint.check({
        { rev = rev("001"), statements = { "CREATE TABLE t (id int)" }, direction = "upgrade" },
        { rev = rev("002"), statements = { "ALTER TABLE t ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY" },
          direction = "upgrade" },
      }, RLS)
      assert.equal(1, #f)
      assert.equal("fixed by revision 002 (versions/002.lua)", f[1].allowed)
    end)
    it("is allowed per revision with a reason", function()
      assert.same({ "rls_missing (allowed)" }, rules("CREATE TABLE t (id int)",
        { lint = RLS, rev = { allow = { rls_missing = "reference data, no user's rows" } } }))
    end)
  end)

  describe("rls_disable", function()
    it("flags DISABLE and NO FORCE ROW LEVEL SECURITY in an upgrade", function()
      assert.same({ "rls_disable" }, rules("ALTER TABLE t DISABLE ROW LEVEL SECURITY"))
      assert.same({ "rls_disable" }, rules("ALTER TABLE IF EXISTS ONLY t NO FORCE ROW LEVEL SECURITY"))
    end)
    it("accepts ENABLE and FORCE, and a downgrade undoing them", function()
      assert.same({}, rules("ALTER TABLE t ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY"))
      assert.same({ "rls_disable (allowed)", "rls_disable (allowed)" },
        rules("ALTER TABLE t NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY", { direction = "downgrade" }))
    end)
  end)

  describe("definer_search_path and definer_public", function()
    local DEFINER = "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$"
    local PINNED = "CREATE OR REPLACE FUNCTION app.f(a int) RETURNS int LANGUAGE sql SECURITY DEFINER "
      .. "SET search_path = pg_catalog, pg_temp RETURN a"
    it("flags a SECURITY DEFINER function without a pinned search_path, still executable by PUBLIC", function()
      assert.same({ "definer_search_path", "definer_public" }, rules(DEFINER))
      assert.same({ "definer_public" }, rules(PINNED))
      assert.same({ "definer_public" }, rules(PINNED .. "; REVOKE ALL ON FUNCTION app.f(int) FROM app_role"))
      assert.same({ "definer_public" }, rules("ALTER FUNCTION f() SECURITY DEFINER"))
    end)
    it("accepts a pinned search_path and EXECUTE revoked from PUBLIC in the same revision", function()
      assert.same({}, rules(PINNED .. "; REVOKE ALL ON FUNCTION app.f(int) FROM PUBLIC"))
      assert.same({}, rules(PINNED .. "; REVOKE EXECUTE ON FUNCTION g(), app.f(int) FROM app, PUBLIC"))
      assert.same({}, rules(DEFINER .. "; ALTER FUNCTION f() SET search_path = pg_catalog; "
        .. "REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC"))
      assert.same({}, rules("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$"))
      assert.same({}, rules("CREATE FUNCTION f() RETURNS text LANGUAGE sql RETURN 'SECURITY DEFINER'"))
    end)
    it("counts a REVOKE of a later revision as the fix of an earlier one", function()
      local f = lint.check({
        { rev = rev("001"), statements = { PINNED }, direction = "upgrade" },
        { rev = rev("002"), statements = { "REVOKE ALL ON FUNCTION app.f(int) FROM PUBLIC" }, direction = "upgrade" },
      })
      assert.equal(1, #f)
      assert.equal("definer_public", f[1].rule)
      assert.equal("function f: " .. lint.rules.definer_public, f[1].message)
      assert.equal("fixed by revision 002 (versions/002.lua)", f[1].allowed)
    end)
  end)

  describe("view_invoker", function()
    it("flags a view over an RLS table without security_invoker", function()
      assert.same({ "view_invoker" }, rules("CREATE VIEW v AS SELECT * FROM accounts", { lint = RLS }))
      assert.same({ "view_invoker" }, rules("CREATE OR REPLACE VIEW v WITH (security_invoker = false) AS "
        .. "SELECT a.id FROM x JOIN public.accounts a ON true", { lint = { rls_tables = { "accounts" } } }))
      assert.same({ "view_invoker" }, rules("CREATE VIEW v AS SELECT * FROM t",
        { setup = "CREATE TABLE t (); ALTER TABLE t ENABLE ROW LEVEL SECURITY" }))
    end)
    it("accepts security_invoker, or a view over tables without RLS", function()
      assert.same({}, rules("CREATE VIEW v WITH (security_invoker = true) AS SELECT * FROM accounts", { lint = RLS }))
      assert.same({}, rules("CREATE VIEW v WITH (security_barrier, security_invoker) AS SELECT * FROM accounts",
        { lint = RLS }))
      assert.same({}, rules("CREATE VIEW v AS SELECT * FROM accounts; ALTER VIEW v SET (security_invoker = on)",
        { lint = RLS }))
      assert.same({}, rules("CREATE VIEW v AS SELECT * FROM t", { lint = { rls_tables = { "accounts" } } }))
    end)
  end)

  describe("policy_per_row", function()
    it("flags a function of no column called outside (SELECT f())", function()
      assert.same({ "policy_per_row" },
        rules('CREATE POLICY "own" ON "accounts" USING (owner_id = app_current_user_id())'))
      assert.same({ "policy_per_row" },
        rules("CREATE POLICY p ON t USING (owner_id = current_setting('app.user_id', true)::bigint)"))
      assert.same({ "policy_per_row" }, rules("ALTER POLICY p ON t WITH CHECK (EXISTS (SELECT 1 FROM w "
        .. "WHERE w.user_id = auth.uid()))"))
    end)
    it("accepts (SELECT f()), IN (SELECT f()), and functions of a column", function()
      assert.same({}, rules("CREATE POLICY p ON t USING (owner_id = (SELECT app_current_user_id()) "
        .. "OR (SELECT app_current_user_is_admin()))"))
      assert.same({}, rules("CREATE POLICY p ON t FOR SELECT USING (id IN (SELECT app_whitelisted_vm_ids()))"))
      assert.same({}, rules("CREATE POLICY p ON t USING (lower(email) = 'x' AND length(name) > 2)"))
    end)
    it("accepts (SELECT f()) as PostgreSQL prints it back, with the column alias (pg_get_expr)", function()
      assert.same({}, rules("CREATE POLICY p ON t USING (((owner_id = ( SELECT app_current_user_id() AS "
        .. "app_current_user_id)) OR ( SELECT app_current_user_is_admin() AS app_current_user_is_admin)))"))
      assert.same({}, rules('CREATE POLICY p ON t USING ((owner_id = ( SELECT "MyF"() AS "MyF")))'))
      assert.same({ "policy_per_row" }, rules("CREATE POLICY p ON t USING ((owner_id = ( SELECT f() AS f) + g()))"))
    end)
  end)

  describe("grant_public", function()
    it("flags GRANT ... TO PUBLIC on an RLS table", function()
      assert.same({ "grant_public" }, rules("GRANT SELECT ON accounts TO PUBLIC", { lint = RLS }))
      assert.same({ "grant_public" }, rules("GRANT SELECT (id), UPDATE ON TABLE public.accounts, logs TO app, public",
        { lint = { rls_tables = { "accounts" } } }))
      assert.same({ "grant_public" }, rules("GRANT SELECT ON ALL TABLES IN SCHEMA public TO PUBLIC", { lint = RLS }))
    end)
    it("accepts a grant to a role, on another kind of object, or on a table without RLS", function()
      assert.same({}, rules('GRANT SELECT ON accounts TO "app"', { lint = RLS }))
      assert.same({}, rules("GRANT EXECUTE ON FUNCTION f() TO PUBLIC", { lint = RLS }))
      assert.same({}, rules("GRANT USAGE ON SCHEMA public TO PUBLIC", { lint = RLS }))
      assert.same({}, rules("GRANT SELECT ON logs TO PUBLIC", { lint = { rls_tables = { "accounts" } } }))
    end)
  end)

  describe("bypassrls", function()
    it("flags a role created or altered with BYPASSRLS", function()
      assert.same({ "bypassrls" }, rules("CREATE ROLE reporting LOGIN BYPASSRLS"))
      assert.same({ "bypassrls" }, rules("ALTER USER app WITH BYPASSRLS"))
    end)
    it("accepts NOBYPASSRLS", function()
      assert.same({}, rules("CREATE ROLE app LOGIN NOBYPASSRLS"))
      assert.same({}, rules("ALTER ROLE app NOBYPASSRLS"))
    end)
  end)
end)

describe("tide lint #db", function()
  after_each(H.cleanup)

  local function project()
    local revs = H.chain(1)
    revs["002_idx.lua"] = H.revision { revision = "002", down_revision = "001", up = "CREATE INDEX t1_id ON t1 (id)" }
    revs["003_drop.lua"] = H.revision { revision = "003", down_revision = "002", up = "DROP TABLE t1",
      extra = 'allow = { destructive = "t1 is unused since v2" },' }
    return H.project(revs)
  end

  it("lints only pending revisions, naming revision, file and statement; exit 1", function()
    local db = H.fresh_db()
    local dir = project()
    local r = H.tide({ "lint", "--url", db.url }, { dir = dir })
    -- nothing applied: 001 creates t1, so the index on it is fine; the drop is allowed
    assert.equal(0, r.code, r.stdout)
    assert.matches("allowed destructive: revision 003 %(.-003_drop.lua%): t1 is unused since v2", r.stdout)
    assert.equal(0, H.tide({ "upgrade", "001", "--url", db.url }, { dir = dir }).code)
    r = H.tide({ "lint", "--url", db.url }, { dir = dir })
    assert.equal(1, r.code)
    assert.matches("lint index: revision 002 %(.-002_idx.lua%): CREATE INDEX without CONCURRENTLY", r.stdout)
    assert.matches("CREATE INDEX t1_id ON t1 %(id%)", r.stdout)
    local j = H.tide({ "lint", "--json", "--url", db.url }, { dir = dir })
    local result = require("tide.json").decode(j.stdout)
    assert.equal(1, #result.problems)
    assert.equal("index", result.problems[1].rule)
    assert.equal("002", result.problems[1].revision)
    -- `tide check` includes it
    local c = H.tide({ "check", "--url", db.url }, { dir = dir })
    assert.equal(1, c.code)
    assert.matches("problem: lint index: revision 002", c.stdout)
  end)

  it("judges a pending view by the row-level security the database already has", function()
    local db = H.fresh_db()
    local revs = {
      ["001_t.lua"] = H.revision { revision = "001", up = "CREATE TABLE t (id int); "
        .. "ALTER TABLE t ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY" },
      ["002_v.lua"] = H.revision { revision = "002", down_revision = "001", up = "CREATE VIEW v AS SELECT id FROM t" },
    }
    local dir = H.project(revs)
    assert.equal(0, H.tide({ "upgrade", "001", "--url", db.url }, { dir = dir }).code)
    local r = H.tide({ "lint", "--url", db.url }, { dir = dir })
    assert.equal(1, r.code, r.output)
    assert.matches("lint view_invoker: revision 002 %(.-002_v.lua%): view v: a view over a row%-level security "
      .. "table applies the policies as the view's owner", r.stdout)
    local c = H.tide({ "check", "--url", db.url }, { dir = dir })
    assert.equal(1, c.code)
    assert.matches("problem: lint view_invoker: revision 002", c.stdout)
  end)

  it("requires RLS on every new table with lint.require_rls, and only then", function()
    local revs = { ["001_t.lua"] = H.revision { revision = "001", up = "CREATE TABLE t (id int)" } }
    local r = H.tide({ "lint", "--all" }, { dir = H.project(revs, "return { lint = { require_rls = true } }") })
    assert.equal(1, r.code, r.output)
    assert.matches("lint rls_missing: revision 001 %(.-001_t.lua%): table t: created without ENABLE and FORCE ROW "
      .. "LEVEL SECURITY", r.stdout)
    assert.matches("1 revision linted, 1 problem", r.stdout)
    r = H.tide({ "lint", "--all" }, { dir = H.project(revs, "return { lint = { require_rls = false } }") })
    assert.equal(0, r.code, r.output)
  end)

  it("passes the shipped revisions with require_rls, 001's PUBLIC helper fixed by 003", function()
    local r = H.tide({ "lint", "--all" }, { dir = H.source_dir })
    assert.equal(0, r.code, r.output)
    assert.matches("allowed definer_public: revision 001 %(versions/001_initial.lua%): fixed by revision 003 "
      .. "%(versions/003_harden_rls.lua%)", r.stdout)
    assert.matches("ok: 3 revisions linted, 0 problems", r.stdout)
  end)

  it("--all lints every revision without a database", function()
    local dir = project()
    local r = H.tide({ "lint", "--all", "--url", "postgresql://nobody@127.0.0.1:1/none" }, { dir = dir })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("3 revisions linted, 0 problems", r.stdout)
  end)

  -- The issue's trial: a typo in a DSL option was "not linted", then "ok", exit 0; upgrade failed.
  local CANNOT_RUN = {
    ["002_typo.lua"] = [[
local schema = require "tide.schema"
return {
  revision = "002", down_revision = "001", message = "typo",
  upgrade = function(db)
    schema.create_table(db, "invoices", { columns = {
      { "owner_id", "bigint", refrences = "t1" },
    } })
  end,
}
]],
    ["003_lua.lua"] = [[
return {
  revision = "003", down_revision = "002", message = "lua error",
  upgrade = function(db)
    db:exce("CREATE TABLE x ()")
  end,
}
]],
    ["004_raises.lua"] = [[
return {
  revision = "004", down_revision = "003", message = "raises",
  upgrade = function(db)
    db:exec("CREATE TABLE y ()")
    error({ code = 42 })
  end,
}
]],
  }

  it("reports a pending revision that cannot run as a problem, with file and line; so does check", function()
    local revs = H.chain(1)
    for name, source in pairs(CANNOT_RUN) do
      revs[name] = source
    end
    local dir = H.project(revs)
    local db = H.fresh_db()
    local r = H.tide({ "lint", "--url", db.url }, { dir = dir })
    assert.equal(1, r.code, r.output)
    assert.matches("cannot run: revision 002 %(versions/002_typo.lua:5%): unknown option `refrences` to column "
      .. "`owner_id` in create_table: did you mean `references`%?\n", r.stdout)
    assert.matches("cannot run: revision 003 %(versions/003_lua.lua:4%): .-exce", r.stdout)
    assert.matches("cannot run: revision 004 %(versions/004_raises.lua:5%): error object {\"code\":42}", r.stdout)
    assert.matches("lint failed: 1 revision linted, 3 problems\n$", r.stdout)
    assert.not_matches("not linted", r.output)
    local j = H.json(H.tide({ "lint", "--json", "--url", db.url }, { dir = dir }))
    assert.equal("cannot_run", j.problems[1].rule)
    assert.equal("versions/002_typo.lua:5", j.problems[1].where)
    local c = H.tide({ "check", "--url", db.url }, { dir = dir })
    assert.equal(1, c.code, c.output)
    assert.matches("problem: cannot run: revision 002 %(versions/002_typo.lua:5%): unknown option `refrences`",
      c.stdout)
    assert.matches("problem: cannot run: revision 004", c.stdout)
    -- check --offline builds every revision
    c = H.tide({ "check", "--offline", "--url", "postgresql://nobody@127.0.0.1:1/none" }, { dir = dir })
    assert.equal(1, c.code, c.output)
    assert.matches("problem: cannot run: revision 003 %(versions/003_lua.lua:4%)", c.stdout)
    -- an applied revision is not linted again; check still builds pending ones only
    H.write(dir .. "/versions/002_typo.lua", (CANNOT_RUN["002_typo.lua"]:gsub("refrences", "references")))
    assert.equal(0, H.tide({ "upgrade", "002", "--url", db.url }, { dir = dir }).code)
    c = H.tide({ "check", "--url", db.url }, { dir = dir })
    assert.equal(1, c.code, c.output)
    assert.not_matches("revision 002", c.stdout)
    assert.matches("problem: cannot run: revision 003", c.stdout)
  end)

  it("lints a revision that reads data up to the read, and says it cannot lint the rest (not a problem)", function()
    local revs = H.chain(1)
    revs["002_reads.lua"] = [[
return {
  revision = "002", down_revision = "001", message = "reads",
  upgrade = function(db)
    db:exec("ALTER TABLE t1 ADD v int")
    local row = db:one("SELECT count(*) AS n FROM t1")
    db:exec("CREATE TABLE copy" .. row.n .. " ()")
  end,
}
]]
    local dir = H.project(revs)
    local db = H.fresh_db()
    local r = H.tide({ "lint", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.output)
    assert.matches("not linted: revision 002 %(versions/002_reads.lua:5%): reads data there %(db:query or db:one of a "
      .. "statement that returns rows%); what it sends from there on is not known without a database", r.stdout)
    assert.matches("ok: 1 revision linted, 0 problems, 1 not linted %(reads data%)\n$", r.stdout)
    local j = H.json(H.tide({ "lint", "--json", "--url", db.url }, { dir = dir }))
    assert.equal("versions/002_reads.lua:5", j.unrecorded[1].where)
    assert.same({}, j.problems)
    local c = H.tide({ "check", "--url", db.url }, { dir = dir })
    assert.equal(0, c.code, c.output)
    assert.matches("tide: not linted: revision 002", c.stderr)
    -- what it sent before the read is linted
    assert.equal(0, H.tide({ "upgrade", "001", "--url", db.url }, { dir = dir }).code)
    H.write(dir .. "/versions/002_reads.lua", (revs["002_reads.lua"]:gsub("ADD v int", "ADD v int NOT NULL")))
    r = H.tide({ "lint", "--url", db.url }, { dir = dir })
    assert.equal(1, r.code, r.output)
    assert.matches("lint not_null: revision 002", r.stdout)
  end)

  it("counts RETURNING as reading data, and an error after a db:query as not lintable, with the error", function()
    local revs = H.chain(1)
    revs["002_returning.lua"] = [[
return {
  revision = "002", down_revision = "001", message = "returning",
  upgrade = function(db)
    local row = db:one("INSERT INTO t1 (id) VALUES (1) RETURNING id")
    db:exec("CREATE TABLE r" .. row.id .. " ()")
  end,
}
]]
    revs["003_count.lua"] = [[
return {
  revision = "003", down_revision = "002", message = "count",
  upgrade = function(db)
    local _, n = db:query("DELETE FROM t1 WHERE id > 1000")
    assert(n > 0, "nothing deleted")
  end,
}
]]
    local dir = H.project(revs)
    local r = H.tide({ "lint", "--all" }, { dir = dir })
    assert.equal(0, r.code, r.output)
    assert.matches("not linted: revision 002 %(versions/002_returning.lua:4%): reads data there", r.stdout)
    assert.matches("not linted: revision 003 %(versions/003_count.lua:4%): reads data there %(db:query%), then raised "
      .. "at versions/003_count.lua:5, perhaps because the recording answered no rows: nothing deleted", r.stdout)
    assert.matches("ok: 1 revision linted, 0 problems, 2 not linted %(reads data%)\n$", r.stdout)
  end)
end)
