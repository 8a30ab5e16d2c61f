-- Reliability: many tide processes at once on one database. The advisory lock must make every
-- revision apply exactly once, every process exit 0, and mixed verbs leave a consistent state.
local H = require "spec.support.helpers"

local N = 20

describe("races #db", function()
  local db, dir
  before_each(function()
    db = H.fresh_db()
    local revs = H.chain(N, "r")
    dir = H.project(revs)
  end)
  after_each(H.cleanup)

  it("8 upgrades started together apply each revision exactly once and all exit 0", function()
    local runs = {}
    for i = 1, 8 do
      runs[i] = H.spawn({ "upgrade", "--url", db.url }, { dir = dir })
    end
    for i = 1, 8 do
      local r = runs[i].wait()
      assert.are.equal(0, r.code, r.stderr)
    end
    assert.are.equal(N, #H.applied(db))
    assert.are.equal(N, #H.tables(db))
    local rows = H.sql(db, "SELECT revision, count(*) AS n FROM tide.history "
      .. "WHERE direction = 'upgrade' AND outcome = 'applied' GROUP BY revision")
    assert.are.equal(N, #rows)
    for _, row in ipairs(rows) do
      assert.are.equal(1, row.n, "revision " .. row.revision .. " applied " .. row.n .. " times")
    end
    local failed = H.sql(db, "SELECT count(*) AS n FROM tide.history WHERE outcome = 'failed'")[1].n
    assert.are.equal(0, failed)
  end)

  it("8 upgrades over a CREATE INDEX CONCURRENTLY revision all exit 0: waiting tides hold no snapshot", function()
    -- The first revision takes a while, so that the other seven wait for the lock while the
    -- third builds its index: CREATE INDEX CONCURRENTLY waits for every transaction older than
    -- its own, and a waiting tide must not be one.
    local cic = H.project {
      ["001.lua"] = H.revision { revision = "001", up = "CREATE TABLE c1 (id int); SELECT pg_sleep(0.5)" },
      ["002.lua"] = H.revision { revision = "002", down_revision = "001",
        up = "INSERT INTO c1 SELECT generate_series(1, 1000)" },
      ["003.lua"] = [[
return {
  revision = "003",
  down_revision = "002",
  message = "index c1 concurrently",
  transaction = false,
  upgrade = function(db)
    db:step("index", function(db)
      db:exec("CREATE INDEX CONCURRENTLY c1_id ON c1 (id)")
    end)
  end,
}
]],
      ["004.lua"] = H.revision { revision = "004", down_revision = "003", up = "CREATE TABLE c4 (id int)" },
    }
    local runs = {}
    for i = 1, 8 do
      runs[i] = H.spawn({ "upgrade", "--lock-wait", "30", "--url", db.url }, { dir = cic })
    end
    for i = 1, 8 do
      local r = runs[i].wait()
      assert.are.equal(0, r.code, r.stderr)
    end
    assert.are.same({ "001", "002", "003", "004" }, H.applied(db))
    assert.is_true(H.sql(db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'c1_id'::regclass")[1].indisvalid)
    local rows = H.sql(db, "SELECT revision, count(*) AS n FROM tide.history "
      .. "WHERE direction = 'upgrade' AND outcome = 'applied' GROUP BY revision ORDER BY revision")
    assert.are.equal(4, #rows)
    for _, row in ipairs(rows) do
      assert.are.equal(1, row.n, "revision " .. row.revision .. " applied " .. row.n .. " times")
    end
    assert.are.same({}, H.sql(db, "SELECT revision, error FROM tide.history WHERE outcome = 'failed'"))
  end)

  it("8 upgrades up to a revision that ends its own transaction: each refuses it, nothing of it stays", function()
    local revs = H.chain(5, "e")
    revs["006_commits.lua"] = H.revision { revision = "006", down_revision = "005",
      up = "CREATE TABLE e6 (id int); COMMIT; CREATE TABLE e6b (id int)" }
    local ending = H.project(revs)
    local runs = {}
    for i = 1, 8 do
      runs[i] = H.spawn({ "upgrade", "--lock-wait", "30", "--url", db.url }, { dir = ending })
    end
    for i = 1, 8 do
      local r = runs[i].wait()
      assert.are.equal(6, r.code, r.stderr)
      assert.truthy(r.stderr:find("revision 006 (versions/006_commits.lua:6) failed in upgrade: COMMIT would end "
        .. "the transaction", 1, true), r.stderr)
    end
    assert.are.same({ "001", "002", "003", "004", "005" }, H.applied(db))
    assert.are.same({ "e1", "e2", "e3", "e4", "e5" }, H.tables(db))
    local rows = H.sql(db, "SELECT revision, outcome, count(*)::int AS n FROM tide.history "
      .. "GROUP BY revision, outcome ORDER BY revision, outcome")
    for _, row in ipairs(rows) do
      -- one applied row per good revision; one failed row per tide for 006, and nothing else
      local expected = row.revision == "006" and { "failed", 8 } or { "applied", 1 }
      assert.are.same(expected, { row.outcome, row.n }, "revision " .. row.revision)
    end
  end)

  it("mixed upgrade, downgrade and stamp runs leave state, tables and history consistent", function()
    local verbs = {
      { "upgrade" }, { "downgrade", "base", "--no-backup" }, { "upgrade", "+5" }, { "downgrade", "-3", "--no-backup" },
      { "upgrade" }, { "stamp", "head" }, { "upgrade", "010" }, { "downgrade", "-1", "--no-backup" },
    }
    local runs = {}
    for i, v in ipairs(verbs) do
      local args = { table.unpack(v) }
      args[#args + 1] = "--url"
      args[#args + 1] = db.url
      runs[i] = H.spawn(args, { dir = dir })
    end
    for i = 1, #verbs do
      local r = runs[i].wait()
      -- A downgrade after a stamp may find a table its revision never created: that is the one
      -- allowed failure, and it must be a clean, recorded one.
      assert.is_true(r.code == 0 or r.code == 6, "exit " .. tostring(r.code) .. ": " .. tostring(r.stderr))
    end
    local applied = {}
    for _, id in ipairs(H.applied(db)) do
      applied[id] = true
    end
    -- Applied revisions form a prefix of the chain.
    local seen_gap = false
    for i = 1, N do
      local id = string.format("%03d", i)
      if not applied[id] then
        seen_gap = true
      else
        assert.is_false(seen_gap, "revision " .. id .. " applied after a gap")
      end
    end
    -- The last applied event of each revision agrees with the state.
    local rows = H.sql(db, "SELECT DISTINCT ON (revision) revision, direction FROM tide.history "
      .. "WHERE outcome IN ('applied', 'reverted') ORDER BY revision, id DESC")
    for _, r in ipairs(rows) do
      local up = r.direction == "upgrade" or r.direction == "stamp"
      assert.are.equal(up, applied[r.revision] == true, "revision " .. r.revision)
    end
  end)
end)
