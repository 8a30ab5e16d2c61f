-- tide.db: the `db` object a revision's upgrade(db) and downgrade(db) receive.
--
--   db:exec(sql)          one or more statements, no parameters (in a transaction = false
--                         revision they are sent one at a time, each in its own implicit transaction)
--   db:query(sql, ...)    one statement with $1..$n parameters -> rows (tables keyed by column)
--   db:one(sql, ...)      the first row or nil
--   db:savepoint(fn)      runs fn(db) inside a savepoint: an error rolls back to it and re-raises
--   db:step(name, fn)     a checkpoint of a non-transactional revision: fn(db) runs once; a
--                         rerun after a failure or a kill skips the steps that finished
--   db.null               the NULL sentinel (parameters and results)
--
-- A recording db (db.record) keeps every statement instead of sending it, for `--sql` and
-- `tide lint`; statements with parameters are recorded with the values inlined as literals,
-- and a statement that reads data fails, because a script cannot hand rows back to Lua.
--
-- `CREATE INDEX CONCURRENTLY name` first drops an INVALID index of the same name, the leftover
-- of an earlier attempt that failed or was killed (it would otherwise make IF NOT EXISTS a
-- silent no-op, or the retry fail with "already exists"). The DSL's create_index goes through
-- db:exec, so it gets this too.
local core = require "tide.core"
local errors = require "tide.errors"
local log = require "tide.log"
local sqlmod = require "tide.sql"

---@class tide.DB
---@field null lightuserdata the NULL sentinel
---@field revision string|nil the revision being run
local DB = {}
DB.__index = DB
DB.__name = "tide.DB"

local M = {}

---@param conn userdata tide.Conn
---@param rev? table the revision being run (for messages)
---@return tide.DB
function M.new(conn, rev)
  return setmetatable({ conn = conn, null = core.null, revision = rev and rev.revision, savepoints = 0 }, DB)
end

--- A db that records statements instead of running them.
---@param rev? table
---@return tide.DB
function M.recorder(rev)
  return setmetatable({ record = {}, null = core.null, revision = rev and rev.revision, savepoints = 0 }, DB)
end

---@param sql string one or more statements
function DB:exec(sql)
  if type(sql) ~= "string" then
    error("db:exec(sql): sql must be a string, got " .. type(sql), 2)
  end
  if self.record then
    self.record[#self.record + 1] = sql
    return
  end
  if self.one_at_a_time then
    -- Outside a transaction, several statements in one exec would still share an implicit
    -- transaction block (and CREATE INDEX CONCURRENTLY refuses to run in one): send each alone.
    local statements = require("tide.lint").split(sql)
    if #statements > 1 then
      for _, st in ipairs(statements) do
        self:exec(st.text)
      end
      return
    end
  end
  self:drop_invalid_leftover(sql)
  local prelude = self.prelude
  if prelude then
    self.prelude = nil
    local ok, err = pcall(self.conn.exec, self.conn, prelude .. sql)
    if not ok then
      -- report the revision's own statement, not the prelude tide put in front of it
      local shift = utf8.len(prelude) or #prelude
      if type(err) == "table" and err.position and err.position > shift then
        err.position = err.position - shift
        err.query = sql
      end
      error(err, 0)
    end
  else
    self.conn:exec(sql)
  end
  self:after_session_change(sql)
  if not self.current_step then
    self.unstepped = (self.unstepped or 0) + 1
  end
end

-- DEALLOCATE and DISCARD drop the statements tide prepared for its bookkeeping, and DISCARD ALL
-- and RESET reset its search_path: after a statement that may have done either, tide prepares
-- again (under new names) and sets its session up again (on_session_reset, from the runner).
-- A word that only looks like one (in a string, say) costs a few statements, nothing more.
local SESSION_WORDS = { "DEALLOCATE", "DISCARD", "RESET" }

function DB:after_session_change(sql)
  local upper = sql:upper()
  for _, word in ipairs(SESSION_WORDS) do
    if upper:find("%f[%w_]" .. word .. "%f[^%w_]") then
      self.conn:forget_prepared()
      if self.on_session_reset then
        self.on_session_reset()
      end
      return
    end
  end
end

--- Sends the runner's prelude (BEGIN and the revision's SET LOCAL timeouts) if no statement has
--- taken it along yet. exec sends it in front of the revision's first statement, one round trip
--- instead of two; everything else that talks to the server sends it first.
function DB:send_prelude()
  local prelude = self.prelude
  if prelude then
    self.prelude = nil
    self.conn:exec(prelude)
  end
end

-- "CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name ON [ONLY] table": the index's
-- qualified name (it lives in the table's schema), or nil for any other statement.
local function concurrent_index(statement)
  local s = statement:gsub("^%s+", ""):gsub("%-%-[^\n]*\n", " ")
  local rest = s:match("^[Cc][Rr][Ee][Aa][Tt][Ee]%s+(.*)")
  if not rest then
    return nil
  end
  rest = rest:gsub("^[Uu][Nn][Ii][Qq][Uu][Ee]%s+", "")
  rest = rest:match("^[Ii][Nn][Dd][Ee][Xx]%s+[Cc][Oo][Nn][Cc][Uu][Rr][Rr][Ee][Nn][Tt][Ll][Yy]%s+(.*)")
  if not rest then
    return nil
  end
  rest = rest:gsub("^[Ii][Ff]%s+[Nn][Oo][Tt]%s+[Ee][Xx][Ii][Ss][Tt][Ss]%s+", "")
  local name = rest:match('^("[^"]+")%s') or rest:match("^([%w_]+)%s")
  if not name or name:upper() == "ON" then -- an unnamed index cannot be a leftover of the same name
    return nil
  end
  local after = rest:sub(#name + 1):gsub("^%s+[Oo][Nn]%s+", ""):gsub("^[Oo][Nn][Ll][Yy]%s+", "")
  local schema = after:match('^("[^"]+")%.') or after:match("^([%w_]+)%.")
  return schema and (schema .. "." .. name) or name
end

--- Drops an INVALID index left by an interrupted CREATE INDEX CONCURRENTLY of the same name.
function DB:drop_invalid_leftover(statement)
  local name = concurrent_index(statement)
  if not name then
    return
  end
  self:send_prelude()
  local rows = self.conn:query("SELECT c.oid::regclass::text AS name FROM pg_catalog.pg_index i "
    .. "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
    .. "WHERE i.indexrelid = pg_catalog.to_regclass($1) AND NOT i.indisvalid", name)
  if rows[1] then
    log.warn("dropping the INVALID index %s left by an earlier CREATE INDEX CONCURRENTLY before rebuilding it",
      rows[1].name)
    self.conn:exec("DROP INDEX CONCURRENTLY IF EXISTS " .. rows[1].name)
  end
end

-- Does this statement read data (and so cannot be recorded into a script)?
local function reads(statement)
  local word = statement:gsub("^%s+", ""):gsub("^%(+%s*", ""):match("^(%a+)")
  word = word and word:upper()
  return word == "SELECT" or word == "WITH" or word == "VALUES" or word == "SHOW" or word == "TABLE"
    or word == "EXPLAIN" or word == "FETCH"
end

--- statement with $1..$n replaced by the literals of the values (for a recorded script).
function M.inline(statement, ...)
  local args = table.pack(...)
  return (statement:gsub("%$(%d+)", function(n)
    n = tonumber(n)
    if n < 1 or n > args.n then
      return nil
    end
    local v = args[n]
    if v == core.null then
      return "NULL"
    end
    return sqlmod.literal(v)
  end))
end

-- The values a parameter can take; anything else is refused before the statement is sent.
local PARAM_TYPES = { ["nil"] = true, string = true, number = true, boolean = true }

---@param sql string one statement with $1..$n placeholders
---@return table[] rows
---@return integer count
function DB:query(sql, ...)
  if type(sql) ~= "string" then
    error("db:query(sql, ...): sql must be a string, got " .. type(sql), 2)
  end
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if not PARAM_TYPES[type(v)] and v ~= core.null then
      errors.raise("run", string.format("db:query: parameter $%d is a %s: give a string, a number, a boolean, "
        .. "nil or db.null", i, type(v)))
    end
  end
  if self.record then
    if reads(sql) then
      errors.raise("run", "revision " .. tostring(self.revision) .. " reads data (db:query of a statement that "
        .. "returns rows), which an offline SQL script cannot do: run it against a database instead of --sql",
        { query = sql })
    end
    self.record[#self.record + 1] = M.inline(sql, ...)
    return {}, 0
  end
  self:send_prelude()
  local rows, count = self.conn:query(sql, ...)
  self:after_session_change(sql)
  if not self.current_step then
    self.unstepped = (self.unstepped or 0) + 1
  end
  return rows, count
end

---@return table|nil row
function DB:one(sql, ...)
  local rows = self:query(sql, ...)
  return rows[1]
end

---@param fn fun(db: tide.DB)
function DB:savepoint(fn)
  self.savepoints = self.savepoints + 1
  local name = "tide_savepoint_" .. self.savepoints
  self:exec("SAVEPOINT " .. name)
  local ok, err = pcall(fn, self)
  if ok then
    self:exec("RELEASE SAVEPOINT " .. name)
    return
  end
  self:exec("ROLLBACK TO SAVEPOINT " .. name)
  self:exec("RELEASE SAVEPOINT " .. name)
  error(err, 0)
end

--- A checkpoint. In a non-transactional revision run by the runner, self.stepper knows the
--- steps that finished in an earlier, interrupted run: those are skipped, and each step that
--- finishes now is recorded at once. Elsewhere (transactional revisions, --sql) fn just runs.
---@param name string unique within the revision and direction
---@param fn fun(db: tide.DB)
function DB:step(name, fn)
  if type(name) ~= "string" or name == "" or type(fn) ~= "function" then
    error("db:step(name, fn): name must be a non-empty string and fn a function", 2)
  end
  if self.current_step then
    error(string.format("db:step(%q): steps cannot be nested (inside step %q)", name, self.current_step), 2)
  end
  self.step_names = self.step_names or {}
  if self.step_names[name] then
    error(string.format("db:step(%q): a step of that name already ran in this revision", name), 2)
  end
  self.step_names[name] = true
  self.step_count = (self.step_count or 0) + 1
  if self.record then
    self.record[#self.record + 1] = "-- step " .. name:gsub("\n", " ")
  end
  local stepper = self.stepper
  if stepper and stepper.done[name] then
    log.info("  step %q finished in an earlier run: skipped", name)
    return
  end
  self.current_step = name
  local ok, err = pcall(fn, self)
  self.current_step = nil
  if not ok then
    if type(err) == "table" then
      err.step = err.step or name
    end
    self.failed_step = name
    error(err, 0)
  end
  if stepper then
    stepper.finish(name, self.step_count)
  end
end

return M
