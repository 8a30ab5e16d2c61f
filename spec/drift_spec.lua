-- spec/drift_spec.lua: an applied revision whose file changed or disappeared: `tide check`,
-- `upgrade` refusing without --allow-drift, `tide accept`, and downgrade naming its source.
local H = require "spec.support.helpers"

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
    H.write(path, (H.read(path):gsub("CREATE TABLE t1 %(id int PRIMARY KEY%)",
      "CREATE TABLE t1 (id bigint PRIMARY KEY)")))
    local r = H.tide({ "check", "--url", db.url }, { dir = dir })
    assert.equal(1, r.code)
    assert.matches("revision 001 %(.-001_t1.lua%) changed since it was applied", r.stdout)
    assert.matches('\n%-    db:exec%("CREATE TABLE t1 %(id int PRIMARY KEY%)"%)', r.stdout)
    assert.matches('\n%+    db:exec%("CREATE TABLE t1 %(id bigint PRIMARY KEY%)"%)', r.stdout)
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
