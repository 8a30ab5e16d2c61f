-- tide.db: the `db` object a revision's upgrade(db) and downgrade(db) receive.
--
--   db:exec(sql)          one or more statements, no parameters
--   db:query(sql, ...)    one statement with $1..$n parameters -> rows (tables keyed by column)
--   db:one(sql, ...)      the first row or nil
--   db:savepoint(fn)      runs fn(db) inside a savepoint: an error rolls back to it and re-raises
--   db.null               the NULL sentinel (parameters and results)
--
-- A recording db (db.record) keeps every statement instead of sending it, for `--sql`.
local core = require "tide.core"
local errors = require "tide.errors"

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
  self.conn:exec(sql)
end

---@param sql string one statement with $1..$n placeholders
---@return table[] rows
---@return integer count
function DB:query(sql, ...)
  if type(sql) ~= "string" then
    error("db:query(sql, ...): sql must be a string, got " .. type(sql), 2)
  end
  if self.record then
    errors.raise("run", "revision " .. tostring(self.revision) .. " reads data with db:query, "
      .. "which --sql cannot record: run it against a database instead", { query = sql })
  end
  return self.conn:query(sql, ...)
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

return M
