-- spec/support/consistency.lua: the invariant the reliability specs (kill_spec, the torture
-- restart spec) check after every interruption, for a chain of n revisions "001".."nnn" where
-- revision i creates table <prefix><i>.
local assert = require "luassert" -- busted gives spec files their assert; a module asks for it
local H = require "spec.support.helpers"

local M = {}

--- State and catalog agree, history's last event per revision matches the state, and no
--- revision is applied without its parent. A transaction = false revision that stopped half way
--- (state row 'partial') may have its table or not: its steps say how far it got.
---
--- Everything is read in one snapshot: the session of a tide just killed can still be running
--- its last statement, and a COMMIT between two reads would look like a disagreement.
function M.assert_chain(db, n, prefix)
  local conn <close> = H.connect(db)
  conn:exec("BEGIN ISOLATION LEVEL REPEATABLE READ")
  local function q(sql, ...)
    return (conn:query(sql, ...))
  end
  local tracked = q("SELECT to_regclass('tide.revision') IS NOT NULL AS p")[1].p
  local applied, partial, state = {}, {}, {}
  if tracked then
    for _, r in ipairs(q("SELECT revision, state, partial_direction FROM tide.revision ORDER BY revision")) do
      if r.state == "partial" then
        partial[r.revision] = true
      else
        applied[r.revision] = true
      end
      state[#state + 1] = r.revision .. (r.state == "partial" and ("~" .. tostring(r.partial_direction)) or "")
    end
  end
  local tables, names = {}, {}
  for _, r in ipairs(q("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    .. "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1")) do
    tables[r.relname] = true
    names[#names + 1] = r.relname
  end
  local history = tracked and q("SELECT DISTINCT ON (revision) revision, direction FROM tide.history "
    .. "WHERE outcome IN ('applied', 'reverted') ORDER BY revision, id DESC") or {}
  conn:exec("COMMIT")
  -- what the message shows when an assertion fails
  local seen = "state: " .. table.concat(state, " ") .. "; tables: " .. table.concat(names, " ")
  for i = 1, n do
    local id = string.format("%03d", i)
    if not partial[id] then
      assert.are.equal(applied[id] == true, tables[prefix .. i] == true,
        "revision " .. id .. ": state row and table disagree (" .. seen .. ")")
    end
  end
  if not tracked then
    assert.are.same({}, names, seen)
    return
  end
  for _, r in ipairs(history) do
    if not partial[r.revision] then
      assert.are.equal(r.direction == "upgrade", applied[r.revision] == true,
        "revision " .. r.revision .. ": history's last event disagrees with the state (" .. seen .. ")")
    end
  end
  for i = 2, n do
    if applied[string.format("%03d", i)] then
      assert.is_true(applied[string.format("%03d", i - 1)] == true,
        "revision " .. i .. " applied without its parent (" .. seen .. ")")
    end
  end
end

return M
