-- spec/core_errors_spec.lua: every C binding of tide.core reports a failure one way, as a raised
-- tide.Error table with a kind (the stage, which the CLI turns into an exit code) and a message,
-- plus the SQL fields where they apply; never a bare string, never a `nil, message` return. One
-- representative failure per binding file (conn.c and pg_values.c, sys.c, core.c, dump.c,
-- spool.c, conninfo.c through dump.c), and the callers in Lua that turn them into messages.
local H = require "spec.support.helpers"
local core = require "tide.core"

local BIN = os.getenv("PG_BINDIR") or "/usr/lib/postgresql/15/bin"

-- The tide.Error fn(...) raises; fails the spec for anything else (a string, a return).
local function raised(kind, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected a tide.Error, got a return")
  assert.are.equal(core.Error, getmetatable(err), "not a tide.Error: " .. tostring(err))
  assert.are.equal(kind, err.kind)
  assert.are.equal("string", type(err.message))
  assert.is_true(#err.message > 0)
  return err
end

describe("tide.core errors", function()
  after_each(function()
    H.cleanup()
  end)

  describe("conn.c #db", function()
    it("a refused connection: kind connect, sqlstate 08006", function()
      local err = raised("connect", core.connect, "postgresql://127.0.0.1:" .. H.closed_port() .. "/db")
      assert.are.equal("08006", err.sqlstate)
      assert.matches("127%.0%.0%.1", err.message)
    end)

    it("a failed statement: kind sql with the server's fields", function()
      local conn <close> = H.connect()
      local err = raised("sql", conn.query, conn, "SELECT 1 / 0")
      assert.are.equal("22012", err.sqlstate)
      assert.are.equal("division by zero", err.message)
      assert.are.equal("SELECT 1 / 0", err.query)
      assert.are.equal("ERROR 22012: division by zero", tostring(err))
      err = raised("sql", conn.exec, conn, "SELECT nope")
      assert.are.equal("42703", err.sqlstate)
      assert.are.equal(8, err.position)
    end)

    it("a parameter the server cannot take: kind usage", function()
      local conn <close> = H.connect()
      local err = raised("usage", conn.query, conn, "SELECT $1", {})
      assert.are.equal("parameter $1: cannot send a table to the server", err.message)
      err = raised("usage", conn.query, conn, "SELECT $1", "a\0b")
      assert.are.equal("parameter $1 contains a NUL byte", err.message)
    end)

    it("a prepared name reused for other SQL: kind usage", function()
      local conn <close> = H.connect()
      conn:prepared("spec_stmt", "SELECT 1")
      local err = raised("usage", conn.prepared, conn, "spec_stmt", "SELECT 2")
      assert.are.equal("prepared statement spec_stmt already exists with other SQL", err.message)
    end)

    it("a closed connection: kind usage", function()
      local conn = H.connect()
      conn:close()
      assert.are.equal("connection is closed", raised("usage", conn.query, conn, "SELECT 1").message)
    end)
  end)

  describe("sys.c", function()
    it("a folder that cannot be listed or made, a file that cannot be stamped: kind io, with the path", function()
      local missing = H.tmpdir() .. "/missing"
      local err = raised("io", core.listdir, missing)
      assert.are.equal(missing .. ": No such file or directory", err.message)
      assert.are.equal(missing, err.path)
      err = raised("io", core.filestamp, missing)
      assert.are.equal(missing .. ": No such file or directory", err.message)
      err = raised("io", core.mkdir, missing .. "/a/b")
      assert.are.equal(missing .. "/a/b: No such file or directory", err.message)
    end)
  end)

  describe("core.c", function()
    it("a top level over its load budget: a tide.Error of kind load, returned as run_limited's error", function()
      local ok, err, why = core.run_limited(function()
        while true do
        end
      end, "loop.lua", 10000, 1 << 20)
      assert.is_false(ok)
      assert.are.equal("instructions", why)
      assert.are.equal(core.Error, getmetatable(err))
      assert.are.equal("load", err.kind)
      assert.are.equal("the load budget ran out", err.message)
    end)
  end)

  describe("dump.c", function()
    it("a tool that is not there, an archive that is not there, a folder that is not there: kind backup", function()
      local dir = H.tmpdir()
      local err = raised("backup", core.pg_tool_version, dir .. "/pg_dump")
      assert.matches("^cannot start " .. dir:gsub("%p", "%%%0") .. "/pg_dump: ", err.message)
      err = raised("backup", core.verify_archive, BIN .. "/pg_restore", dir .. "/none.dump")
      assert.matches("none%.dump", err.message)
      err = raised("backup", core.disk_free, dir .. "/missing")
      assert.are.equal(dir .. "/missing: No such file or directory", err.message)
    end)

    it("an option tide does not know: kind internal, naming it", function()
      local err = raised("internal", core.dump, { pg_dump = BIN .. "/pg_dump", bogus = 1 })
      assert.are.equal("unknown option `bogus`", err.message)
    end)

    it("a connection string libpq cannot read (conninfo.c): kind backup, quoting no secret", function()
      local err = raised("backup", core.restore_archive, { pg_restore = BIN .. "/pg_restore",
        url = "postgresql://u:hunter2%zzsecret@127.0.0.1:1/db", path = H.tmpdir() .. "/a.dump" })
      assert.are.equal("the connection string is not valid", err.message)
    end)
  end)

  describe("spool.c", function()
    it("a spool in a folder that is not there: kind backup", function()
      local missing = H.tmpdir() .. "/missing"
      local err = raised("backup", core.spool, missing, "tide-backup")
      assert.matches("^cannot create a temporary file in " .. missing:gsub("%p", "%%%0") .. ": ", err.message)
    end)
  end)

  describe("their callers", function()
    it("a versions folder that cannot be read or made is a usage or config error (exit 2), naming it", function()
      local dir = H.tmpdir()
      local r = H.tide({ "init", "--versions", "/proc/nope/v" }, { dir = dir })
      assert.are.equal(2, r.code)
      assert.matches("cannot create the versions folder /proc/nope/v: No such file or directory", r.stderr)
      H.write(dir .. "/tide.lua", 'return { versions = "/proc/nope/v" }')
      r = H.tide({ "history" }, { dir = dir })
      assert.are.equal(2, r.code)
      assert.matches("versions directory /proc/nope/v: No such file or directory", r.stderr)
    end)
  end)
end)
