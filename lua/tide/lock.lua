-- tide.lock: one tide at a time per database and tracking schema.
--
-- The lock is a session advisory lock held by a dedicated connection that does nothing else
-- and stays idle for the whole run: it is released when tide closes it, and when tide dies
-- the server sees the connection drop and releases it too. The wait is bounded by the
-- server itself (lock_timeout on the lock connection), so tide does not poll; on timeout the
-- message names who holds the lock.
local core = require "tide.core"
local errors = require "tide.errors"

local M = {}

-- The lock's key: a 64-bit hash of "tide:<schema>", computed by the server.
local KEY = "pg_catalog.hashtextextended('tide:' || $1, 0)"

--- Who holds the lock, from any connection to the same database (nil if nobody).
function M.holder(conn, schema)
  local rows = conn:query("SELECT a.pid, a.application_name, a.usename, a.client_addr::text AS client_addr, "
    .. "pg_catalog.to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SSOF') AS since, "
    .. "pg_catalog.round(extract(epoch FROM pg_catalog.now() - a.backend_start))::bigint AS seconds "
    .. "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
    .. "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    .. "AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) "
    .. "AND l.classid = ((" .. KEY .. " >> 32) & 4294967295)::oid "
    .. "AND l.objid = (" .. KEY .. " & 4294967295)::oid LIMIT 1", schema)
  return rows[1]
end

function M.describe(h)
  if not h then
    return "a session that has since ended"
  end
  return string.format("pid %d (application_name %q, user %s%s, connected since %s, %ds ago)", h.pid,
    h.application_name, h.usename, h.client_addr ~= core.null and (", from " .. h.client_addr) or "", h.since,
    h.seconds)
end

--- Opens the lock connection and takes the lock, waiting at most wait seconds.
---@param cfg table run configuration (url, schema, lock_wait, application_name)
---@param conn userdata the main connection, used to name the holder on timeout
---@return userdata lock_conn keep it open for the whole run; closing it releases the lock
function M.acquire(cfg, conn)
  local lock_conn = core.connect(cfg.url, cfg.application_name)
  local wait = tonumber(cfg.lock_wait) or 60
  local ok, err = pcall(function()
    if wait <= 0 then
      local rows = lock_conn:query("SELECT pg_catalog.pg_try_advisory_lock(" .. KEY .. ") AS ok", cfg.schema)
      if not rows[1].ok then
        error({ sqlstate = "55P03" }, 0)
      end
    else
      lock_conn:query("SELECT pg_catalog.set_config('lock_timeout', $1, false)",
        string.format("%dms", math.ceil(wait * 1000)))
      lock_conn:query("SELECT pg_catalog.pg_advisory_lock(" .. KEY .. ")", cfg.schema)
      lock_conn:query("SELECT pg_catalog.set_config('lock_timeout', '0', false)")
    end
  end)
  if ok then
    return lock_conn
  end
  lock_conn:close()
  if type(err) == "table" and err.sqlstate == "55P03" then
    errors.raise("lock", string.format("migration lock busy: held by %s; gave up after waiting %gs (--lock-wait)",
      M.describe(M.holder(conn, cfg.schema)), wait))
  end
  error(err, 0)
end

return M
