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
