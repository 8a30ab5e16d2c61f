-- spec/sql_spec.lua: tide.sql, the one identifier- and the one literal-quoting function.
-- The pure specs pin the exact text; the #db specs send that text to the real server and read
-- back what PostgreSQL understood.
local H = require "spec.support.helpers"
local core = require "tide.core"
local sql = require "tide.sql"

-- The message of what fn(...) raises: a tide.Error of kind "run", as all of the revision API
-- raises (a string error would fail here).
local function error_of(fn, ...)
  local err = H.error_of(fn, ...)
  assert.are.equal(core.Error, getmetatable(err), "not a tide.Error: " .. tostring(err))
  assert.are.equal("run", err.kind)
  return err.message
end

local HOSTILE = 'a"b; drop table x'

describe("tide.sql", function()
  describe("ident()", function()
    it("always double-quotes, keeping case", function()
      assert.equal('"users"', sql.ident("users"))
      assert.equal('"Users"', sql.ident("Users"))
      assert.equal('"select"', sql.ident("select"))
    end)

    it("doubles embedded double quotes so a hostile name stays one identifier", function()
      assert.equal('"a""b; drop table x"', sql.ident(HOSTILE))
      assert.equal('""""', sql.ident('"'))
    end)

    it("keeps dots, spaces, quotes and UTF-8 inside the name", function()
      assert.equal('"app.users"', sql.ident("app.users"))
      assert.equal([["it's a name"]], sql.ident("it's a name"))
      assert.equal('"naïve"', sql.ident("naïve"))
    end)

    it("accepts 63 bytes and refuses 64, which PostgreSQL would truncate", function()
      assert.equal('"' .. ("x"):rep(63) .. '"', sql.ident(("x"):rep(63)))
      assert.equal(('sql.ident: identifier "%s" is 64 bytes long; PostgreSQL would truncate it to 63')
        :format(("x"):rep(64)), error_of(sql.ident, ("x"):rep(64)))
    end)

    it("refuses an empty name", function()
      assert.equal("sql.ident: identifier must not be empty", error_of(sql.ident, ""))
    end)

    it("refuses a NUL byte", function()
      assert.equal('sql.ident: identifier "a\\0b" contains a NUL byte', error_of(sql.ident, "a\0b"))
    end)

    it("refuses what is not a string", function()
      assert.equal("sql.ident: identifier must be a string, got nil", error_of(sql.ident, nil))
      assert.equal("sql.ident: identifier must be a string, got number", error_of(sql.ident, 1))
    end)

    it("reports the caller's line when called from Lua code", function()
      local err = error_of(function()
        local quoted = sql.ident("") -- not a tail call, which would hide this frame
        return quoted
      end)
      assert.matches("sql_spec%.lua:%d+: sql%.ident: identifier must not be empty$", err)
    end)
  end)

  describe("qualified()", function()
    it("quotes a plain name like ident", function()
      assert.equal('"users"', sql.qualified("users"))
      assert.equal('"app.users"', sql.qualified("app.users"))
    end)

    it("joins schema and name, each quoted", function()
      assert.equal('"app"."users"', sql.qualified({ schema = "app", name = "users" }))
      assert.equal('"a""b; drop table x"."a""b; drop table x"',
        sql.qualified({ schema = HOSTILE, name = HOSTILE }))
    end)

    it("treats a table without schema as the bare name", function()
      assert.equal('"users"', sql.qualified({ name = "users" }))
    end)

    it("refuses unknown keys, a missing name and other types", function()
      assert.equal("sql.qualified: unknown key `shema` (expected `schema` and `name`)",
        error_of(sql.qualified, { shema = "app", name = "users" }))
      assert.equal("sql.qualified: missing `name`", error_of(sql.qualified, { schema = "app" }))
      assert.equal("sql.qualified: expected a name or {schema = ..., name = ...}, got number",
        error_of(sql.qualified, 3))
    end)

    it("refuses an empty part", function()
      assert.equal("sql.ident: identifier must not be empty",
        error_of(sql.qualified, { schema = "", name = "users" }))
    end)
  end)

  describe("literal()", function()
    it("single-quotes strings and doubles embedded single quotes", function()
      assert.equal("'active'", sql.literal("active"))
      assert.equal("'it''s'", sql.literal("it's"))
      assert.equal("''", sql.literal(""))
      assert.equal([['a"b; drop table x']], sql.literal(HOSTILE))
      assert.equal("'''; DROP TABLE users; --'", sql.literal("'; DROP TABLE users; --"))
    end)

    it("writes a string with backslashes as E'...' with them doubled", function()
      assert.equal([[E'a\\b']], sql.literal([[a\b]]))
      assert.equal([[E'\\'' OR 1=1 --']], sql.literal([[\' OR 1=1 --]]))
    end)

    it("refuses a NUL byte in a string", function()
      assert.equal("sql.literal: a string literal cannot contain a NUL byte", error_of(sql.literal, "a\0"))
    end)

    it("writes integers and floats, negative ones in parentheses", function()
      assert.equal("42", sql.literal(42))
      assert.equal("0", sql.literal(0))
      assert.equal("(-7)", sql.literal(-7))
      assert.equal("(-9223372036854775808)", sql.literal(math.mininteger))
      assert.equal("0.1", sql.literal(0.1))
      assert.equal("(-2.5)", sql.literal(-2.5))
      assert.equal("1e+300", sql.literal(1e300))
      assert.equal("0.30000000000000004", sql.literal(0.1 + 0.2))
    end)

    it("refuses NaN and infinities", function()
      assert.equal("sql.literal: inf has no SQL numeric literal", error_of(sql.literal, math.huge))
      assert.equal("sql.literal: -inf has no SQL numeric literal", error_of(sql.literal, -math.huge))
      assert.matches("^sql%.literal: %-?nan has no SQL numeric literal$", error_of(sql.literal, 0 / 0))
    end)

    it("writes booleans and nil", function()
      assert.equal("TRUE", sql.literal(true))
      assert.equal("FALSE", sql.literal(false))
      assert.equal("NULL", sql.literal(nil))
    end)

    it("refuses tables and functions", function()
      assert.equal("sql.literal: cannot write a table as an SQL literal", error_of(sql.literal, {}))
      assert.equal("sql.literal: cannot write a function as an SQL literal", error_of(sql.literal, print))
    end)
  end)

  describe("raw()", function()
    it("marks SQL text to be written verbatim", function()
      local raw = sql.raw("now()")
      assert.is_true(sql.is_raw(raw))
      assert.equal("now()", raw.sql)
      assert.equal("now()", tostring(raw))
    end)

    it("is not confused with strings or other tables", function()
      assert.is_false(sql.is_raw("now()"))
      assert.is_false(sql.is_raw({ sql = "now()" }))
      assert.is_false(sql.is_raw(nil))
    end)

    it("refuses an empty or non-string text", function()
      assert.equal("sql.raw: expected a non-empty string of SQL", error_of(sql.raw, ""))
      assert.equal("sql.raw: expected a non-empty string of SQL", error_of(sql.raw, 1))
    end)
  end)

  describe("against the server #db", function()
    local db

    setup(function()
      db = H.fresh_db()
    end)

    teardown(function()
      H.cleanup()
    end)

    it("reads every quoted literal back as the original string", function()
      local conn <close> = H.connect(db)
      for _, value in ipairs { "plain", "it's", [[a\b]], [[\' OR 1=1 --]], HOSTILE, "naïve", "" } do
        local rows = conn:query("SELECT " .. sql.literal(value) .. "::text AS v")
        assert.equal(value, rows[1].v)
      end
    end)

    it("reads numbers and booleans back as the same values", function()
      local rows = H.sql(db, ("SELECT %s::bigint AS i, %s::float8 AS f, 1 - %s AS d, %s AS t, %s IS NULL AS n")
        :format(sql.literal(-7), sql.literal(0.1), sql.literal(-1), sql.literal(true), sql.literal(nil)))
      assert.equal(-7, rows[1].i)
      assert.equal(0.1, rows[1].f)
      assert.equal(2, rows[1].d)
      assert.is_true(rows[1].t)
      assert.is_true(rows[1].n)
    end)

    it("creates a table whose name is exactly the hostile identifier", function()
      local conn <close> = H.connect(db)
      conn:exec("CREATE TABLE " .. sql.ident(HOSTILE) .. " (" .. sql.ident("Mixed Case") .. " int)")
      local rows = H.sql(db, "SELECT relname FROM pg_class WHERE relname = $1", HOSTILE)
      assert.equal(1, #rows)
      assert.same({ "Mixed Case" }, { H.sql(db, "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass "
        .. "AND attnum > 0", sql.ident(HOSTILE))[1].attname })
      -- and no table `x` was dropped or created on the way
      assert.is_false(H.exists(db, "x"))
    end)
  end)
end)
