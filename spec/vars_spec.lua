-- spec/vars_spec.lua: tide.lua's `vars`, which revisions read as db.vars: validated with the
-- configuration, read only, a missing name raising at the revision's line, and the same values
-- for a run, a --sql script and lint.
local H = require "spec.support.helpers"
local dbmod = require "tide.db"

describe("tide.db vars()", function()
  it("reads what tide.lua set", function()
    local vars = dbmod.vars { app_role = "web", replicas = 2, strict = true }
    assert.equal("web", vars.app_role)
    assert.equal(2, vars.replicas)
    assert.is_true(vars.strict)
  end)

  it("raises for a name tide.lua does not set, with a suggestion", function()
    local vars = dbmod.vars { app_role = "web" }
    local err = H.error_of(function()
      return vars.app_rol
    end)
    assert.matches("vars.app_rol is not set: add it to `vars` in tide.lua %(did you mean `app_role`%?%)", err)
  end)

  it("is read only", function()
    local vars = dbmod.vars { app_role = "web" }
    local err = H.error_of(function()
      vars.app_role = "other"
    end)
    assert.matches("db.vars is read only %(vars.app_role%): set it in tide.lua", err)
    assert.equal("web", vars.app_role)
  end)

  it("is on every db: a run's, a recorder's", function()
    assert.equal("web", dbmod.recorder(nil, { app_role = "web" }).vars.app_role)
    assert.equal("web", dbmod.new({}, nil, { app_role = "web" }).vars.app_role)
  end)
end)

describe("vars in tide.lua #db", function()
  after_each(H.cleanup)

  local REVISION = H.revision { revision = "001", up = "SELECT 1" }
    :gsub('db:exec%("SELECT 1"%)', 'db:exec("CREATE TABLE " .. require("tide.sql").ident(db.vars.table_name) '
      .. '.. " (id int)")')

  it("reaches the revision in a run, a --sql script and lint", function()
    local db = H.fresh_db()
    local dir = H.project({ ["001_a.lua"] = REVISION }, 'return { vars = { table_name = "from_vars" } }')
    local r = H.tide({ "upgrade", "--sql", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.output)
    assert.matches('CREATE TABLE "from_vars" %(id int%);', r.stdout)
    r = H.tide({ "lint", "--all", "--json" }, { dir = dir })
    assert.equal(0, r.code, r.output)
    assert.same({}, H.json(r).unrecorded)
    r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.output)
    assert.is_true(H.exists(db, "from_vars"))
  end)

  it("fails the revision, naming file, line and the missing name, when tide.lua lacks it", function()
    local db = H.fresh_db()
    local dir = H.project({ ["001_a.lua"] = REVISION }, "return { vars = { tabel_name = 'x' } }")
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(6, r.code, r.output)
    assert.matches("001_a.lua:6%) failed in upgrade: "
      .. "vars.table_name is not set: add it to `vars` in tide.lua %(did you mean "
      .. "`tabel_name`%?%)", r.stderr)
    assert.same({}, H.applied(db))
  end)

  it("refuses a tide.lua whose vars are not plain values, or an unknown lint option (exit 2)", function()
    for _, case in ipairs {
      { "return { vars = { app_role = {} } }",
        "tide.lua: vars.app_role must be a string, number or boolean, got table" },
      { "return { vars = { ['app role'] = 'x' } }", "tide.lua: vars: `app role` is not a name" },
      { "return { vars = 'app' }", "tide.lua: `vars` must be a table, got string" },
      -- the wording of every section of tide.lua (config.check_keys)
      { "return { lint = { require_rsl = true } }", "tide.lua: unknown key `lint.require_rsl` (did you mean "
        .. "`require_rls`?)" },
      { "return { lint = { require_rls = 'yes' } }", "tide.lua: `lint.require_rls` must be a boolean, got string" },
    } do
      local dir = H.project({ ["001_a.lua"] = H.revision { revision = "001" } }, case[1])
      local r = H.tide({ "lint", "--all" }, { dir = dir })
      assert.equal(2, r.code, case[1] .. ": " .. r.output)
      assert.matches(case[2], r.stderr, 1, true)
    end
  end)
end)
