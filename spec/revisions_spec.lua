-- spec/revisions_spec.lua: tide.revisions (lua/tide/revisions.lua): loading and validating
-- versions/*.lua, the revision graph, targets and checksums. Most of it needs no database;
-- the `#db` part runs `tide upgrade` to show how the graph rules reach the command line.
local H = require "spec.support.helpers"
local revisions = require "tide.revisions"
local config = require "tide.config"
local errors = require "tide.errors"

-- Loads dir/versions and returns the raised tide.Error (or fails when loading succeeds).
local function load_error(files)
  local dir = H.project(files)
  local ok, err = pcall(revisions.load, dir .. "/versions")
  assert.is_false(ok, "loading was expected to fail")
  assert.is_true(errors.is_error(err), "expected a tide.Error, got " .. tostring(err))
  return err, dir .. "/versions"
end

local function graph_of(files)
  local dir = H.project(files)
  return revisions.load(dir .. "/versions"), dir .. "/versions"
end

local function rev(id, parent, extra)
  return H.revision { revision = id, down_revision = parent, extra = extra }
end

-- A graph a -> b -> c plus a branch b -> d (two heads: c and d).
local function branched()
  return graph_of {
    ["001_a.lua"] = rev("aaa1"),
    ["002_b.lua"] = rev("bbb2", "aaa1"),
    ["003_c.lua"] = rev("ccc3", "bbb2"),
    ["004_d.lua"] = rev("ddd4", "bbb2"),
  }
end

local function ids(list)
  local out = {}
  for i, r in ipairs(list) do
    out[i] = r.revision
  end
  return out
end

describe("tide.revisions", function()
  lazy_teardown(function()
    H.cleanup()
  end)

  describe("load()", function()
    it("reads a revision's source when asked, and refuses a file edited since it was loaded", function()
      local text = "return { revision = '001', message = 'm', upgrade = function() end }\n"
      local dir = H.project { ["001_a.lua"] = text }
      local graph = revisions.load(dir .. "/versions")
      assert.are.equal(text, graph.list[1].source)
      local again = revisions.load(dir .. "/versions")
      H.write(dir .. "/versions/001_a.lua", text .. "-- edited\n")
      local ok, err = pcall(function()
        return again.list[1].source
      end)
      assert.is_false(ok)
      assert.are.equal("load", err.kind)
      assert.matches("changed or disappeared while tide was running", err.message)
    end)

    it("gives each file its own copy of the string, table and math libraries", function()
      local dir = H.project {
        ["001_a.lua"] = "string.format = nil\ntable.concat = nil\n"
          .. "return { revision = '001', message = 'm', upgrade = function() end }\n",
      }
      local graph = revisions.load(dir .. "/versions")
      assert.are.equal("001", graph.list[1].revision)
      assert.are.equal("function", type(string.format))
      assert.are.equal("function", type(table.concat))
    end)

    it("keeps one file's assignments to the libraries and os out of the next file", function()
      local dir = H.project {
        ["001_a.lua"] = "string.format = nil\nos.getenv = nil\nmath.pi = 3\n"
          .. "return { revision = '001', message = 'm', upgrade = function() end }\n",
        ["002_b.lua"] = "return { revision = '002', down_revision = '001', message = string.format('%d', 2)\n"
          .. "  .. tostring(os.getenv ~= nil) .. tostring(math.pi > 3.1), upgrade = function() end }\n",
      }
      local graph = revisions.load(dir .. "/versions")
      assert.are.equal("2truetrue", graph.by_id["002"].message)
      assert.are.equal("function", type(config.sandbox().os.getenv))
    end)

    it("reports a Lua syntax error with the file and line", function()
      local err, dir = load_error {
        ["001_a.lua"] = "return {\n  revision = \"001\",\n  message = 'x' 'y' +\n}\n",
      }
      assert.are.equal("load", err.kind)
      assert.truthy(err.message:find(dir .. "/001_a.lua:3:", 1, true), err.message)
      assert.are.equal(dir .. "/001_a.lua", err.file)
    end)

    it("reports a runtime error raised while the file runs, with file and line", function()
      local err, dir = load_error {
        ["001_a.lua"] = "local x = nil\n\nlocal y = x.field\nreturn {}\n",
      }
      assert.are.equal("load", err.kind)
      assert.truthy(err.message:find(dir .. "/001_a.lua:3:", 1, true), err.message)
    end)

    it("refuses a file that does not return a table", function()
      local err, dir = load_error { ["001_a.lua"] = "return 42\n" }
      assert.truthy(err.message:find(dir .. "/001_a.lua:1:", 1, true), err.message)
      assert.matches("must return a table, got number", err.message)
    end)

    for _, field in ipairs { "revision", "message", "upgrade" } do
      it("refuses a file without `" .. field .. "`", function()
        local fields = {
          revision = 'revision = "001",',
          message = 'message = "m",',
          upgrade = "upgrade = function() end,",
        }
        fields[field] = ""
        local source = "return {\n" .. fields.revision .. "\n" .. fields.message .. "\n" .. fields.upgrade .. "\n}\n"
        local err, dir = load_error { ["001_a.lua"] = source }
        assert.truthy(err.message:find(dir .. "/001_a.lua:1: missing `" .. field .. "`", 1, true), err.message)
      end)
    end

    it("refuses a field of the wrong type, naming its line", function()
      local err, dir = load_error {
        ["001_a.lua"] = 'return {\n  revision = "001",\n  message = 42,\n  upgrade = function() end,\n}\n',
      }
      assert.truthy(err.message:find(dir .. "/001_a.lua:3:", 1, true), err.message)
      assert.matches("`message`", err.message)
    end)

    it("refuses an upgrade that is not a function", function()
      local err = load_error {
        ["001_a.lua"] = 'return {\n  revision = "001",\n  message = "m",\n  upgrade = "CREATE TABLE x ()",\n}\n',
      }
      assert.matches(":4: `upgrade` must not be a string", err.message)
    end)

    it("refuses a transaction flag that is not a boolean", function()
      local err = load_error { ["001_a.lua"] = rev("001", nil, 'transaction = "no",') }
      assert.matches("`transaction` must not be a string", err.message)
    end)

    it("refuses an unknown key and suggests the one meant", function()
      local err, dir = load_error {
        ["001_a.lua"] = 'return {\n  revision = "002",\n  down_revison = "001",\n  message = "m",\n'
          .. "  upgrade = function() end,\n}\n",
      }
      assert.truthy(err.message:find(dir .. "/001_a.lua:3: unknown key `down_revison`", 1, true), err.message)
      assert.truthy(err.message:find("did you mean `down_revision`?", 1, true), err.message)
    end)

    it("refuses two files with the same revision id, naming both", function()
      local err, dir = load_error {
        ["001_a.lua"] = rev("001"),
        ["002_b.lua"] = rev("001"),
      }
      assert.matches("duplicate revision id \"001\"", err.message)
      assert.truthy(err.message:find(dir .. "/001_a.lua", 1, true), err.message)
      assert.truthy(err.message:find(dir .. "/002_b.lua", 1, true), err.message)
    end)

    it("refuses an unknown parent, with file, line and a suggestion", function()
      local err, dir = load_error {
        ["001_a.lua"] = rev("abc1"),
        ["002_b.lua"] = rev("abc2", "abc3"),
      }
      assert.truthy(err.message:find(dir .. "/002_b.lua:3: down_revision \"abc3\" is not a known revision", 1, true),
        err.message)
    end)

    it("refuses a cycle and names the revisions on it", function()
      local err = load_error {
        ["001_a.lua"] = rev("r1"),
        ["002_b.lua"] = rev("r2", { "r1", "r4" }),
        ["003_c.lua"] = rev("r3", "r2"),
        ["004_d.lua"] = rev("r4", "r3"),
      }
      assert.are.equal("load", err.kind)
      assert.matches("cycle", err.message)
      for _, id in ipairs { "r2", "r3", "r4" } do
        assert.truthy(err.message:find(id, 1, true), err.message)
      end
    end)

    it("refuses a revision that is its own parent", function()
      local err = load_error { ["001_a.lua"] = rev("selfish", "selfish") }
      assert.matches("cycle", err.message)
      assert.matches("selfish", err.message)
    end)

    it("refuses a revision id with spaces or slashes", function()
      for _, id in ipairs { "a b", "a/b", "" } do
        local err = load_error { ["001_a.lua"] = rev(id) }
        assert.matches("revision id", err.message)
      end
    end)

    it("refuses an empty down_revision list", function()
      local err, dir = load_error {
        ["001_a.lua"] = 'return {\n  revision = "001",\n  down_revision = {},\n  message = "m",\n'
          .. "  upgrade = function() end,\n}\n",
      }
      assert.truthy(err.message:find(dir .. "/001_a.lua:3: down_revision is an empty list", 1, true), err.message)
    end)

    it("refuses a non-string entry in a down_revision list", function()
      local err = load_error {
        ["001_a.lua"] = rev("001"),
        ["002_b.lua"] = 'return {\n  revision = "002",\n  down_revision = { "001", 7 },\n  message = "m",\n'
          .. "  upgrade = function() end,\n}\n",
      }
      assert.matches("down_revision%[2%] must be a string", err.message)
    end)

    it("loads a revision file in a sandbox without io or os.execute", function()
      local err = load_error {
        ["001_a.lua"] = "io.open('/tmp/x')\nreturn {}\n",
      }
      assert.matches("io", err.message)
    end)

    it("loads a merge revision with a list of parents", function()
      local graph = graph_of {
        ["001_a.lua"] = rev("a"),
        ["002_b.lua"] = rev("b", "a"),
        ["003_c.lua"] = rev("c", "a"),
        ["004_m.lua"] = rev("m", { "b", "c" }),
      }
      assert.are.same({ "m" }, graph.heads)
      assert.are.same({ "b", "c" }, graph.by_id.m.parents)
      assert.are.equal("a", graph.list[1].revision)
      assert.are.equal("m", graph.list[4].revision)
    end)

    it("orders parents before children whatever the file names say", function()
      local graph = graph_of {
        ["001_z.lua"] = rev("z", "y"),
        ["002_y.lua"] = rev("y", "x"),
        ["003_x.lua"] = rev("x"),
      }
      assert.are.same({ "x", "y", "z" }, ids(graph.list))
    end)

    it("reports every head of a branched graph", function()
      local graph = branched()
      assert.are.same({ "ccc3", "ddd4" }, graph.heads)
    end)

    it("ignores files that are not .lua", function()
      local graph = graph_of { ["001_a.lua"] = rev("a"), ["README.md"] = "not lua", ["002_b.lua.orig"] = "x = " }
      assert.are.same({ "a" }, ids(graph.list))
    end)
  end)

  describe("the load budget", function()
    local small = { instructions = 2000000, memory_mb = 8, configurable = true }
    local function load_small(source)
      local saved = revisions.limits
      revisions.limits = small
      local dir = H.project { ["001_a.lua"] = source }
      local ok, err = pcall(revisions.load, dir .. "/versions", { limits = small, cache = false })
      revisions.limits = saved
      assert.is_false(ok, "loading was expected to fail")
      assert.is_true(errors.is_error(err), "expected a tide.Error, got " .. tostring(err))
      assert.are.equal("load", err.kind)
      return err.message
    end

    it("stops a top level that loops forever, naming the file, the line and the setting", function()
      local message = load_small("local n = 0\nwhile true do\n  n = n + 1\nend\n")
      assert.matches("versions/001_a.lua:3: its top level ran over the load budget of 2000000 Lua instructions "
        .. "%(an endless loop%?%); `load_instructions` in tide.lua raises it$", message)
    end)

    it("cannot be swallowed by a pcall in the file", function()
      local message = load_small("while true do pcall(function() while true do end end) end\nreturn {}\n")
      assert.matches("versions/001_a.lua:1: its top level ran over the load budget", message)
      message = load_small("local ok = pcall(function() while true do end end)\nreturn { revision = 'x' }\n")
      assert.matches("versions/001_a.lua:1: its top level ran over the load budget", message)
    end)

    it("counts what tide reads of the result: a metatable's code and an error object's __tostring", function()
      assert.matches("missing `revision`",
        load_small("return setmetatable({}, { __index = function() while true do end end })\n"))
      assert.matches("versions/001_a.lua:1: its top level ran over the load budget",
        load_small("error(setmetatable({}, { __tostring = function() while true do end end }))\n"))
    end)

    it("stops a top level that allocates without end", function()
      -- the budget counts the whole state: garbage that earlier spec files left (a plain `busted`
      -- runs them all in one state) would be freed inside the budget and pay for the loop
      collectgarbage()
      assert.matches("^versions/001_a.lua: its top level used more than the load budget of 8 MiB of memory; "
        .. "`load_memory_mb` in tide.lua raises it$",
        load_small("local t = {}\nfor i = 1, 1e9 do t[i] = {} end\n"):gsub("^.*/versions", "versions"))
      assert.matches("used more than the load budget of 8 MiB",
        load_small("local s = string.rep('x', 2^30)\nreturn {}\n"))
      assert.are.equal(32 * 1024 * 1024, #string.rep("x", 32 * 1024 * 1024)) -- and the limit is gone after
    end)

    it("refuses a finalizer, which would run later, outside the budget", function()
      assert.matches("versions/001_a.lua:1: setmetatable: a metatable with __gc cannot be set here",
        load_small("setmetatable({}, { __gc = function() while true do end end })\nreturn {}\n"))
    end)

    it("lets an ordinary file through, and applies to the functions read again in a run", function()
      local saved = revisions.limits
      revisions.limits = small
      local graph = graph_of { ["001_a.lua"] = "local t = {}\nfor i = 1, 1000 do t[i] = i end\n" .. rev("001") }
      assert.are.equal("function", type(graph.by_id["001"].upgrade))
      revisions.limits = saved
    end)
  end)

  describe("head()", function()
    it("refuses several heads and names each with its file", function()
      local graph, dir = branched()
      local ok, err = pcall(revisions.head, graph)
      assert.is_false(ok)
      assert.are.equal("load", err.kind)
      assert.truthy(err.message:find("multiple heads", 1, true))
      assert.truthy(err.message:find("ccc3 (" .. dir .. "/003_c.lua)", 1, true), err.message)
      assert.truthy(err.message:find("ddd4 (" .. dir .. "/004_d.lua)", 1, true), err.message)
    end)
  end)

  describe("plan_upgrade()", function()
    local graph = branched()

    it("plans to head through the single head", function()
      local linear = graph_of { ["001_a.lua"] = rev("a"), ["002_b.lua"] = rev("b", "a") }
      assert.are.same({ "a", "b" }, ids(revisions.plan_upgrade(linear, {}, "head")))
    end)

    it("refuses `head` when there are several heads", function()
      local ok, err = pcall(revisions.plan_upgrade, graph, {}, "head")
      assert.is_false(ok)
      assert.matches("multiple heads", err.message)
    end)

    it("plans every branch for `heads`", function()
      assert.are.same({ "aaa1", "bbb2", "ccc3", "ddd4" }, ids(revisions.plan_upgrade(graph, {}, "heads")))
    end)

    it("plans only the ancestors of an id", function()
      assert.are.same({ "aaa1", "bbb2", "ddd4" }, ids(revisions.plan_upgrade(graph, {}, "ddd4")))
    end)

    it("accepts a unique prefix", function()
      assert.are.same({ "aaa1", "bbb2" }, ids(revisions.plan_upgrade(graph, {}, "bb")))
    end)

    it("refuses an ambiguous prefix, naming the candidates", function()
      local g = graph_of { ["001_a.lua"] = rev("abc1"), ["002_b.lua"] = rev("abc2", "abc1") }
      local ok, err = pcall(revisions.plan_upgrade, g, {}, "abc")
      assert.is_false(ok)
      assert.are.equal("usage", err.kind)
      assert.matches("ambiguous", err.message)
      assert.matches("abc1, abc2", err.message)
    end)

    it("refuses an unknown target and suggests a close one", function()
      local ok, err = pcall(revisions.plan_upgrade, graph, {}, "ccc4")
      assert.is_false(ok)
      assert.are.equal("usage", err.kind)
      assert.matches('unknown target "ccc4"', err.message)
      assert.matches("did you mean `ccc3`", err.message)
    end)

    it("plans the next N pending revisions for +N", function()
      assert.are.same({ "bbb2", "ccc3" }, ids(revisions.plan_upgrade(graph, { aaa1 = true }, "+2")))
    end)

    it("plans nothing for base", function()
      assert.are.same({}, ids(revisions.plan_upgrade(graph, {}, "base")))
    end)

    it("refuses -N and points at downgrade", function()
      local ok, err = pcall(revisions.plan_upgrade, graph, {}, "-1")
      assert.is_false(ok)
      assert.matches("tide downgrade %-1", err.message)
    end)

    it("skips what is already applied", function()
      assert.are.same({ "ddd4" }, ids(revisions.plan_upgrade(graph, { aaa1 = true, bbb2 = true, ccc3 = true },
        "heads")))
    end)
  end)

  describe("plan_downgrade()", function()
    local graph = branched()
    local all = { aaa1 = true, bbb2 = true, ccc3 = true, ddd4 = true }

    it("reverts the last N for -N, children first", function()
      assert.are.same({ "ddd4", "ccc3" }, ids(revisions.plan_downgrade(graph, all, "-2")))
    end)

    it("reverts everything for base, children first", function()
      assert.are.same({ "ddd4", "ccc3", "bbb2", "aaa1" }, ids(revisions.plan_downgrade(graph, all, "base")))
    end)

    it("keeps the target and its ancestors applied", function()
      assert.are.same({ "ddd4", "ccc3" }, ids(revisions.plan_downgrade(graph, all, "bbb2")))
    end)

    it("refuses a target that is not applied", function()
      local ok, err = pcall(revisions.plan_downgrade, graph, { aaa1 = true }, "ccc3")
      assert.is_false(ok)
      assert.matches("not applied", err.message)
    end)

    it("refuses +N and head, pointing at upgrade", function()
      for _, t in ipairs { "+1", "head", "heads" } do
        local ok, err = pcall(revisions.plan_downgrade, graph, all, t)
        assert.is_false(ok)
        assert.matches("tide upgrade", err.message)
      end
    end)
  end)

  describe("checksum()", function()
    local source = 'return {\n  revision = "001",\n  message = "m",\n  upgrade = function() end,\n}\n'

    it("is the same for CRLF line endings", function()
      assert.are.equal(revisions.checksum(source), revisions.checksum((source:gsub("\n", "\r\n"))))
    end)

    it("is the same with trailing spaces and tabs and trailing blank lines", function()
      assert.are.equal(revisions.checksum(source), revisions.checksum((source:gsub("\n", "  \t\n")) .. "\n\n"))
    end)

    it("changes when the code changes", function()
      assert.are_not.equal(revisions.checksum(source), revisions.checksum((source:gsub('"m"', '"n"'))))
    end)

    it("is what load() stores for the file", function()
      local graph = graph_of { ["001_a.lua"] = source }
      assert.are.equal(revisions.checksum(source), graph.by_id["001"].checksum)
      local crlf = graph_of { ["001_a.lua"] = source:gsub("\n", "\r\n") }
      assert.are.equal(graph.by_id["001"].checksum, crlf.by_id["001"].checksum)
    end)
  end)

  describe("on the command line #db", function()
    local db, dir

    before_each(function()
      db = H.fresh_db()
      dir = H.project {
        ["001_a.lua"] = H.revision { revision = "aaa1", up = "CREATE TABLE a (id int)" },
        ["002_b.lua"] = H.revision { revision = "bbb2", down_revision = "aaa1", up = "CREATE TABLE b (id int)" },
        ["003_c.lua"] = H.revision { revision = "ccc3", down_revision = "bbb2", up = "CREATE TABLE c (id int)" },
        ["004_d.lua"] = H.revision { revision = "ddd4", down_revision = "bbb2", up = "CREATE TABLE d (id int)" },
      }
    end)

    it("refuses `upgrade` without a target when there are two heads (exit 5), touching nothing", function()
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
      assert.are.equal(5, r.code)
      assert.matches("multiple heads", r.stderr)
      assert.matches("ccc3", r.stderr)
      assert.matches("ddd4", r.stderr)
      assert.are.same({}, H.tables(db))
      assert.are.same({}, H.applied(db))
    end)

    it("applies both branches with `upgrade heads`", function()
      local r = H.tide({ "upgrade", "heads", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same({ "a", "b", "c", "d" }, H.tables(db))
      assert.are.same({ "aaa1", "bbb2", "ccc3", "ddd4" }, H.applied(db))
    end)

    it("applies one branch with a unique prefix target", function()
      local r = H.tide({ "upgrade", "dd", "--url", db.url }, { dir = dir })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same({ "aaa1", "bbb2", "ddd4" }, H.applied(db))
      assert.are.same({ "a", "b", "d" }, H.tables(db))
    end)

    it("fails to load before connecting: a bad file with an unreachable database still exits 5", function()
      H.write(dir .. "/versions/005_bad.lua", "return {\n  revison = 'x',\n}\n")
      local r = H.tide({ "upgrade", "heads", "--url", "postgresql://nobody@127.0.0.1:" .. H.closed_port() .. "/x" },
        { dir = dir })
      assert.are.equal(5, r.code)
      assert.matches("005_bad.lua:2: unknown key `revison`", r.stderr)
    end)
  end)
end)
