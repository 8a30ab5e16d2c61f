-- spec/rlscheck_spec.lua: tide.rlscheck, the behaviour checks `tide test` runs from tests/:
-- loading (strict, before connecting), db:as (role and settings for fn only, what fn wrote
-- kept), the expectations and their messages, isolation between checks, and the report.
local H = require "spec.support.helpers"
local core = require "tide.core"
local sql = require "tide.sql"

local function random_suffix()
  return (core.random_bytes(4):gsub(".", function(c)
    return ("%02x"):format(c:byte())
  end))
end

-- One revision: notes, whose rows only their owner (app.user) sees, readable by vars.role.
local REVISION = [=[
local sql = require "tide.sql"
return {
  revision = "001",
  message = "notes",
  upgrade = function(db)
    db:exec([[CREATE TABLE notes (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, owner text NOT NULL,
      body text UNIQUE);
    ALTER TABLE notes ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
    CREATE POLICY own ON notes USING (owner = (SELECT current_setting('app.user', true)))]])
    db:exec("GRANT SELECT, INSERT ON notes TO " .. sql.ident(db.vars.role))
  end,
  downgrade = function(db)
    db:exec("DROP TABLE notes")
  end,
}
]=]

local function checks_file(body, extra)
  return ([=[
return {
  revision = "001",
  setup = function(db)
    db:exec("INSERT INTO notes (owner, body) VALUES ('ann', 'a'), ('ben', 'b')")
    return { role = db.vars.role }
  end,%s
  checks = {
%s
  },
}
]=]):format(extra or "", body)
end

describe("tide test's checks (tests/) #db", function()
  local role

  setup(function()
    role = "tide_spec_reader_" .. random_suffix()
    H.sql(nil, "CREATE ROLE " .. sql.ident(role) .. " NOLOGIN")
  end)

  teardown(function()
    H.cleanup()
    pcall(H.sql, nil, "DROP ROLE IF EXISTS " .. sql.ident(role))
  end)

  local function project(tests)
    local files = { ["versions/001_notes.lua"] = REVISION,
      ["tide.lua"] = ("return { vars = { role = %q } }"):format(role) }
    for name, text in pairs(tests) do
      files["tests/" .. name] = text
    end
    return H.tmpdir(files)
  end

  local function test(tests)
    local db = H.fresh_db()
    return H.tide({ "test", "--url", db.url }, { dir = project(tests) }), db
  end

  it("runs each check after the upgrade and again after the downgrade and upgrade", function()
    local r, db = test { ["001_notes.lua"] = checks_file([[
    { "ann sees her note, ben his", function(db, f)
      db:as(f.role, { ["app.user"] = "ann" }, function(db)
        db:expect_rows({ { body = "a" } }, "SELECT body FROM notes")
      end)
      db:as(f.role, { ["app.user"] = "ben" }, function(db)
        db:expect_rows({ { owner = "ben", body = "b" } }, "SELECT owner, body FROM notes ORDER BY id")
        db:expect_count(1, "SELECT 1 FROM notes")
      end)
    end },
    { "a write stays for the check, the role and settings do not", function(db, f)
      local who = db:one("SELECT current_user AS u").u
      db:as(f.role, { ["app.user"] = "ann" }, function(db)
        db:expect_count(1, "INSERT INTO notes (owner, body) VALUES ('ann', 'a2')")
      end)
      db:expect_rows({ { u = who, s = "" } }, "SELECT current_user AS u, current_setting('app.user', true) AS s")
      db:expect_count(3, "SELECT 1 FROM notes")
    end },
    { "nothing of an earlier check is left", function(db)
      db:expect_count(2, "SELECT 1 FROM notes")
    end },
    { "an error in fn undoes what fn wrote, and gives the role and settings back", function(db, f)
      local ok, err = pcall(db.as, db, f.role, { ["app.user"] = "ann" }, function(db)
        db:query("INSERT INTO notes (owner, body) VALUES ('ann', 'gone')")
        error("stop")
      end)
      assert(not ok and tostring(err):find("stop", 1, true), tostring(err))
      db:expect_count(2, "SELECT 1 FROM notes")
      db:expect_rows({ { s = "" } }, "SELECT current_setting('app.user', true) AS s")
    end },
    { "an expected error is rolled back and the check goes on", function(db, f)
      db:as(f.role, { ["app.user"] = "ann" }, function(db)
        db:expect_error("42501", "INSERT INTO notes (owner, body) VALUES ('ben', 'x')")
        db:expect_error("42501", "UPDATE notes SET body = 'x'")
        db:expect_rows({ { body = "a" } }, "SELECT body FROM notes")
      end)
    end },]]) }
    assert.equal(0, r.code, r.output)
    assert.matches("001%s+ok %(checks: 10 passed, 0 failed%)", r.stdout)
    -- nothing of the checks is left: tide test leaves the scratch database as it found it
    assert.is_false(H.exists(db, "notes"))
  end)

  it("reports each failing check with what it expected and got; exit 1", function()
    local r = test { ["001_notes.lua"] = checks_file([[
    { "wrong rows", function(db, f)
      db:as(f.role, { ["app.user"] = "ann" }, function(db)
        db:expect_rows({ { body = "b" } }, "SELECT body FROM notes")
      end)
    end },
    { "wrong count", function(db)
      db:expect_count(5, "SELECT 1 FROM notes")
    end },
    { "an error that did not come", function(db)
      db:expect_error("42501", "SELECT 1")
    end },
    { "another error", function(db)
      db:expect_error("42501", "INSERT INTO notes (owner, body) VALUES ('ann', 'a')")
    end },
    { "nested", function(db, f)
      db:as(f.role, {}, function(db)
        db:as(f.role, {}, function() end)
      end)
    end },
    { "a plain error", function()
      error("boom")
    end },
    { "a COMMIT", function(db)
      db:exec("COMMIT")
    end },
    { "after the COMMIT", function() end },
    { "a COMMIT behind db's back", function(db)
      db.conn:exec("COMMIT")
    end },
    { "after the file's transaction ended", function() end },]]) }
    assert.equal(1, r.code, r.output)
    -- each failure names the check file's line, then what was expected and what came
    local function failed(name, message)
      local line = r.stdout:match('check "' .. name .. '" failed after upgrade: ([^\n]*)')
      assert.matches("^tests/001_notes.lua:%d+: ", line)
      assert.matches(message, line, 1, true)
      assert.matches('problem: revision 001 (tests/001_notes.lua): check "' .. name .. '" failed after downgrade '
        .. "and upgrade: ", r.stdout, 1, true)
    end
    failed("wrong rows", 'expected 1 row {{body = "b"}}, got 1 {{body = "a"}}')
    failed("wrong count", "expected 5 rows, got 2")
    failed("an error that did not come", "expected ERROR 42501, but the statement succeeded")
    failed("another error", "expected ERROR 42501, got ERROR 23505: duplicate key value violates unique constraint")
    failed("nested", string.format('db:as("%s"): already acting as "%s" (db:as does not nest)', role, role))
    failed("a plain error", "boom")
    -- a COMMIT is refused before it is sent: the file's transaction stays, and the next check runs
    assert.matches('check "a COMMIT" failed after upgrade: COMMIT would end the transaction', r.stdout, 1, true)
    assert.not_matches('check "after the COMMIT" failed', r.stdout, 1, true)
    -- one that ends it anyway (through the connection itself) stops the file's checks there
    assert.matches('check "a COMMIT behind db\'s back" failed after upgrade: the check ended its tests file\'s '
      .. "transaction (COMMIT or ROLLBACK in a check); the file's remaining checks did not run", r.stdout, 1, true)
    assert.not_matches("after the file's transaction ended", r.stdout, 1, true)
    assert.matches("001%s+ok %(checks: 2 passed, 16 failed%)", r.stdout)
    assert.matches("test failed: 1 of 1 revision round%-tripped, 16 problems", r.stdout)
  end)

  it("reports a failing setup, and a role the session cannot become", function()
    local r = test { ["001_a.lua"] = checks_file([[
    { "never runs", function() end },]], [[

  -- replaced below
]]):gsub("setup = function%(db%)", 'setup = function(db)\n    db:exec("SELECT 1/0")') }
    assert.equal(1, r.code, r.output)
    assert.matches('check "setup" failed after upgrade: ERROR 22012: division by zero', r.stdout, 1, true)
    -- a login role that is not a member of the role a check names
    local user = "tide_spec_tester_" .. random_suffix()
    local password = random_suffix()
    H.sql(nil, ("CREATE ROLE %s LOGIN PASSWORD %s"):format(sql.ident(user), sql.literal(password)))
    local ok, err = pcall(function()
      local db = H.fresh_db()
      H.sql(nil, ("ALTER DATABASE %s OWNER TO %s"):format(db.name, sql.ident(user)))
      local dir = project { ["001_b.lua"] = checks_file([[
    { "as the reader", function(db, f)
      db:as(f.role, {}, function() end)
    end },]]):gsub("db:exec%(\"INSERT[^\n]*\n", "") }
      local t = H.tide({ "test", "--url", H.url(db.name, user, password) }, { dir = dir })
      assert.equal(1, t.code, t.output)
      assert.matches(('check "as the reader" failed after upgrade: db:as("%s"): permission denied to set role "%s" '
        .. "(the scratch URL's role must be a superuser or a member of %s)"):format(role, role, sql.ident(role)),
        t.stdout, 1, true)
    end)
    H.cleanup()
    H.sql(nil, "DROP ROLE " .. sql.ident(user))
    assert(ok, err)
  end)

  it("refuses a tests file that is malformed or names no known revision, before connecting (exit 5)", function()
    for _, case in ipairs {
      { "return { revision = '001', checks = {}, setpu = 1 }", "unknown key `setpu` (did you mean `setup`?)" },
      { "return { revision = '01', checks = { { 'x', function() end } } }",
        'revision "01" is not a known revision (did you mean `001`?)' },
      { "return { revision = '001', checks = { { 'x' } } }",
        'checks[1] must be { "name", function(db, fixtures) ... end }' },
      { "return { revision = '001', checks = {} }", "`checks` is empty" },
      { "return { revision = '001' ", "'}' expected" },
    } do
      local r = H.tide({ "test", "--url", "postgresql://nobody@127.0.0.1:1/none" },
        { dir = project { ["001_bad.lua"] = case[1] } })
      assert.equal(5, r.code, case[1] .. ": " .. r.output)
      assert.matches("tests/001_bad.lua", r.stderr, 1, true)
      assert.matches(case[2], r.stderr, 1, true)
    end
  end)
end)
