-- tide.errors: the failures a user can cause, each with its stage ("kind") and exit code.
-- Every error tide raises on purpose is a tide.Error table (see engine/core.c) carrying `kind`
-- and `message`; SQL failures add sqlstate, detail, hint, position, query, and the runner adds
-- revision and file. The CLI turns the kind into the exit code documented in README.md.
local core = require "tide.core"

local M = {}

-- kind -> exit code; README.md "Exit codes" is this table.
M.exit_codes = {
  ok = 0,
  check = 1, -- `tide check` / `tide lint` found problems
  usage = 2, -- bad command line, unknown target, bad config file
  config = 2,
  connect = 3, -- cannot connect, or the server refused tide's own bookkeeping
  sql = 3,
  lock = 4, -- another tide holds the migration lock past --lock-wait
  load = 5, -- a revision file failed to load, or the revision graph is invalid
  run = 6, -- a revision failed to run (rolled back, failure recorded in history)
  backup = 7, -- the backup before migrating failed: nothing was changed
  ahead = 8, -- the database has revisions this code does not know
  drift = 9, -- an applied revision's file changed since it ran (upgrade without --allow-drift)
  internal = 70,
  sigint = 130, -- a backup or restore stopped by SIGINT (128 + 2): children stopped, spools removed
  sigterm = 143, -- the same for SIGTERM (128 + 15)
}

--- Raises a tide.Error of the given kind.
---@param kind string
---@param message string
---@param fields? table extra fields (file, line, revision, ...)
function M.raise(kind, message, fields)
  error(core.error(kind, message, fields), 0)
end

--- text as tide prints or stores it: at most core.echo_limit bytes, cut at a UTF-8 character
--- boundary and marked " ... [cut, N bytes]" (N: the bytes cut). A revision's message, a
--- statement, a target, a server message: whatever a user wrote, so that a 50 MB statement is
--- not written whole to stderr or to the history table.
---@param text any
---@return string
function M.cut(text)
  text = tostring(text)
  local keep = core.echo_limit
  if #text <= keep then
    return text
  end
  while keep > 0 and text:byte(keep + 1) & 0xC0 == 0x80 do
    keep = keep - 1 -- the first byte cut must not be in the middle of a character
  end
  return text:sub(1, keep) .. string.format(" ... [cut, %d bytes]", #text - keep)
end

---@return boolean
function M.is_error(value)
  return type(value) == "table" and getmetatable(value) == core.Error
end

--- Levenshtein distance, for "did you mean" suggestions.
local function distance(a, b)
  local prev, cur = {}, {}
  for j = 0, #b do
    prev[j] = j
  end
  for i = 1, #a do
    cur[0] = i
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev, cur = cur, prev
  end
  return prev[#b]
end

--- The closest of candidates to word, or nil when nothing is close enough to help.
---@param word string
---@param candidates string[]
---@return string|nil
function M.suggest(word, candidates)
  if #word > 256 then -- no name is that long, and the distance costs length times length
    return nil
  end
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = distance(word, c)
    if not best_d or d < best_d or (d == best_d and c < best) then
      best, best_d = c, d
    end
  end
  if best and best_d <= math.max(2, #word // 3) then
    return best
  end
end

--- " (did you mean `x`?)" or "".
function M.did_you_mean(word, candidates)
  local s = M.suggest(word, candidates)
  return s and (" (did you mean `" .. s .. "`?)") or ""
end

return M
