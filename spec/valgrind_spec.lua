-- Memory: the CLI's main paths under valgrind memcheck report no errors and no definite or
-- indirect leaks, on success and on each kind of failure (the error paths are where C code
-- forgets to free).
local H = require "spec.support.helpers"

local VALGRIND = "valgrind -q --leak-check=full --show-leak-kinds=definite,indirect "
  .. "--errors-for-leak-kinds=definite,indirect --error-exitcode=99"

-- Runs tide under valgrind; returns {code, output}.
local function memcheck(args, dir)
  local cmd = "unset DATABASE_URL; cd " .. H.shell_quote(dir) .. " && " .. VALGRIND .. " " .. H.shell_quote(H.bin)
  for _, a in ipairs(args) do
    cmd = cmd .. " " .. H.shell_quote(a)
  end
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local output = p:read("a")
  local _, _, code = p:close()
  return { code = code, output = output }
end

describe("tide under valgrind #db", function()
  local db, dir
  setup(function()
    db = H.fresh_db()
    local revs = H.chain(3)
    revs["004_bad.lua"] = H.revision { revision = "004", down_revision = "003", up = "CREATE TABLE t1 (id int)" }
    dir = H.project(revs)
  end)
  teardown(H.cleanup)

  local cases = {
    { "upgrades, then fails a revision", { "upgrade" }, 6 },
    { "prints status as JSON", { "status", "--json" }, 0 },
    { "prints the applied history", { "history", "--applied" }, 0 },
    { "downgrades", { "downgrade", "base", "--no-backup" }, 0 },
    { "refuses an unknown target", { "upgrade", "nope" }, 2 },
  }
  for _, c in ipairs(cases) do
    it(c[1] .. " with no memory errors or leaks", function()
      local args = { table.unpack(c[2]) }
      args[#args + 1] = "--url"
      args[#args + 1] = db.url
      local r = memcheck(args, dir)
      assert.are.equal(c[3], r.code, r.output)
      assert.is_nil(r.output:find("==%d+=="), r.output)
    end)
  end

  it("fails to connect with no memory errors or leaks", function()
    local r = memcheck({ "status", "--url", "postgresql://tide:pw@127.0.0.1:1/x" }, dir)
    assert.are.equal(3, r.code, r.output)
    assert.is_nil(r.output:find("==%d+=="), r.output)
  end)

  it("rejects a broken revision file with no memory errors or leaks", function()
    local broken = H.project { ["001.lua"] = "return { revision = " }
    local r = memcheck({ "status", "--url", db.url }, broken)
    assert.are.equal(5, r.code, r.output)
    assert.is_nil(r.output:find("==%d+=="), r.output)
  end)
end)
