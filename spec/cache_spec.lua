-- spec/cache_spec.lua: versions/.tide-cache (lua/tide/cache.lua) through the real binary. The
-- cache may make a start faster, never different: an edited, removed or environment-dependent
-- file is read again, a damaged or foreign cache is ignored, and one that cannot be written
-- changes nothing. Only files whose stamps are over two seconds old are cached, so the
-- projects are all made first and the spec waits once.
local H = require "spec.support.helpers"
local core = require "tide.core"
local json = require "tide.json"

local IMPURE = [[
return {
  revision = "env",
  down_revision = "003",
  message = "from " .. (os.getenv("TIDE_SPEC_MESSAGE") or "nowhere"),
  upgrade = function(db) db:exec("SELECT 1") end,
}
]]

local function exists(path)
  local f = io.open(path, "rb")
  if f then
    f:close()
  end
  return f ~= nil
end

-- From `-v`: how many files came from the cache, out of how many, and how many were read.
local function from_cache(r)
  local used, total, read = r.stderr:match("revisions: (%d+) of (%d+) files as %.tide%-cache recorded them; (%d+)")
  assert(used, "no cache line in: " .. r.stderr)
  return tonumber(used), tonumber(total), tonumber(read)
end

local function messages(r)
  local out = {}
  for _, rev in ipairs(json.decode(r.stdout).revisions) do
    out[rev.revision] = rev.message
  end
  return out
end

describe("revision cache #db", function()
  local projects = {}
  local NAMES = { "plain", "copied", "edited", "impure", "damaged", "foreign", "disabled", "blocked", "removed" }

  setup(function()
    for _, name in ipairs(NAMES) do
      local revs = H.chain(3)
      if name == "impure" then
        revs["004_env.lua"] = IMPURE
      end
      projects[name] = H.project(revs, name == "disabled" and "return { cache = false }\n" or nil)
    end
    core.sleep(2.2)
  end)

  teardown(function()
    H.cleanup()
  end)

  local function history(name, env)
    local r = H.tide({ "history", "--json", "-v" }, { dir = projects[name], env = env })
    assert.are.equal(0, r.code, r.output)
    return r
  end

  it("is written by one run and used by the next, which applies and records the same", function()
    local dir = projects.plain
    assert.are.same({ 0, 3, 3 }, { from_cache(history("plain")) })
    assert.is_true(exists(dir .. "/versions/.tide-cache"))
    assert.are.same({ 3, 3, 0 }, { from_cache(history("plain")) })

    local db = H.fresh_db()
    local r = H.tide({ "upgrade", "--url", db.url, "-v" }, { dir = dir })
    assert.are.equal(0, r.code, r.output)
    assert.are.same({ 3, 3, 0 }, { from_cache(r) })
    assert.are.same({ "001", "002", "003" }, H.applied(db))
    for _, row in ipairs(H.sql(db, "SELECT revision, checksum FROM tide.revision ORDER BY revision")) do
      local file = H.read(string.format("%s/versions/%s_t%d.lua", dir, row.revision, tonumber(row.revision)))
      assert.are.equal(core.checksum(file), row.checksum)
    end

    -- a new file beside a cache that vouches for the other three is still found and applied
    H.write(dir .. "/versions/004_t4.lua", H.revision { revision = "004", down_revision = "003",
      up = "CREATE TABLE t4 (id int)" })
    r = H.tide({ "upgrade", "--url", db.url, "-v" }, { dir = dir })
    assert.are.equal(0, r.code, r.output)
    assert.are.same({ 3, 4, 1 }, { from_cache(r) })
    assert.are.same({ "001", "002", "003", "004" }, H.applied(db))
  end)

  it("runs no file of a copy (new stamps, same bytes): it reads and hashes them", function()
    history("copied")
    local copy = H.tmpdir()
    assert(os.execute(string.format("cp -r %s/versions %s/", H.shell_quote(projects.copied), H.shell_quote(copy))))
    local r = H.tide({ "history", "--json", "-v" }, { dir = copy })
    assert.are.equal(0, r.code, r.output)
    assert.are.same({ 3, 3, 3 }, { from_cache(r) })
    assert.are.same({ ["001"] = "create t1", ["002"] = "create t2", ["003"] = "create t3" }, messages(r))
  end)

  it("reads an edited file again at once, even one edited within the same second", function()
    local dir = projects.edited
    history("edited")
    local path = dir .. "/versions/002_t2.lua"
    local before = H.read(path)
    local after = before:gsub('"create t2"', '"created 2"') -- same size
    assert.are.equal(#before, #after)
    H.write(path, after)
    local r = history("edited")
    assert.are.same({ 2, 3, 1 }, { from_cache(r) })
    assert.are.equal("created 2", messages(r)["002"])
  end)

  it("never caches a file whose top level asks the environment", function()
    history("impure", { TIDE_SPEC_MESSAGE = "first" })
    local r = history("impure", { TIDE_SPEC_MESSAGE = "second" })
    assert.are.same({ 3, 4, 1 }, { from_cache(r) })
    assert.are.equal("from second", messages(r).env)
  end)

  it("ignores a damaged cache and writes a good one", function()
    local dir = projects.damaged
    H.write(dir .. "/versions/.tide-cache", "tide-cache 1\n\32" .. string.rep("\255", 40))
    assert.are.same({ 0, 3, 3 }, { from_cache(history("damaged")) })
    assert.are.same({ 3, 3, 0 }, { from_cache(history("damaged")) })
  end)

  it("ignores a cache another build of tide wrote", function()
    local dir = projects.foreign
    history("foreign")
    local cache = H.read(dir .. "/versions/.tide-cache")
    local id_at = #"tide-cache 1\n" + 2
    local other = cache:sub(id_at, id_at) == "0" and "1" or "0" -- a different id, whatever this build's is
    H.write(dir .. "/versions/.tide-cache", cache:sub(1, id_at - 1) .. other .. cache:sub(id_at + 1))
    assert.are.same({ 0, 3, 3 }, { from_cache(history("foreign")) })
    assert.are.same({ 3, 3, 0 }, { from_cache(history("foreign")) })
  end)

  it("is neither read nor written with cache = false in tide.lua", function()
    assert.are.same({ 0, 3, 3 }, { from_cache(history("disabled")) })
    assert.are.same({ 0, 3, 3 }, { from_cache(history("disabled")) })
    assert.is_false(exists(projects.disabled .. "/versions/.tide-cache"))
  end)

  it("changes nothing when it cannot be written", function()
    local dir = projects.blocked
    assert(os.execute("mkdir " .. H.shell_quote(dir .. "/versions/.tide-cache")))
    local r = history("blocked")
    assert.are.same({ 0, 3, 3 }, { from_cache(r) })
    assert.are.same({ ["001"] = "create t1", ["002"] = "create t2", ["003"] = "create t3" }, messages(r))
    local leftovers = {}
    for _, name in ipairs(core.listdir(dir .. "/versions")) do
      if name:match("^%.tide%-cache%.") then
        leftovers[#leftovers + 1] = name
      end
    end
    assert.are.same({}, leftovers)
  end)

  it("forgets a removed file", function()
    local dir = projects.removed
    history("removed")
    assert(os.remove(dir .. "/versions/003_t3.lua"))
    local r = history("removed")
    assert.are.same({ 2, 2, 0 }, { from_cache(r) })
    assert.is_nil(messages(r)["003"])
    assert.is_nil(H.read(dir .. "/versions/.tide-cache"):find("003_t3.lua", 1, true))
  end)
end)

describe("tide.cache's format", function()
  local cache = require "tide.cache"
  local saved

  setup(function()
    saved = package.preload["tide.build"]
    package.preload["tide.build"] = function()
      return { library_id = "spec" }
    end
  end)

  teardown(function()
    package.preload["tide.build"] = saved
    H.cleanup()
  end)

  local function rev(t)
    t.parents = t.parents or {}
    t.checksum = t.checksum or string.rep("ab", 32)
    t.message = t.message or "m"
    t.transaction = t.transaction ~= false
    return t
  end

  it("reads back every field as written: lists, flags, optional values, odd bytes", function()
    local revs = {
      rev { revision = "001" },
      rev { revision = "002", parents = { "001" }, has_downgrade = true, lock_timeout = "2s",
        message = "it's \n a \0 message" },
      rev { revision = "003", parents = { "001", "002" }, transaction = false, statement_timeout = "",
        allow = { ["drop-table"] = "reviewed", [""] = "" } },
      rev { revision = "004", parents = { "003" }, allow = {} },
    }
    local dir = H.tmpdir()
    local records = {}
    for i, r in ipairs(revs) do
      assert.is_true(cache.cacheable(r))
      records[i] = { name = r.revision .. ".lua", stamp = "s" .. i, hash = "h" .. i, rev = r }
    end
    assert.is_true(cache.write(dir, records, "fp"))
    local entries, count, fingerprint = cache.read(dir)
    assert.are.equal(4, count)
    assert.are.equal("fp", fingerprint)
    for i, r in ipairs(revs) do
      local e = entries[r.revision .. ".lua"]
      assert.are.equal("s" .. i, e.stamp)
      assert.are.equal("h" .. i, e.hash)
      assert.are.same({
        revision = r.revision, parents = r.parents, message = r.message, has_downgrade = r.has_downgrade == true,
        transaction = r.transaction, lock_timeout = r.lock_timeout, statement_timeout = r.statement_timeout,
        allow = r.allow, checksum = r.checksum,
      }, e.meta)
    end
  end)

  it("leaves out what it could not read back the same", function()
    assert.is_false(cache.cacheable(rev { revision = "x", parents = { "" } }))
    assert.is_false(cache.cacheable(rev { revision = "x", parents = { "a\0b" } }))
    assert.is_false(cache.cacheable(rev { revision = "x", allow = { rule = { nested = true } } }))
    assert.is_false(cache.cacheable(rev { revision = "x", allow = { [1] = "reason" } }))
  end)
end)
