-- spec/schema_spec.lua: tide.schema builds exactly the SQL documented, quotes every identifier,
-- refuses unknown options and types with a suggestion, and sends one statement per call.
local schema = require "tide.schema"
local sql = require "tide.sql"
local build = schema.sql

local support = require "spec.support.dsl"

local HOSTILE, QUOTED = support.HOSTILE, support.QUOTED

-- Asserts that fn(...) raises a tide.Error (kind "run") with `expected`, located at a line of
-- this spec file (the caller), not inside the DSL: the pcall must stay in this file for that.
local function raises(expected, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  assert.are.equal(require("tide.core").Error, getmetatable(err), "not a tide.Error: " .. tostring(err))
  assert.are.equal("run", err.kind)
  local position, message = tostring(err):match("^(.-schema_spec%.lua:%d+: )(.*)$")
  assert.is_truthy(position, "error not located in the spec: " .. tostring(err))
  assert.equal(expected, message)
end

local recorder = support.recorder

describe("tide.schema", function()
  describe("create_table()", function()
    it("writes one column per line with every column option", function()
      assert.equal([[
CREATE TABLE "users" (
  "id" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  "email" varchar(255) NOT NULL UNIQUE,
  "score" numeric(10,2) DEFAULT 0 CHECK (score >= 0),
  "status" text DEFAULT 'it''s new' NOT NULL,
  "created_at" timestamptz DEFAULT now() NOT NULL,
  "tags" text[] DEFAULT '{}',
  "parent_id" bigint REFERENCES "users" ON DELETE SET NULL ON UPDATE CASCADE,
  "org_id" bigint REFERENCES "app"."orgs" ("key") ON DELETE CASCADE
)]], build.create_table("users", {
        columns = {
          { "id", "bigint", identity = "always", primary_key = true },
          { "email", "varchar(255)", not_null = true, unique = true },
          { "score", "numeric(10, 2)", default = 0, check = "score >= 0" },
          { "status", "text", not_null = true, default = "it's new" },
          { "created_at", "timestamptz", not_null = true, default = sql.raw("now()") },
          { "tags", "text[]", default = "{}" },
          { "parent_id", "bigint", references = "users", on_delete = "set null", on_update = "cascade" },
          { "org_id", "bigint", references = { table = { schema = "app", name = "orgs" }, column = "key" },
            on_delete = "CASCADE" },
        },
      }))
    end)

    it("writes table constraints after the columns", function()
      assert.equal([[
CREATE TABLE IF NOT EXISTS "app"."whitelist" (
  "vm_id" bigint,
  "owner_id" bigint,
  PRIMARY KEY ("vm_id", "owner_id"),
  CONSTRAINT "one_per_user" UNIQUE ("vm_id", "owner_id"),
  CONSTRAINT "not_self" CHECK (vm_id <> owner_id),
  FOREIGN KEY ("vm_id", "owner_id") REFERENCES "vms" ("id", "owner_id") ON DELETE CASCADE ON UPDATE NO ACTION,
  FOREIGN KEY ("owner_id") REFERENCES "users" ON DELETE RESTRICT
)]], build.create_table({ schema = "app", name = "whitelist" }, {
        if_not_exists = true,
        columns = { { "vm_id", "bigint" }, { "owner_id", "bigint" } },
        constraints = {
          { primary_key = { "vm_id", "owner_id" } },
          { unique = { "vm_id", "owner_id" }, name = "one_per_user" },
          { check = "vm_id <> owner_id", name = "not_self" },
          { foreign_key = { "vm_id", "owner_id" }, references = { table = "vms", columns = { "id", "owner_id" } },
            on_delete = "cascade", on_update = "no_action" },
          { foreign_key = "owner_id", references = "users", on_delete = "restrict" },
        },
      }))
    end)

    it("quotes hostile table, column and constraint names", function()
      assert.equal(([[
CREATE TABLE %s (
  %s text REFERENCES %s (%s),
  CONSTRAINT %s CHECK (true)
)]]):gsub("%%s", QUOTED), build.create_table(HOSTILE, {
        columns = { { HOSTILE, "text", references = { table = HOSTILE, column = HOSTILE } } },
        constraints = { { check = "true", name = HOSTILE } },
      }))
    end)

    it("canonicalizes the spelling of types", function()
      local function type_of(name)
        return build.create_table("t", { columns = { { "c", name } } }):match('"c" (.-)\n')
      end
      assert.equal("varchar(255)", type_of("VARCHAR( 255 )"))
      assert.equal("text[]", type_of("text []"))
      assert.equal("integer[][3]", type_of("Integer[][3]"))
      assert.equal("timestamp(3) with time zone", type_of("timestamp (3)  WITH time zone"))
      assert.equal("double precision", type_of("double   precision"))
      assert.equal("character varying(20)", type_of("character varying(20)"))
      assert.equal("uuid", type_of("uuid"))
      assert.equal("jsonb", type_of("jsonb"))
      assert.equal("mood", type_of(sql.raw("mood")))
    end)

    it("refuses an unknown type with a suggestion", function()
      local function with_type(name)
        return function()
          return build.create_table("t", { columns = { { "c", name } } })
        end
      end
      raises("unknown column type `intger` for column `c` in create_table: did you mean `integer`?",
        with_type("intger"))
      raises("unknown column type `timestampz` for column `c` in create_table: did you mean `timestamptz`?",
        with_type("timestampz"))
      raises("unknown column type `varchr(10)` for column `c` in create_table: did you mean `varchar`?",
        with_type("varchr(10)"))
      raises("unknown column type `text; drop table x` for column `c` in create_table: not a built-in type "
        .. "tide knows; write sql.raw(...) for enums, domains and extension types", with_type("text; drop table x"))
      raises("unknown column type `mood` for column `c` in create_table: not a built-in type tide knows; "
        .. "write sql.raw(...) for enums, domains and extension types", with_type("mood"))
    end)

    it("refuses wrong type modifiers", function()
      local function with_type(name)
        return function()
          return build.create_table("t", { columns = { { "c", name } } })
        end
      end
      raises("type `varchar(1,2)` for column `c` in create_table takes at most 1 modifier", with_type("varchar(1,2)"))
      raises("type `text(5)` for column `c` in create_table takes no modifiers", with_type("text(5)"))
      raises("type `numeric(1,2,3)` for column `c` in create_table takes at most 2 modifiers",
        with_type("numeric(1,2,3)"))
      raises("bad type modifier in `varchar(n)` for column `c` in create_table: expected numbers like (10) or (10,2)",
        with_type("varchar(n)"))
      raises("unknown column type `bit(3) varying` for column `c` in create_table: did you mean `bit varying`?",
        with_type("bit(3) varying"))
      raises("column `c` in create_table: the type must be a string or sql.raw(...), got number", with_type(5))
    end)

    it("refuses unknown options with a suggestion", function()
      raises("unknown option `colums` to create_table: did you mean `columns`?", build.create_table, "t",
        { colums = {} })
      raises("unknown option `not_nul` to column `id` in create_table: did you mean `not_null`?",
        build.create_table, "t", { columns = { { "id", "bigint", not_nul = true } } })
      raises("unknown option `on_delte` to column `id` in create_table: did you mean `on_delete`?",
        build.create_table, "t", { columns = { { "id", "bigint", references = "u", on_delte = "cascade" } } })
      raises("unknown option `uniq` to a constraint in create_table: did you mean `unique`?",
        build.create_table, "t", { columns = { { "id", "bigint" } }, constraints = { { uniq = { "id" } } } })
      raises("unknown option `colum` to references of column `id` in create_table: did you mean `column`?",
        build.create_table, "t", { columns = { { "id", "bigint", references = { table = "u", colum = "id" } } } })
    end)

    it("refuses options of the wrong type", function()
      raises("option `not_null` to column `id` in create_table must be a boolean, got string", build.create_table,
        "t", { columns = { { "id", "bigint", not_null = "yes" } } })
      raises("option `default` to column `id` in create_table must be a string, number, boolean or sql.raw(...), "
        .. "got table", build.create_table, "t", { columns = { { "id", "bigint", default = {} } } })
      raises("create_table: options must be a table, got string", build.create_table, "t", "columns")
    end)

    it("refuses unknown referential actions and identity kinds", function()
      raises("unknown on_delete action `cascde`: did you mean `cascade`?", build.create_table, "t",
        { columns = { { "id", "bigint", references = "u", on_delete = "cascde" } } })
      raises("unknown identity of column `id` in create_table `allways`: did you mean `always`?",
        build.create_table, "t", { columns = { { "id", "bigint", identity = "allways" } } })
    end)

    it("refuses contradictory or incomplete columns and constraints", function()
      raises("create_table: `columns` must list at least one column", build.create_table, "t", { columns = {} })
      raises("create_table: `columns` must list at least one column", build.create_table, "t", nil)
      raises("column `id` in create_table: missing type (the second entry)", build.create_table, "t",
        { columns = { { "id" } } })
      raises("create_table: a column needs its name as the first entry, got nil", build.create_table, "t",
        { columns = { { type = "text" } } })
      raises("column `id` in create_table: a column cannot have both `identity` and `default`",
        build.create_table, "t", { columns = { { "id", "bigint", identity = "always", default = 1 } } })
      raises("column `id` in create_table: `on_delete`/`on_update` need `references`", build.create_table, "t",
        { columns = { { "id", "bigint", on_delete = "cascade" } } })
      raises("a constraint in create_table has both `primary_key` and `unique`: write one constraint per entry",
        build.create_table, "t", { columns = { { "id", "bigint" } },
          constraints = { { primary_key = { "id" }, unique = { "id" } } } })
      raises("a constraint in create_table needs one of `primary_key`, `unique`, `check`, `foreign_key`",
        build.create_table, "t", { columns = { { "id", "bigint" } }, constraints = { { name = "x" } } })
      raises("a constraint in create_table: a `foreign_key` needs `references`", build.create_table, "t",
        { columns = { { "id", "bigint" } }, constraints = { { foreign_key = { "id" } } } })
      raises("a constraint in create_table: `references`, `on_delete` and `on_update` belong to a `foreign_key`",
        build.create_table, "t", { columns = { { "id", "bigint" } },
          constraints = { { unique = { "id" }, on_delete = "cascade" } } })
    end)

    it("refuses empty and over-long identifiers", function()
      raises("sql.ident: identifier must not be empty", build.create_table, "", { columns = { { "id", "int" } } })
      raises("sql.ident: identifier must not be empty", build.create_table, "t", { columns = { { "", "int" } } })
      raises(('sql.ident: identifier "%s" is 64 bytes long; PostgreSQL would truncate it to 63'):format(("n"):rep(64)),
        build.create_table, ("n"):rep(64), { columns = { { "id", "int" } } })
    end)
  end)

  describe("drop_table()", function()
    it("writes DROP TABLE with its options", function()
      assert.equal('DROP TABLE "users"', build.drop_table("users"))
      assert.equal('DROP TABLE IF EXISTS "app"."users" CASCADE',
        build.drop_table({ schema = "app", name = "users" }, { if_exists = true, cascade = true }))
      assert.equal("DROP TABLE " .. QUOTED, build.drop_table(HOSTILE))
    end)

    it("refuses unknown options", function()
      raises("unknown option `if_exist` to drop_table: did you mean `if_exists`?", build.drop_table, "t",
        { if_exist = true })
    end)
  end)

  describe("add_column()", function()
    it("writes ADD COLUMN with a full column definition", function()
      assert.equal([[ALTER TABLE "users" ADD COLUMN "nick" varchar(32) DEFAULT '' NOT NULL]],
        build.add_column("users", { "nick", "varchar(32)", not_null = true, default = "" }))
      assert.equal([[ALTER TABLE "users" ADD COLUMN IF NOT EXISTS "org_id" bigint REFERENCES "orgs" ON DELETE CASCADE]],
        build.add_column("users", { "org_id", "bigint", references = "orgs", on_delete = "cascade" },
          { if_not_exists = true }))
      assert.equal(("ALTER TABLE %s ADD COLUMN %s text"):gsub("%%s", QUOTED), build.add_column(HOSTILE,
        { HOSTILE, "text" }))
    end)

    it("refuses unknown options and types", function()
      raises("unknown option `if_not_exist` to add_column: did you mean `if_not_exists`?", build.add_column, "t",
        { "c", "text" }, { if_not_exist = true })
      raises("unknown column type `txt` for column `c` in add_column: did you mean `text`?", build.add_column, "t",
        { "c", "txt" })
    end)
  end)

  describe("drop_column()", function()
    it("writes DROP COLUMN with its options", function()
      assert.equal([[ALTER TABLE "users" DROP COLUMN "nick"]], build.drop_column("users", "nick"))
      assert.equal([[ALTER TABLE "users" DROP COLUMN IF EXISTS "nick" CASCADE]],
        build.drop_column("users", "nick", { if_exists = true, cascade = true }))
      assert.equal(("ALTER TABLE %s DROP COLUMN %s"):gsub("%%s", QUOTED), build.drop_column(HOSTILE, HOSTILE))
    end)

    it("refuses unknown options", function()
      raises("unknown option `cascde` to drop_column: did you mean `cascade`?", build.drop_column, "t", "c",
        { cascde = true })
    end)
  end)

  describe("rename_column()", function()
    it("writes RENAME COLUMN", function()
      assert.equal([[ALTER TABLE "users" RENAME COLUMN "nick" TO "nickname"]],
        build.rename_column("users", "nick", "nickname"))
      assert.equal(("ALTER TABLE %s RENAME COLUMN %s TO %s"):gsub("%%s", QUOTED),
        build.rename_column(HOSTILE, HOSTILE, HOSTILE))
    end)

    it("refuses a missing new name", function()
      raises("sql.ident: identifier must be a string, got nil", build.rename_column, "users", "nick")
    end)
  end)

  describe("alter_column()", function()
    it("writes every requested change into one statement", function()
      assert.equal([[ALTER TABLE "users" ALTER COLUMN "score" TYPE bigint USING (score::bigint), ]]
        .. [[ALTER COLUMN "score" SET DEFAULT 0, ALTER COLUMN "score" SET NOT NULL]],
        build.alter_column("users", "score",
          { type = "BIGINT", using = "score::bigint", default = 0, not_null = true }))
      assert.equal([[ALTER TABLE "users" ALTER COLUMN "nick" DROP DEFAULT, ALTER COLUMN "nick" DROP NOT NULL]],
        build.alter_column("users", "nick", { drop_default = true, not_null = false }))
      assert.equal([[ALTER TABLE "users" ALTER COLUMN "at" SET DEFAULT now()]],
        build.alter_column("users", "at", { default = sql.raw("now()") }))
      assert.equal(("ALTER TABLE %s ALTER COLUMN %s TYPE text"):gsub("%%s", QUOTED),
        build.alter_column(HOSTILE, HOSTILE, { type = "text" }))
    end)

    it("refuses nothing to do, contradictions and unknown options", function()
      raises("alter_column: nothing to change (give `type`, `default`, `drop_default` or `not_null`)",
        build.alter_column, "t", "c", {})
      raises("alter_column: `default` and `drop_default` contradict each other", build.alter_column, "t", "c",
        { default = 1, drop_default = true })
      raises("alter_column: `using` needs `type`", build.alter_column, "t", "c", { using = "c::int" })
      raises("unknown option `nullable` to alter_column: expected one of: type, using, default, drop_default, "
        .. "not_null", build.alter_column, "t", "c", { nullable = true })
      raises("unknown option `tpye` to alter_column: did you mean `type`?", build.alter_column, "t", "c",
        { tpye = "int" })
      raises("unknown column type `bigit` for column `c` in alter_column: did you mean `bigint`?",
        build.alter_column, "t", "c", { type = "bigit" })
    end)
  end)

  describe("create_index()", function()
    it("names the index ix_<table>_<columns> by default", function()
      assert.equal([[CREATE INDEX "ix_accounts_owner_id" ON "accounts" ("owner_id")]],
        build.create_index("accounts", "owner_id"))
      assert.equal("ix_accounts_owner_id_prime", schema.index_name("accounts", { "owner_id", "prime" }))
      assert.equal("ix_users_email", schema.index_name({ schema = "app", name = "users" }, "email"))
    end)

    it("writes every option", function()
      assert.equal([[CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "ix_accounts_owner_id_prime" ON "accounts" ]]
        .. [[USING btree ("owner_id", "prime") WHERE (NOT perm_lock)]],
        build.create_index("accounts", { "owner_id", "prime" }, {
          unique = true, concurrently = true, if_not_exists = true, using = "BTREE", where = "NOT perm_lock",
        }))
      assert.equal([[CREATE INDEX "users_lower_email" ON "app"."users" USING gin ((lower(email)), "id")]],
        build.create_index({ schema = "app", name = "users" }, { sql.raw("lower(email)"), "id" },
          { name = "users_lower_email", using = "gin" }))
    end)

    it("quotes hostile table, column and index names", function()
      assert.equal(("CREATE INDEX %s ON %s (%s)"):gsub("%%s", QUOTED),
        build.create_index(HOSTILE, HOSTILE, { name = HOSTILE }))
    end)

    it("refuses unknown options and methods with a suggestion", function()
      raises("unknown option `were` to create_index: did you mean `where`?", build.create_index, "t", "c",
        { were = "c > 0" })
      raises("unknown option `uniqe` to create_index: did you mean `unique`?", build.create_index, "t", "c",
        { uniqe = true })
      raises("unknown index method `gni`: did you mean `gin`?", build.create_index, "t", "c", { using = "gni" })
      raises("option `unique` to create_index must be a boolean, got string", build.create_index, "t", "c",
        { unique = "yes" })
    end)

    it("refuses an expression without a name, and no columns", function()
      raises("create_index: an index on an expression needs an explicit `name`", build.create_index, "t",
        { sql.raw("lower(c)") })
      raises("create_index: columns must be a column name or a non-empty list", build.create_index, "t", {})
    end)

    it("refuses a default name PostgreSQL would truncate", function()
      local long = ("c"):rep(60)
      raises(('sql.ident: identifier "ix_t_%s" is 65 bytes long; PostgreSQL would truncate it to 63'):format(long),
        build.create_index, "t", long)
    end)
  end)

  describe("drop_index()", function()
    it("writes DROP INDEX with its options", function()
      assert.equal([[DROP INDEX "ix_accounts_owner_id"]], build.drop_index("ix_accounts_owner_id"))
      assert.equal([[DROP INDEX CONCURRENTLY IF EXISTS "app"."ix"]],
        build.drop_index({ schema = "app", name = "ix" }, { concurrently = true, if_exists = true }))
      assert.equal([[DROP INDEX "ix" CASCADE]], build.drop_index("ix", { cascade = true }))
      assert.equal("DROP INDEX " .. QUOTED, build.drop_index(HOSTILE))
    end)

    it("refuses what PostgreSQL refuses and unknown options", function()
      raises("drop_index: PostgreSQL does not allow `concurrently` with `cascade`", build.drop_index, "ix",
        { concurrently = true, cascade = true })
      raises("unknown option `concurently` to drop_index: did you mean `concurrently`?", build.drop_index, "ix",
        { concurently = true })
    end)
  end)

  describe("grant() and revoke()", function()
    it("grants on tables, sequences and schemas", function()
      assert.equal([[GRANT SELECT, INSERT ON TABLE "users" TO "app"]],
        build.grant({ "select", "insert" }, "users", "app"))
      assert.equal([[GRANT ALL ON TABLE "app"."users", "vms" TO "app", PUBLIC WITH GRANT OPTION]],
        build.grant("all", { table = { { schema = "app", name = "users" }, "vms" } }, { "app", "public" },
          { with_grant_option = true }))
      assert.equal([[GRANT USAGE, SELECT ON SEQUENCE "users_id_seq" TO CURRENT_USER]],
        build.grant({ "usage", "select" }, { sequence = "users_id_seq" }, "current_user"))
      assert.equal([[GRANT USAGE ON SCHEMA "app" TO "web"]], build.grant("usage", { schema = "app" }, "web"))
      assert.equal([[GRANT SELECT, UPDATE ON ALL TABLES IN SCHEMA "app" TO "web"]],
        build.grant({ "SELECT", "Update" }, { all_tables_in_schema = "app" }, "web"))
      assert.equal([[GRANT USAGE ON ALL SEQUENCES IN SCHEMA "app" TO "web"]],
        build.grant("usage", { all_sequences_in_schema = "app" }, "web"))
    end)

    it("grants and revokes on columns of a table", function()
      assert.equal([[GRANT SELECT, INSERT ("owner_id", "amount"), UPDATE ("amount") ON TABLE "invoices" TO "app"]],
        build.grant({ "select", { "insert", columns = { "owner_id", "amount" } }, { "update", columns = "amount" } },
          "invoices", "app"))
      assert.equal(([[REVOKE REFERENCES (%s) ON TABLE "t" FROM PUBLIC]]):format(QUOTED),
        build.revoke({ { "references", columns = { HOSTILE } } }, "t", "public"))
    end)

    it("refuses column privileges that are not on a table, or that columns cannot have", function()
      raises("grant: {privilege, columns = {...}} is for column privileges on a table", build.grant,
        { { "usage", columns = { "a" } } }, { schema = "app" }, "web")
      raises("grant: DELETE cannot be granted on columns (only SELECT, INSERT, UPDATE, REFERENCES)", build.grant,
        { { "delete", columns = { "a" } } }, "t", "web")
      raises("grant columns must be a name or a non-empty list of names", build.grant,
        { { "insert", columns = {} } }, "t", "web")
      raises("unknown option `column` to grant privilege: did you mean `columns`?", build.grant,
        { { "insert", column = "a" } }, "t", "web")
    end)

    it("revokes", function()
      assert.equal([[REVOKE DELETE ON TABLE "users" FROM PUBLIC]], build.revoke("delete", "users", "public"))
      assert.equal([[REVOKE ALL ON SCHEMA "app" FROM "web", SESSION_USER CASCADE]],
        build.revoke("all", { schema = "app" }, { "web", "session_user" }, { cascade = true }))
    end)

    it("quotes hostile object and role names; only lower-case keywords are keywords", function()
      assert.equal(("GRANT SELECT ON TABLE %s TO %s, \"PUBLIC\""):gsub("%%s", QUOTED),
        build.grant("select", HOSTILE, { HOSTILE, "PUBLIC" }))
    end)

    it("refuses privileges the object cannot have, with a suggestion", function()
      raises("unknown privilege on table `selct`: did you mean `select`?", build.grant, "selct", "users", "app")
      raises("unknown privilege on schema `select`: expected one of: usage, create, all", build.grant, "select",
        { schema = "app" }, "app")
      raises("unknown option `tabel` to grant target: did you mean `table`?", build.grant, "select",
        { tabel = "users" }, "app")
      raises("unknown option `with_grant` to grant: did you mean `with_grant_option`?", build.grant, "select",
        "users", "app", { with_grant = true })
      raises("unknown option `casade` to revoke: did you mean `cascade`?", build.revoke, "select", "users", "app",
        { casade = true })
    end)

    it("refuses missing roles, privileges and objects", function()
      raises("grant: roles must be a role name or a non-empty list of role names", build.grant, "select", "users", {})
      raises("revoke: privileges must be a privilege or a non-empty list of privileges", build.revoke, {}, "users",
        "app")
      raises("grant: `on` names no object", build.grant, "select", {}, "app")
      raises("grant: grant on one kind of object per call (got `table` and `schema`)", build.grant, "usage",
        { table = "t", schema = "s" }, "app")
    end)
  end)

  describe("running through db", function()
    it("sends exactly the built statement, once, through db:exec", function()
      local calls = {
        { "create_table", "users", { columns = { { "id", "bigint" } } } },
        { "drop_table", "users", { if_exists = true } },
        { "add_column", "users", { "nick", "text" } },
        { "drop_column", "users", "nick" },
        { "rename_column", "users", "a", "b" },
        { "alter_column", "users", "a", { not_null = true } },
        { "create_index", "users", "a", { unique = true } },
        { "drop_index", "ix_users_a" },
        { "grant", "select", "users", "app" },
        { "revoke", "select", "users", "app" },
      }
      for _, call in ipairs(calls) do
        local db = recorder()
        local name = call[1]
        schema[name](db, table.unpack(call, 2))
        assert.same({ build[name](table.unpack(call, 2)) }, db.statements)
      end
    end)

    -- Before: "attempt to call a nil value (field 'create_polcy')", located nowhere useful.
    it("refuses a misspelled function at the caller's line, with the closest one in tide.schema or tide.rls", function()
      raises("unknown function `schema.create_polcy`: did you mean `rls.create_policy`?", function()
        return schema.create_polcy
      end)
      raises("unknown function `schema.crate_table`: did you mean `schema.create_table`?", function()
        return schema.crate_table
      end)
      raises("unknown function `schema.sql.create_tabel`: did you mean `schema.sql.create_table`?", function()
        return build.create_tabel
      end)
      raises("unknown function `sql.rwa`: did you mean `sql.raw`?", function()
        return sql.rwa
      end)
      local ok, err = pcall(function()
        return schema.frobnicate
      end)
      assert.is_false(ok)
      assert.matches("unknown function `schema.frobnicate`: tide.schema has add_column, alter_column, ", err)
    end)

    it("refuses a call without db, naming the mistake", function()
      raises("create_table: the first argument must be the db passed to upgrade/downgrade, got string",
        schema.create_table, "users", { columns = { { "id", "bigint" } } })
      raises("drop_index: the first argument must be the db passed to upgrade/downgrade, got nil",
        schema.drop_index, nil, "ix")
    end)

    it("sends nothing when the call is wrong", function()
      local db = recorder()
      pcall(schema.create_index, db, "t", "c", { were = "x" })
      assert.same({}, db.statements)
    end)
  end)

  describe("execute()", function()
    it("runs SQL without parameters through db:exec", function()
      local db = recorder()
      assert.is_nil(schema.execute(db, "CREATE VIEW v AS SELECT 1; COMMENT ON VIEW v IS 'x'"))
      assert.same({ "CREATE VIEW v AS SELECT 1; COMMENT ON VIEW v IS 'x'" }, db.statements)
    end)

    it("runs SQL with parameters through db:query and returns its rows", function()
      local db = recorder()
      function db:query(statement, ...)
        self.queried = { statement, ... }
        return { { n = 1 } }
      end
      assert.same({ { n = 1 } }, schema.execute(db, "UPDATE t SET a = $1 WHERE b = $2", "x", 2))
      assert.same({ "UPDATE t SET a = $1 WHERE b = $2", "x", 2 }, db.queried)
      assert.same({}, db.statements)
    end)

    it("refuses what is not SQL", function()
      raises("execute: expected a non-empty SQL string, got nil", schema.execute, recorder(), nil)
      raises("execute: expected a non-empty SQL string, got string", schema.execute, recorder(), "")
    end)
  end)
end)
