-- tide.lock: one tide at a time per database and tracking schema.
--
-- The lock is a session advisory lock held by a dedicated connection that does nothing else
-- and stays idle for the whole run: it is released when tide closes it, and when tide dies
-- the server sees the connection drop and releases it too.
--
-- A tide that waits for the lock polls pg_try_advisory_lock, each try a short statement of its
-- own, and sleeps between tries. It must not block in pg_advisory_lock: a blocked statement
-- holds its snapshot for the whole wait, and the holder's CREATE INDEX CONCURRENTLY waits for
-- every snapshot older than its own, so the holder would wait for the waiters while they wait
-- for it (every pod of a rollout running `tide auto` over a CIC revision). Between tries a
-- waiting tide has no transaction open on either of its connections. On timeout the message
-- names who holds the lock.
--
-- With the lock, tide takes a second one on its main connection, the one that runs the
-- revisions. When tide is killed, its lock connection ends at once, but the main connection's
-- session goes on with the statement it was running until that ends, and that statement may
-- be a revision's COMMIT or a CREATE INDEX CONCURRENTLY: the next tide waits for the second
-- lock, so it never reads the state, or changes the schema, while a dead tide's last statement
-- still runs. (A revision's DISCARD ALL or pg_advisory_unlock_all releases it for the rest of
-- that run.)
local core = require "tide.core"
local errors = require "tide.errors"

local M = {}

-- The keys: 64-bit hashes of "tide:<schema>" (the lock) and "tide-work:<schema>" (the main
-- connection's), computed by the server.
local KEY = "pg_catalog.hashtextextended('tide:' || $1, 0)"
local WORK_KEY = "pg_catalog.hashtextextended('tide-work:' || $1, 0)"

--- Who holds the lock (or with work, the main connection's), from any connection to the same
--- database (nil if nobody).
function M.holder(conn, schema, work)
  local key = work and WORK_KEY or KEY
  local rows = conn:query("SELECT a.pid, a.application_name, a.usename, a.client_addr::text AS client_addr, "
    .. "pg_catalog.to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SSOF') AS since, "
    .. "pg_catalog.round(extract(epoch FROM pg_catalog.now() - a.backend_start))::bigint AS seconds "
    .. "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
    .. "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    .. "AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) "
    .. "AND l.classid = ((" .. key .. " >> 32) & 4294967295)::oid "
    .. "AND l.objid = (" .. key .. " & 4294967295)::oid LIMIT 1", schema)
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

-- The first pause between tries, the longest, and the growth in between; each pause is
-- jittered (times 0.5 to 1.5) so that many tides started together do not poll in step.
local FIRST_PAUSE, LONGEST_PAUSE, GROWTH = 0.05, 1, 1.5

--- Takes the lock on lock_conn (opened by tide.session for this alone), waiting at most
--- cfg.lock_wait seconds.
---@param cfg table run configuration (schema, lock_wait in seconds)
---@param conn userdata the main connection, used to name the holder on timeout
---@param lock_conn userdata keep it open for the whole run; closing it releases the lock
function M.acquire(cfg, conn, lock_conn)
  if conn:info().transaction ~= "idle" then
    -- its snapshot would be one a concurrent index build of the lock's holder waits for
    errors.raise("internal", "tide would wait for the migration lock with a transaction open")
  end
  local wait = tonumber(cfg.lock_wait) or 60
  local deadline = core.now() + wait
  -- Tries key on c until it is taken (true) or the deadline passes (false).
  local function take(c, key)
    local pause = FIRST_PAUSE
    while true do
      if c:query("SELECT pg_catalog.pg_try_advisory_lock(" .. key .. ") AS ok", cfg.schema)[1].ok then
        return true
      end
      local left = deadline - core.now()
      if left <= 0 then
        return false
      end
      core.sleep(math.min(left, pause * (0.5 + math.random())))
      pause = math.min(LONGEST_PAUSE, pause * GROWTH)
    end
  end
  local ok, got, busy = pcall(function()
    if not take(lock_conn, KEY) then
      return false, "lock"
    end
    if not take(conn, WORK_KEY) then
      return false, "work"
    end
    return true
  end)
  if ok and got then
    return lock_conn
  end
  if ok and busy == "lock" then
    errors.raise("lock", string.format("migration lock busy: held by %s; gave up after waiting %gs (--lock-wait)",
      M.describe(M.holder(conn, cfg.schema)), wait))
  elseif ok then
    errors.raise("lock", string.format("migration lock busy: the session of a tide that ended, %s, is still running "
      .. "its last statement; gave up after waiting %gs (--lock-wait)",
      M.describe(M.holder(conn, cfg.schema, true)), wait))
  end
  error(got, 0)
end

return M
