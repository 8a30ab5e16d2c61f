-- spec/drift_spec.lua: an applied revision whose file changed or disappeared: `tide check`,
-- `upgrade` refusing without --allow-drift, `tide accept`, and downgrade naming its source.
local H = require "spec.support.helpers"
local drift = require "tide.drift"

-- What GNU `diff -u` writes for a -> b, without its two label lines.
local function gnu_diff(a, b)
  local fa, fb = os.tmpname(), os.tmpname()
  H.write(fa, a)
  H.write(fb, b)
  local p = assert(io.popen("diff -u " .. H.shell_quote(fa) .. " " .. H.shell_quote(fb)))
  local text = p:read("a")
  p:close()
  os.remove(fa)
  os.remove(fb)
  return (text:gsub("^[^\n]*\n[^\n]*\n", ""):gsub("\n$", ""))
end

-- Lines "1\n".."n\n" with some replaced.
local function numbered(n, edits)
  local lines = {}
  for i = 1, n do
    lines[i] = edits and edits[i] or ("line " .. i)
  end
  return table.concat(lines, "\n") .. "\n"
end

describe("tide.drift diff()", function()
  local function body(a, b)
    local d = drift.diff(a, b, "applied", "file")
    assert.are.equal("--- applied\n+++ file\n", d:sub(1, 21))
    return d:sub(22)
  end

  -- Before: "+" before "-" within a change, and a bare "@@" between hunks.
  for _, case in ipairs {
    { "one changed line", numbered(10), numbered(10, { [5] = "five" }) },
    { "a line added at the start", numbered(6), "new\n" .. numbered(6) },
    { "lines removed at the end", numbered(8), numbered(5) },
    { "two changes far apart (two hunks)", numbered(30), numbered(30, { [3] = "three", [25] = "x", [26] = "y" }) },
    { "several lines replaced by fewer", numbered(12), numbered(12, { [4] = "a", [5] = "b", [6] = "c" })
      :gsub("b\nc\n", "") },
    { "everything added", "", numbered(3) },
  } do
    it("writes what `diff -u` writes for " .. case[1], function()
      assert.are.equal(gnu_diff(case[2], case[3]), body(case[2], case[3]))
    end)
  end

  it("is a patch that turns the applied source into the file", function()
    local a, b = numbered(40), numbered(40, { [2] = "two", [20] = "twenty", [39] = "x" }) .. "end\n"
    local dir = H.tmpdir { ["f.lua"] = a, ["f.diff"] = drift.diff(a, b, "f.lua", "f.lua") .. "\n" }
    assert.is_true(os.execute("cd " .. H.shell_quote(dir) .. " && patch -s f.lua f.diff"))
    assert.are.equal(b, H.read(dir .. "/f.lua"))
    H.cleanup()
  end)

  it("is empty for equal texts", function()
    assert.are.equal("", drift.diff(numbered(3), numbered(3), "a", "b"))
  end)
end)

describe("drift #db", function()
  after_each(H.cleanup)

  local function applied_project(db)
    local dir = H.project(H.chain(2))
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    return dir
  end

  it("ignores line endings and trailing whitespace (checksum algorithm 1)", function()
    local db = H.fresh_db()
    local dir = applied_project(db)
    local path = dir .. "/versions/001_t1.lua"
    H.write(path, (H.read(path):gsub("\n", "  \r\n")))
    local r = H.tide({ "check", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.stdout)
  end)

  it("check reports an edited applied file with a diff against the stored source", function()
    local db = H.fresh_db()
    local dir = applied_project(db)
    local path = dir .. "/versions/001_t1.lua"
    local original = H.read(path)
    H.write(path, (original:gsub("CREATE TABLE t1 %(id int PRIMARY KEY%)", "CREATE TABLE t1 (id bigint PRIMARY KEY)")))
    local r = H.tide({ "check", "--url", db.url }, { dir = dir })
    assert.equal(1, r.code)
    assert.matches("revision 001 %(.-001_t1.lua%) changed since it was applied", r.stdout)
    assert.matches('\n%-    db:exec%("CREATE TABLE t1 %(id int PRIMARY KEY%)"%)', r.stdout)
    assert.matches('\n%+    db:exec%("CREATE TABLE t1 %(id bigint PRIMARY KEY%)"%)', r.stdout)
    -- a unified diff of the stored source against the file, hunk headers and all
    local hunks = r.stdout:match("\n%+%+%+ [^\n]*\n(@@ .-)\n[^-+ @]")
    assert.are.equal(gnu_diff(original, H.read(path)), hunks)
  end)

  it("upgrade refuses with exit 9 unless --allow-drift; accept records the new checksum in history", function()
    local db = H.fresh_db()
    local dir = applied_project(db)
    local revs = H.chain(3)
    H.write(dir .. "/versions/003_t3.lua", revs["003_t3.lua"])
    local path = dir .. "/versions/002_t2.lua"
    H.write(path, H.read(path):gsub("message = \"create t2\"", "message = \"create t2 (edited)\""))
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(9, r.code)
    assert.matches("revision 002 .- changed since it was applied", r.stderr)
    assert.matches("refusing to upgrade", r.stderr)
    assert.same({ "001", "002" }, H.applied(db))
    -- a no-op upgrade refuses too: the drift is reported whatever is pending
    r = H.tide({ "upgrade", "--url", db.url, "--allow-drift" }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.matches("changed since it was applied %(%-%-allow%-drift%)", r.stderr)
    assert.same({ "001", "002", "003" }, H.applied(db))
    r = H.tide({ "accept", "002", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.matches("accepted 002: checksum", r.stdout)
    local h = H.sql(db, "SELECT direction, outcome, error FROM tide.history WHERE direction = 'accept'")
    assert.equal(1, #h)
    assert.matches("previous checksum", h[1].error)
    assert.same({ { message = "create t2 (edited)" } },
      H.sql(db, "SELECT message FROM tide.revision WHERE revision = '002'"))
    assert.equal(0, H.tide({ "check", "--url", db.url }, { dir = dir }).code)
    r = H.tide({ "accept", "002", "--url", db.url }, { dir = dir })
    assert.matches("nothing to accept", r.stdout)
  end)

  -- With every revision applied, a start is answered by one aggregate row (runner.all_applied);
  -- an edited file must still be caught there, not read as "nothing to do".
  it("upgrade with nothing pending still refuses an edited applied file (exit 9)", function()
    local db = H.fresh_db()
    local dir = applied_project(db)
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.matches("nothing to do", r.stdout)
    local path = dir .. "/versions/002_t2.lua"
    H.write(path, H.read(path):gsub("message = \"create t2\"", "message = \"create t2 (edited)\""))
    r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(9, r.code, r.output)
    assert.matches("revision 002 .- changed since it was applied", r.stderr)
    assert.same({ "001", "002" }, H.applied(db))
  end)

  it("a downgrade of a drifted revision says which source it runs", function()
    local db = H.fresh_db()
    local dir = applied_project(db)
    local path = dir .. "/versions/002_t2.lua"
    H.write(path, H.read(path) .. "\n-- edited after it was applied\n")
    local r = H.tide({ "downgrade", "-1", "--no-backup", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.matches("revision 002 changed since it was applied on .-: the downgrade runs the current file "
      .. ".-002_t2.lua %(checksum %x+%), not the source that was applied", r.stderr)
    assert.same({ "001" }, H.applied(db))
  end)

  it("check and upgrade report an applied revision whose file disappeared", function()
    local db = H.fresh_db()
    local dir = applied_project(db)
    os.remove(dir .. "/versions/002_t2.lua")
    local r = H.tide({ "check", "--url", db.url }, { dir = dir })
    assert.equal(1, r.code)
    assert.matches("the database has revision 002, not found in .- %(deleted or renamed file", r.stdout)
    r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(8, r.code)
    assert.matches("the file was deleted or renamed", r.stderr)
  end)
end)
