-- spec/conn_review_spec.lua: findings of the second reading of engine/conn.c and engine/sys.c
-- (COPY through exec and query, float -0, parse errors that quote the password, core.sleep's
-- domain). Kept apart from spec/conn_spec.lua, which has its own owner.
local H = require "spec.support.helpers"
local core = require "tide.core"

local raises = H.error_of

-- Runs lua code in a child interpreter that is killed after `seconds`: a regression here is a
-- hang (a busy loop in libpq's COPY state), which must fail the spec, not stall the suite.
local function run_with_timeout(seconds, code)
  local p = assert(io.popen(string.format("timeout %d lua5.4 -e %s 2>&1", seconds, H.shell_quote(code)), "r"))
  local out = p:read("a")
  local _, _, status = p:close()
  return status, out
end

describe("tide.Conn (review) #db", function()
  local db

  lazy_setup(function()
    db = H.fresh_db()
    H.sql(db, "CREATE TABLE copied (a int); INSERT INTO copied VALUES (1), (2)")
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  describe("COPY", function()
    it("exec drops the rows of COPY ... TO STDOUT instead of looping forever", function()
      local status, out = run_with_timeout(20, string.format([[
        local core = require "tide.core"
        local conn = core.connect(%q)
        assert(conn:exec("COPY copied TO STDOUT; CREATE TABLE after_copy (b int)") == nil)
        assert(conn:query("SELECT count(*) AS n FROM after_copy")[1].n == 0)
        assert(conn:info().transaction == "idle")
        print("done")
      ]], db.url))
      assert.are.equal(0, status, out)
      assert.matches("done", out)
    end)

    it("exec refuses COPY ... FROM STDIN and keeps the connection usable", function()
      local conn <close> = core.connect(db.url)
      local err = raises(conn.exec, conn, "COPY copied FROM STDIN")
      assert.are.equal(core.Error, getmetatable(err))
      assert.matches("COPY", err.message)
      assert.are.equal("idle", conn:info().transaction)
      assert.is_nil(conn:exec("SELECT 1"))
    end)

    it("query refuses COPY ... FROM STDIN with a message and leaves the connection usable", function()
      local conn <close> = core.connect(db.url)
      local err = raises(conn.query, conn, "COPY copied FROM STDIN")
      assert.are.equal(core.Error, getmetatable(err))
      assert.matches("COPY", err.message)
      assert.is_nil(err.message:find("unknown libpq failure", 1, true))
      assert.are.equal("idle", conn:info().transaction)
      assert.is_nil(conn:exec("SELECT 1"))
      assert.are.equal(1, conn:query("SELECT 1 AS one")[1].one)
    end)

    it("query drops the rows of COPY ... TO STDOUT, counts them and leaves the connection usable", function()
      local conn <close> = core.connect(db.url)
      local rows, count = conn:query("COPY copied TO STDOUT")
      assert.are.same({}, rows)
      assert.are.equal(2, count)
      assert.are.equal("idle", conn:info().transaction)
      assert.is_nil(conn:exec("SELECT 1"))
    end)
  end)

  describe("conn:query()", function()
    it("names an empty query instead of an unknown libpq failure", function()
      local conn <close> = core.connect(db.url)
      local err = raises(conn.query, conn, "  ")
      assert.are.equal(core.Error, getmetatable(err))
      assert.is_nil(err.message:find("unknown libpq failure", 1, true))
      assert.matches("empty", err.message)
    end)

    it("keeps the sign of a float zero", function()
      local conn <close> = core.connect(db.url)
      local row = conn:query("SELECT '-0'::float8 AS d, '-0'::float4 AS r, '0'::float8 AS z")[1]
      assert.are.equal(-math.huge, 1 / row.d)
      assert.are.equal(-math.huge, 1 / row.r)
      assert.are.equal(math.huge, 1 / row.z)
    end)
  end)

  describe("core.connect()", function()
    -- libpq quotes a value it cannot percent-decode in its message, the password included.
    for _, case in ipairs {
      { "a bad %-escape in the URL's password", "postgresql://u:hunter2%zzsecret@127.0.0.1:1/db" },
      { "%00 in the URL's password", "postgresql://u:hunter2%00secret@127.0.0.1:1/db" },
      { "a bad %-escape in ?password=", "postgresql://127.0.0.1:1/db?password=hunter2%zzsecret" },
    } do
      it("does not repeat the password when it has " .. case[1], function()
        local err = raises(core.connect, case[2])
        assert.are.equal("connect", err.kind)
        assert.matches("percent%-encoded", err.message)
        assert.is_nil(err.message:find("hunter2", 1, true), err.message)
        assert.is_nil(err.message:find("secret", 1, true), err.message)
      end)
    end
  end)
end)

describe("core.sleep() (review)", function()
  it("refuses NaN instead of converting it to a time_t (undefined behaviour)", function()
    assert.has_error(function()
      core.sleep(0 / 0)
    end)
  end)

  it("returns at once for zero and negative durations", function()
    local t = core.now()
    core.sleep(0)
    core.sleep(-1)
    core.sleep(-math.huge)
    assert.is_true(core.now() - t < 0.5)
  end)
end)

describe("tide's connections (issue 14's review) #db", function()
  after_each(H.cleanup)

  it("speak UTF-8 whatever PGCLIENTENCODING says, so a message escaped byte by byte stays one literal", function()
    local db = H.fresh_db()
    -- In Shift-JIS the UTF-8 bytes of "ā" end in 0x81, a lead byte that takes the next byte as
    -- its second: a backslash after it stops escaping, a quote after it ends nothing.
    local message = "caf\u{e9} \u{101}\\ and \u{101}' \u{8868}"
    local dir = H.project { ["001_a.lua"] = H.revision { revision = "001", message = message,
      up = "CREATE TABLE t (id int)" } }
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir, env = { PGCLIENTENCODING = "SJIS" } })
    assert.are.equal(0, r.code, r.output)
    assert.are.equal(message, H.sql(db, "SELECT message FROM tide.revision")[1].message)
    -- even a URL that asks for another encoding gets UTF-8
    local conn <close> = core.connect(db.url .. "?client_encoding=SJIS")
    assert.are.equal("UTF8", conn:query("SHOW client_encoding")[1].client_encoding)
  end)

  it("print server notices without terminal escape sequences", function()
    local db = H.fresh_db()
    local dir = H.project { ["001_a.lua"] = H.revision { revision = "001",
      up = [[DO $$ BEGIN RAISE NOTICE '%', E'\x1b]0;owned\x07\x1b[2J\x1b[31mred\u009b'; END $$]] } }
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.are.equal(0, r.code, r.output)
    assert.is_nil(r.stderr:find("[\27\7]"), "a control character reached the terminal: " .. r.stderr)
    assert.matches("tide: server: NOTICE: \\x1b%]0;owned\\x07\\x1b%[2J\\x1b%[31mred\\u009b", r.stderr)
  end)
end)
