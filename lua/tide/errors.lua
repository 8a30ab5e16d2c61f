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

--- "file:line: " of the function `level` frames up, as error(message, level) would prefix it
--- (1: the function calling where; "" for a C function or a host without the debug library).
---@param level integer
---@return string
function M.where(level)
  local info = type(debug) == "table" and debug.getinfo and debug.getinfo(level + 1, "Sl")
  if info and info.currentline > 0 then
    return info.short_src .. ":" .. info.currentline .. ": "
  end
  return ""
end

--- Raises a tide.Error located as error(message, level) locates a string: its message starts
--- with the file and line of the function `level` frames up (1: the function calling raise_at,
--- 2: its caller). The revision API (db, the DSL, tide.sql) raises through this, so that a
--- revision's mistake names the revision file's line.
---@param level integer
---@param kind string
---@param message string
---@param fields? table
function M.raise_at(level, kind, message, fields)
  error(core.error(kind, M.where(level + 1) .. message, fields), 0)
end

-- A readable text for anything raised: a string as it is, a table by its `message` or as JSON.
local function describe(err)
  if type(err) ~= "table" then
    return tostring(err)
  end
  if type(err.message) == "string" then
    return err.message
  end
  local ok, encoded = pcall(require("tide.json").encode, err)
  return "error object " .. (ok and encoded or tostring(err))
end

--- The one normaliser: whatever was raised, as a tide.Error. A tide.Error is returned as it
--- is (its kind says the stage that failed); anything else (error("text") from Lua code, a
--- table of a revision's own) becomes a tide.Error of `kind` (default "internal", a bug: exit
--- 70) whose message describes it, cut at the echo limit.
---@param err any
---@param kind? string
---@return table tide.Error
function M.normalize(err, kind)
  if M.is_error(err) then
    return err
  end
  return core.error(kind or "internal", M.cut(describe(err)))
end

--- A message handler for xpcall: the error normalised (`kind` for what is not a tide.Error),
--- with the traceback of where it was raised (kept when it has one already).
---@param kind? string
---@return fun(err: any): table
function M.handler(kind)
  return function(err)
    err = M.normalize(err, kind)
    err.traceback = err.traceback or debug.traceback("", 2)
    return err
  end
end

local internal = M.handler("internal")

--- xpcall(fn, ...) whose failure is always a tide.Error with its traceback.
---@return boolean ok
---@return any ... fn's results, or the tide.Error
function M.protect(fn, ...)
  return xpcall(fn, internal, ...)
end

--- Edit distance between two short words (names of commands, flags, keys, options, types):
--- insertions, deletions, substitutions and transpositions of neighbours (`gni` -> `gin`)
--- each cost 1.
---@param a string
---@param b string
---@return integer
function M.distance(a, b)
  local d = {}
  for i = 0, #a do
    d[i] = { [0] = i }
  end
  for j = 1, #b do
    d[0][j] = j
  end
  for i = 1, #a do
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      d[i][j] = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        d[i][j] = math.min(d[i][j], d[i - 2][j - 2] + 1)
      end
    end
  end
  return d[#a][#b]
end

--- The one "did you mean": the candidate closest to word, or nil when none is close enough to
--- be a plausible typo: at most one edit per three letters (at least one), or word cut short
--- (`uniq` -> `unique`). Ties go to the first candidate in `candidates` order, so callers list
--- common words first (or sort them, for the same answer every time).
---@param word string
---@param candidates string[]
---@return string|nil
function M.suggest(word, candidates)
  if #word > 256 then -- no name is that long, and the distance costs length times length
    return nil
  end
  local best, best_distance
  for _, candidate in ipairs(candidates) do
    local d = M.distance(word, candidate)
    if #word >= 3 and candidate:sub(1, #word) == word then
      d = math.min(d, 1)
    end
    if best_distance == nil or d < best_distance then
      best, best_distance = candidate, d
    end
  end
  if best_distance and best_distance <= math.max(1, #word // 3) then
    return best
  end
  return nil
end

--- " (did you mean `x`?)" or "".
function M.did_you_mean(word, candidates)
  local s = M.suggest(word, candidates)
  return s and (" (did you mean `" .. s .. "`?)") or ""
end

return M
