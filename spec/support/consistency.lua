-- spec/support/consistency.lua: the invariant the reliability specs (kill_spec, the torture
-- restart spec) check after every interruption, for a chain of n revisions "001".."nnn" where
-- revision i creates table <prefix><i>.
local assert = require "luassert" -- busted gives spec files their assert; a module asks for it
local H = require "spec.support.helpers"

local M = {}

--- State and catalog agree, history's last event per revision matches the state, and no
--- revision is applied without its parent.
function M.assert_chain(db, n, prefix)
  local applied = {}
  for _, id in ipairs(H.applied(db)) do
    applied[id] = true
  end
  local tables = {}
  for _, t in ipairs(H.tables(db)) do
    tables[t] = true
  end
  for i = 1, n do
    local id = string.format("%03d", i)
    assert.are.equal(applied[id] == true, tables[prefix .. i] == true,
      "revision " .. id .. ": state row and table disagree")
  end
  if not H.sql(db, "SELECT to_regclass('tide.history') IS NOT NULL AS p")[1].p then
    assert.are.same({}, H.tables(db))
    return
  end
  local rows = H.sql(db, "SELECT DISTINCT ON (revision) revision, direction FROM tide.history "
    .. "WHERE outcome IN ('applied', 'reverted') ORDER BY revision, id DESC")
  for _, r in ipairs(rows) do
    assert.are.equal(r.direction == "upgrade", applied[r.revision] == true,
      "revision " .. r.revision .. ": history's last event disagrees with the state")
  end
  for i = 2, n do
    if applied[string.format("%03d", i)] then
      assert.is_true(applied[string.format("%03d", i - 1)], "revision " .. i .. " applied without its parent")
    end
  end
end

return M
