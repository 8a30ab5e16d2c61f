-- spec/rls_spec.lua: tide.rls builds exactly the documented SQL for row-level security,
-- quotes every identifier, refuses unknown options with a suggestion, and sends one statement
-- per call.
local rls = require "tide.rls"
local build = rls.sql

local support = require "spec.support.dsl"

local HOSTILE, QUOTED = support.HOSTILE, support.QUOTED

-- Asserts that fn(...) raises a tide.Error (kind "run") with `expected`, located at a line of
-- this spec file (the caller), not inside the DSL: the pcall must stay in this file for that.
local function raises(expected, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  assert.are.equal(require("tide.core").Error, getmetatable(err), "not a tide.Error: " .. tostring(err))
  assert.are.equal("run", err.kind)
  local position, message = tostring(err):match("^(.-rls_spec%.lua:%d+: )(.*)$")
  assert.is_truthy(position, "error not located in the spec: " .. tostring(err))
  assert.equal(expected, message)
end

local recorder = support.recorder

describe("tide.rls", function()
  describe("enable_rls()", function()
    it("enables, and with force = true also forces, in one statement", function()
      assert.equal([[ALTER TABLE "users" ENABLE ROW LEVEL SECURITY]], build.enable_rls("users"))
      assert.equal([[ALTER TABLE "users" ENABLE ROW LEVEL SECURITY]], build.enable_rls("users", { force = false }))
      assert.equal([[ALTER TABLE "app"."users" ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY]],
        build.enable_rls({ schema = "app", name = "users" }, { force = true }))
      assert.equal(("ALTER TABLE %s ENABLE ROW LEVEL SECURITY"):format(QUOTED), build.enable_rls(HOSTILE))
    end)

    it("refuses unknown options", function()
      raises("unknown option `forced` to enable_rls: did you mean `force`?", build.enable_rls, "t", { forced = true })
      raises("option `force` to enable_rls must be a boolean, got string", build.enable_rls, "t", { force = "yes" })
    end)
  end)

  describe("disable_rls()", function()
    it("undoes force and enable in one statement", function()
      assert.equal([[ALTER TABLE "users" NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY]],
        build.disable_rls("users"))
      assert.equal(("ALTER TABLE %s NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY"):format(QUOTED),
        build.disable_rls(HOSTILE))
    end)
  end)

  describe("create_policy()", function()
    it("writes only the clauses asked for", function()
      assert.equal([[CREATE POLICY "own" ON "accounts" USING (owner_id = app_current_user_id())]],
        build.create_policy("accounts", "own", { using = "owner_id = app_current_user_id()" }))
    end)

    it("writes every clause in PostgreSQL's order", function()
      assert.equal([[CREATE POLICY "own" ON "app"."accounts" AS RESTRICTIVE FOR UPDATE TO "web", PUBLIC ]]
        .. [[USING (owner_id = 1) WITH CHECK (owner_id = 1)]],
        build.create_policy({ schema = "app", name = "accounts" }, "own", {
          as = "restrictive", command = "update", to = { "web", "public" },
          using = "owner_id = 1", with_check = "owner_id = 1",
        }))
      assert.equal([[CREATE POLICY "p" ON "t" AS PERMISSIVE FOR ALL TO CURRENT_USER USING (true) WITH CHECK (true)]],
        build.create_policy("t", "p", { as = "PERMISSIVE", command = "ALL", to = "current_user", using = "true",
          with_check = "true" }))
    end)

    it("accepts SQL's `for` as well as `command`", function()
      assert.equal([[CREATE POLICY "p" ON "t" FOR SELECT USING (true)]],
        build.create_policy("t", "p", { ["for"] = "select", using = "true" }))
      assert.equal([[CREATE POLICY "p" ON "t" FOR INSERT WITH CHECK (true)]],
        build.create_policy("t", "p", { command = "insert", with_check = "true" }))
      assert.equal([[CREATE POLICY "p" ON "t" FOR DELETE USING (true)]],
        build.create_policy("t", "p", { command = "delete", using = "true" }))
    end)

    it("quotes hostile table, policy and role names", function()
      assert.equal(("CREATE POLICY %s ON %s TO %s USING (true)"):gsub("%%s", QUOTED),
        build.create_policy(HOSTILE, HOSTILE, { to = HOSTILE, using = "true" }))
    end)

    it("refuses unknown options, commands and kinds with a suggestion", function()
      raises("unknown option `usign` to create_policy: did you mean `using`?", build.create_policy, "t", "p",
        { usign = "true" })
      raises("unknown option `with_chek` to create_policy: did you mean `with_check`?", build.create_policy, "t", "p",
        { with_chek = "true" })
      raises("unknown policy command `selet`: did you mean `select`?", build.create_policy, "t", "p",
        { command = "selet", using = "true" })
      raises("unknown policy kind (`as`) `restrictiv`: did you mean `restrictive`?", build.create_policy, "t", "p",
        { as = "restrictiv", using = "true" })
      raises("option `to` to create_policy must be a string or a table, got boolean", build.create_policy, "t", "p",
        { to = true, using = "true" })
    end)

    it("refuses clause combinations PostgreSQL refuses", function()
      raises("create_policy: a SELECT policy takes no `with_check` (only `using`)", build.create_policy, "t", "p",
        { command = "select", using = "true", with_check = "true" })
      raises("create_policy: a DELETE policy takes no `with_check` (only `using`)", build.create_policy, "t", "p",
        { command = "delete", with_check = "true" })
      raises("create_policy: an INSERT policy takes no `using` (only `with_check`)", build.create_policy, "t", "p",
        { command = "insert", using = "true" })
      raises("create_policy: give `using` and/or `with_check`", build.create_policy, "t", "p", { command = "all" })
      raises("create_policy: give `command` or `for`, not both", build.create_policy, "t", "p",
        { command = "all", ["for"] = "all", using = "true" })
      raises("create_policy: roles must be a role name or a non-empty list of role names", build.create_policy,
        "t", "p", { to = {}, using = "true" })
    end)
  end)

  describe("drop_policy()", function()
    it("writes DROP POLICY", function()
      assert.equal([[DROP POLICY "own" ON "accounts"]], build.drop_policy("accounts", "own"))
      assert.equal([[DROP POLICY IF EXISTS "own" ON "app"."accounts"]],
        build.drop_policy({ schema = "app", name = "accounts" }, "own", { if_exists = true }))
      assert.equal(("DROP POLICY %s ON %s"):gsub("%%s", QUOTED), build.drop_policy(HOSTILE, HOSTILE))
    end)

    it("refuses unknown options and a missing name", function()
      raises("unknown option `if_exist` to drop_policy: did you mean `if_exists`?", build.drop_policy, "t", "p",
        { if_exist = true })
      raises("sql.ident: identifier must be a string, got nil", build.drop_policy, "t")
    end)
  end)

  describe("running through db", function()
    it("sends exactly the built statement, once, through db:exec", function()
      local calls = {
        { "enable_rls", "t", { force = true } },
        { "disable_rls", "t" },
        { "create_policy", "t", "p", { command = "select", using = "true" } },
        { "drop_policy", "t", "p" },
      }
      for _, call in ipairs(calls) do
        local db = recorder()
        rls[call[1]](db, table.unpack(call, 2))
        assert.same({ build[call[1]](table.unpack(call, 2)) }, db.statements)
      end
    end)

    it("refuses a misspelled function at the caller's line, with the closest one in tide.rls or tide.schema", function()
      raises("unknown function `rls.create_polcy`: did you mean `rls.create_policy`?", function()
        return rls.create_polcy
      end)
      raises("unknown function `rls.create_index`: did you mean `schema.create_index`?", function()
        return rls.create_index
      end)
      raises("unknown function `rls.sql.drop_polcy`: did you mean `rls.sql.drop_policy`?", function()
        return build.drop_polcy
      end)
      raises("unknown function `rls.frobnicate`: tide.rls has create_policy, disable_rls, drop_policy, enable_rls",
        function()
          return rls.frobnicate
        end)
    end)

    it("refuses a call without db", function()
      raises("enable_rls: the first argument must be the db passed to upgrade/downgrade, got string",
        rls.enable_rls, "users", { force = true })
    end)
  end)
end)
