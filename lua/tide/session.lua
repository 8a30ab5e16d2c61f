-- tide.session: where tide opens its connections, and the object a run holds them in.
--
-- session.connect(cfg, opts) is the one call of core.connect in the Lua library: every
-- connection tide opens (a run's, a read-only command's, a dev database's, a restore target's,
-- the lock's) gets the same notices-to-the-log and the same error wording,
--   cannot connect to URL (redacted) (from its source): why.
-- session.open(cfg) is a run's session: its main connection and, once s:lock() took it, the
-- migration lock's connection. Closing it (`local s <close> = session.open(cfg)`) releases
-- the lock first, then closes the main connection, however the run ends.
local config = require "tide.config"
local core = require "tide.core"
local errors = require "tide.errors"
local lock = require "tide.lock"
local log = require "tide.log"
local sql = require "tide.sql"

local M = {}

--- tide's own session settings, as SQL: revisions create objects where they expect them
--- (search_path); tide's own SQL is fully qualified.
function M.setup_sql(cfg)
  return "SELECT pg_catalog.set_config('search_path', " .. sql.literal(cfg.search_path) .. ", false)"
end

--- Sets up tide's session on conn. Again after a revision's DISCARD ALL or RESET.
function M.setup(conn, cfg)
  conn:exec(M.setup_sql(cfg))
end

--- Opens a connection to cfg.url (cfg.url_source names where that came from), notices to the
--- log, and tide's session settings unless opts.setup is false: a connection that only reads
--- tide's own, fully qualified tables (a start with nothing to do, status) saves that round trip.
---@param cfg table {url, url_source, application_name, search_path}
---@param opts? table {setup = false, application_name = name, params = conninfo overrides}
---@return userdata conn raises tide.Error kind "connect" (fields: cause, dbname)
function M.connect(cfg, opts)
  opts = opts or {}
  local ok, conn = pcall(core.connect, cfg.url, opts.application_name or cfg.application_name, opts.params)
  if not ok then
    local err = conn
    local where = (cfg.url or "") ~= "" and errors.cut(config.redact(cfg.url)) or "the database named by PG* variables"
    local why = errors.is_error(err) and err.message or tostring(err)
    errors.raise("connect", string.format("cannot connect to %s (from %s): %s", where, cfg.url_source, why),
      { cause = why, dbname = errors.is_error(err) and err.dbname or nil })
  end
  conn:on_notice(log.notice)
  if opts.setup ~= false then
    M.setup(conn, cfg)
  end
  return conn
end

local Session = {}
Session.__index = Session

--- A run's session: its main connection, set up as opts says (see connect), and no lock yet.
---@return table session {conn, lock_conn, cfg}; close it with <close>
function M.open(cfg, opts)
  return setmetatable({ cfg = cfg, conn = M.connect(cfg, opts) }, Session)
end

--- Takes the migration lock on a connection of its own (see tide.lock), waiting at most
--- cfg.lock_wait; the session holds it until it closes.
function Session:lock()
  local lock_conn = M.connect(self.cfg, { setup = false })
  local ok, err = pcall(lock.acquire, self.cfg, self.conn, lock_conn)
  if not ok then
    lock_conn:close()
    error(err, 0)
  end
  self.lock_conn = lock_conn
  return lock_conn
end

--- Releases the lock (closing its connection), keeping the main connection.
function Session:unlock()
  if self.lock_conn then
    self.lock_conn:close()
  end
end

--- Releases the lock, then closes the main connection; closing twice does nothing.
function Session:close()
  self:unlock()
  self.conn:close()
end
Session.__close = Session.close

return M
