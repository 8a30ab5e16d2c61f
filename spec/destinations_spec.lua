-- spec/destinations_spec.lua: adding a backup destination is one file and one registry line.
-- spec:///dir/ (spec/c/dest_spec.c, built with -DTIDE_SPEC_DESTINATION=ON as tools/setup does)
-- is registered by one line of engine/dest.c and named nowhere else in the engine or the Lua
-- library; tide's normal backup path (upgrade, backups, restore) works through it unchanged.
local H = require "spec.support.helpers"
local core = require "tide.core"
local json = require "tide.json"

local BIN = os.getenv("PG_BINDIR") or "/usr/lib/postgresql/15/bin"

-- Every line of the files under dir (of these extensions) that holds text.
local function lines_holding(dir, exts, text)
  local found = {}
  for _, name in ipairs(core.listdir(H.source_dir .. "/" .. dir)) do
    local ext = name:match("%.(%w+)$")
    if ext and exts[ext] then
      local n = 0
      for line in (H.read(H.source_dir .. "/" .. dir .. "/" .. name) .. "\n"):gmatch("([^\n]*)\n") do
        n = n + 1
        if line:find(text, 1, true) then
          found[#found + 1] = dir .. "/" .. name .. ":" .. n
        end
      end
    end
  end
  return found
end

describe("backup destinations", function()
  it("a new one is one file and one registry line: spec:// is named once in the engine, never in lua/", function()
    -- one line of dest.c's registry holds the scheme and the operations table; nothing else in
    -- the engine names either
    local scheme = lines_holding("engine", { c = true, h = true }, '"spec://"')
    assert.are.equal(1, #scheme, table.concat(scheme, ", "))
    assert.matches("^engine/dest%.c:%d+$", scheme[1])
    assert.are.same(scheme, lines_holding("engine", { c = true, h = true }, "tide_dest_spec_ops"))
    -- and the Lua library needs no change at all
    assert.are.same({}, lines_holding("lua/tide", { lua = true }, "spec://"))
  end)

  describe("core.destination", function()
    -- a wrong call: {kind = "usage"} with the message, never a bare string
    local function usage_error(fn, message)
      local ok, err = pcall(fn)
      assert.is_false(ok)
      assert.are.equal("table", type(err), tostring(err))
      assert.are.equal("usage", err.kind)
      assert.are.equal(message, err.message)
    end

    it("raises tide.Error {kind = usage} for a wrong call", function()
      local dir = H.tmpdir()
      usage_error(function()
        core.destination { url = "file://" .. dir .. "/", secret_acces_key = "x" }
      end, "core.destination: unknown option `secret_acces_key`")
      usage_error(function()
        core.destination { region = "eu-west-1" }
      end, "core.destination: url is required")
      usage_error(function()
        core.destination { url = "file://" .. dir .. "/", deadline = "soon" }
      end, "core.destination: deadline: a number expected, got string")
      local d = core.destination { url = "file://" .. dir .. "/" }
      usage_error(function()
        d:put_string({}, "x")
      end, "put_string: name: a string expected, got table")
      usage_error(function()
        d.list()
      end, "a tide.Destination expected (call its methods with `:`)")
      d:close()
      usage_error(function()
        d:list()
      end, "destination is closed")
    end)

    it("raises tide.Error {kind = backup} for what the destination reports", function()
      local ok, err = pcall(core.destination, { url = "ftp://example.com/" })
      assert.is_false(ok)
      assert.are.equal("backup", err.kind)
      assert.matches("^unsupported destination", err.message)
      local d <close> = core.destination { url = "file://" .. H.tmpdir() .. "/" }
      ok, err = pcall(d.get_string, d, "../x")
      assert.is_false(ok)
      assert.are.same({ "backup", "invalid object name `../x`" }, { err.kind, err.message })
    end)
  end)

  describe("spec:// #db", function()
    it("takes tide's backup, lists it and restores it, through the normal backup path", function()
      local dir = H.tmpdir()
      local db = H.fresh_db()
      H.sql(db, "CREATE TABLE kept (id int PRIMARY KEY, v text); "
        .. "INSERT INTO kept SELECT g, md5(g::text) FROM generate_series(1, 500) g;")
      local proj = H.project(H.chain(1, "added"),
        string.format("return { backup = { to = %q, pg_bindir = %q } }\n", "spec://" .. dir .. "/", BIN))
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      local id = H.sql(db, "SELECT DISTINCT backup FROM tide.history")[1].backup:match("([^/]+)/$")
      assert.truthy(id, "the history names the backup")

      -- the destination's own layout: one flat file per object
      local files = core.listdir(dir)
      table.sort(files)
      assert.are.same({ id .. "%2Farchive.dump", id .. "%2Fmanifest.json" }, files)
      local manifest = json.decode(H.read(dir .. "/" .. id .. "%2Fmanifest.json"))
      assert.are.equal(db.name, manifest.database)
      assert.are.equal(core.file_digest(dir .. "/" .. id .. "%2Farchive.dump").sha256, manifest.sha256)

      local listed = H.tide({ "backups", "--json" }, { dir = proj })
      assert.are.equal(0, listed.code, listed.output)
      assert.are.equal(id, json.decode(listed.stdout).backups[1].id)

      local target = H.fresh_db()
      r = H.tide({ "restore", id, "--to", target.url, "--yes" }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      assert.are.same(H.sql(db, "SELECT count(*)::int AS n, md5(string_agg(v, '' ORDER BY id)) AS h FROM kept"),
        H.sql(target, "SELECT count(*)::int AS n, md5(string_agg(v, '' ORDER BY id)) AS h FROM kept"))
    end)
  end)
end)
