-- tide.runner: one migrating run, in this order:
--   1. load and validate the revision files (the caller, tide.revisions; no database yet);
--   2. connect and read the state without any lock (one aggregate row when all is applied);
--      nothing pending: stop, so an idle start never queues for the lock;
--   3. take the migration lock (tide.lock, on a connection of its own), re-read and re-plan;
--   4. the pre-migration hook (the backup), when something is pending;
--   5. each revision in its own transaction, with its state and history rows;
--   6. release the lock; the summary.
-- A run's connections and lock belong to its tide.session, closed however the run ends.
local config = require "tide.config"
local core = require "tide.core"
local dbmod = require "tide.db"
local drift = require "tide.drift"
local errors = require "tide.errors"
local log = require "tide.log"
local revisions = require "tide.revisions"
local session = require "tide.session"
local sql = require "tide.sql"
local track = require "tide.track"

local M = {}

-- What tide puts back after every revision, so that each starts from the same session: a
-- revision's SET (rather than SET LOCAL), SET ROLE, SET SESSION AUTHORIZATION or temporary
-- table would otherwise carry over into the next revision (its tables owned by another role,
-- created in another schema, or a temporary table standing in for a real one). RESET ALL goes
-- back to what the session started with (server, database and role settings, PGOPTIONS), then
-- tide's own settings again. Sent with the revision's COMMIT: no round trip of its own.
local restore_for = setmetatable({}, { __mode = "k" }) -- cfg -> its text, made once per run

function M.restore_sql(cfg)
  local text = restore_for[cfg]
  if not text then
    text = "RESET ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; DISCARD TEMP; " .. session.setup_sql(cfg)
    restore_for[cfg] = text
  end
  return text
end

--- Revisions recorded in the database, read without any lock: applied (id -> row) and partial
--- (id -> row: non-transactional revisions that stopped half way), both {} before the first run.
--- Two small queries; this is all a run with nothing to do costs.
function M.state(conn, cfg, inspected)
  local present, format = table.unpack(inspected or { track.inspect(conn, cfg.schema) })
  if not present then
    return {}, {}, nil
  end
  local applied, partial = track.applied(conn, cfg.schema, format)
  return applied, partial, format
end

--- Applied (or partial) revisions the files do not know: the database is ahead of this code,
--- or an applied revision's file was deleted or renamed.
function M.unknown(graph, applied, partial)
  local ids = {}
  for _, set in ipairs { applied, partial or {} } do
    for id in pairs(set) do
      if not graph.by_id[id] then
        ids[#ids + 1] = id
      end
    end
  end
  table.sort(ids)
  return ids
end

local function refuse_unknown(graph, applied, partial)
  local ids = M.unknown(graph, applied, partial)
  if #ids > 0 then
    errors.raise("ahead", string.format("the database has applied revision%s %s, not found in %s: "
      .. "this code is older than the database, or the file was deleted or renamed since it was applied "
      .. "(deploy newer code, restore the file, or `tide stamp` after inspection)",
      #ids > 1 and "s" or "", table.concat(ids, ", "), graph.dir))
  end
end

-- The one partial revision, if any (a run stops at the first failure, so there is at most one).
local function the_partial(partial)
  local id, row = next(partial or {})
  return id, row
end

--- Plans with a partial revision taken into account: a partial upgrade counts as pending, a
--- partial downgrade as applied, and nothing else runs before it is settled.
local function plan_for(graph, direction, applied, partial, target)
  local pid, prow = the_partial(partial)
  local set = applied
  if pid and prow.partial_direction == "downgrade" then
    set = {}
    for k, v in pairs(applied) do
      set[k] = v
    end
    set[pid] = prow
  end
  local list = (direction == "upgrade" and revisions.plan_upgrade or revisions.plan_downgrade)(graph, set, target)
  if pid then
    local first = list[1]
    if not first or first.revision ~= pid or prow.partial_direction ~= direction then
      local rev = graph.by_id[pid]
      errors.raise("run", string.format("revision %s (%s) is %s; other revisions wait until it is settled: "
        .. "rerun `tide %s` to resume it after fixing the cause, or inspect the database and record the "
        .. "outcome with `tide resolve %s --applied|--reverted --reason \"...\"`", pid, rev and rev.file or "?",
        M.describe_partial(prow), prow.partial_direction, pid))
    end
  end
  return list
end

--- "partially applied: 2/3 steps, failed at step "b" with error ..." for status and messages.
function M.describe_partial(row)
  local what = row.partial_direction == "downgrade" and "partially reverted" or "partially applied"
  local steps = row.steps_total and row.steps_total > 0 and string.format(": %d/%d steps", row.steps_done or 0,
    row.steps_total) or (": " .. require("tide.text").count(row.steps_done or 0, "step") .. " done")
  local failure
  if row.error then
    failure = string.format(", failed%s with error %s", row.failed_step and (" at step " .. string.format("%q",
      row.failed_step)) or "", (row.error:gsub("\n.*", "")))
  else
    failure = ", interrupted (the run was killed or lost its connection)"
  end
  return what .. steps .. failure
end

local function run_id()
  return (core.random_bytes(8):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

-- Where a plan leads, for its messages: the target as typed, unless it is relative (-1, +2),
-- then the revisions the database will be at ("base" for none).
local function destination(graph, applied, list, direction, target)
  if not tostring(target):match("^[-+]%d+$") then
    return target
  end
  local now = {}
  for id in pairs(applied) do
    now[id] = true
  end
  for _, rev in ipairs(list) do
    now[rev.revision] = direction == "upgrade" or nil
  end
  local ids = revisions.current(graph, now)
  return #ids > 0 and table.concat(ids, ", ") or "base"
end

-- Keeps tide.Error objects and the traceback, so the message can say where in the revision
-- file the failing call was made; error("text") or error({any table}) from revision code
-- becomes a tide.Error of kind "run".
local on_error = errors.handler("run")

-- "versions/003_x.lua:12" for the deepest frame inside the revision file.
local function where_in(rev, err)
  local line = tostring(err.traceback or ""):match(rev.file:gsub("%p", "%%%0") .. ":(%d+):")
    or tostring(err.message or ""):match(rev.file:gsub("%p", "%%%0") .. ":(%d+):")
  return line and (rev.file .. ":" .. line) or rev.file
end

local function run_failure(rev, direction, err, rolled_back)
  local where = where_in(rev, err)
  local head = string.format("revision %s (%s) failed in %s", rev.revision, where, direction)
  -- a DSL or Lua error names the same file and line again: once is enough
  local text = tostring(err)
  if text:sub(1, #where + 2) == where .. ": " then
    text = text:sub(#where + 3)
  end
  local lines = { head .. ": " .. text }
  if err.query and #err.query > 0 then
    lines[#lines + 1] = "  statement: " .. errors.cut(err.query):gsub("%s+", " ")
  end
  for _, k in ipairs { "detail", "hint", "context" } do
    if err[k] then
      lines[#lines + 1] = "  " .. k .. ": " .. tostring(err[k]):gsub("\n", "\n    ")
    end
  end
  lines[#lines + 1] = "  " .. rolled_back
  errors.raise("run", table.concat(lines, "\n"), {
    revision = rev.revision,
    file = rev.file,
    sqlstate = err.sqlstate,
    query = err.query,
    detail = err.detail,
    hint = err.hint,
    position = err.position,
    cause = err.message,
  })
end

-- Both are what tide.config made of the user's durations: whole milliseconds ("5000ms").
local function timeout_values(cfg, rev)
  return rev.lock_timeout or cfg.lock_timeout, rev.statement_timeout or cfg.statement_timeout
end

local function timeouts(cfg, rev)
  local lt, st = timeout_values(cfg, rev)
  return string.format("SET LOCAL lock_timeout = %s; SET LOCAL statement_timeout = %s", sql.literal(lt),
    sql.literal(st))
end
M.timeouts = timeouts

--- The session most likely blocking a statement that hit lock_timeout: another backend of this
--- database holding a granted lock on a user relation, preferring one the statement names,
--- then the oldest transaction. nil when none is left (the blocker ended meanwhile).
function M.blocker(conn, pids, statement)
  local ok, rows = pcall(conn.query, conn, "SELECT a.pid, a.application_name, a.state, "
    .. "pg_catalog.to_char(a.query_start, 'YYYY-MM-DD HH24:MI:SSOF') AS query_start, "
    .. "pg_catalog.round(extract(epoch FROM pg_catalog.now() - a.query_start))::bigint AS seconds, "
    .. "pg_catalog.left(pg_catalog.regexp_replace(a.query, '\\s+', ' ', 'g'), 120) AS query, "
    .. "c.relname, l.mode FROM pg_catalog.pg_locks l "
    .. "JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
    .. "JOIN pg_catalog.pg_class c ON c.oid = l.relation "
    .. "WHERE l.granted AND l.locktype = 'relation' AND l.relation >= 16384 "
    .. "AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) "
    .. "AND l.pid <> ALL($1::int[]) ORDER BY a.xact_start NULLS LAST, a.pid", "{" .. table.concat(pids, ",") .. "}")
  if ok and #rows == 0 then
    -- CREATE INDEX CONCURRENTLY and friends wait for older transactions, not table locks
    ok, rows = pcall(conn.query, conn, "SELECT a.pid, a.application_name, a.state, "
      .. "pg_catalog.to_char(a.query_start, 'YYYY-MM-DD HH24:MI:SSOF') AS query_start, "
      .. "pg_catalog.round(extract(epoch FROM pg_catalog.now() - a.query_start))::bigint AS seconds, "
      .. "pg_catalog.left(pg_catalog.regexp_replace(a.query, '\\s+', ' ', 'g'), 120) AS query, "
      .. "pg_catalog.to_char(a.xact_start, 'YYYY-MM-DD HH24:MI:SSOF') AS xact_start "
      .. "FROM pg_catalog.pg_stat_activity a "
      .. "WHERE a.datname = pg_catalog.current_database() AND a.xact_start IS NOT NULL "
      .. "AND a.pid <> ALL($1::int[]) AND a.pid <> pg_catalog.pg_backend_pid() ORDER BY a.xact_start LIMIT 1",
      "{" .. table.concat(pids, ",") .. "}")
  end
  if not ok or #rows == 0 then
    return nil
  end
  local text = (statement or ""):lower()
  for _, r in ipairs(rows) do
    if r.relname and text:find(r.relname:lower(), 1, true) then
      return r
    end
  end
  return rows[1]
end

function M.describe_blocker(b)
  if not b then
    return "no blocking session found any more (it ended meanwhile)"
  end
  local function v(x)
    return (x == nil or x == core.null) and "?" or tostring(x)
  end
  local what = b.relname and string.format("holds %s on %s", b.mode, b.relname)
    or ("in a transaction open since " .. v(b.xact_start))
  return string.format("pid %d (application_name %q, %s, query started %s, %ss ago, %s: %s)", b.pid,
    v(b.application_name), v(b.state), v(b.query_start), v(b.seconds), what, b.query ~= core.null and b.query or "")
end

-- How many db:step calls the revision's function makes, from a recording run (a function that
-- reads data cannot be recorded: then the source's own count of `:step(` is the estimate).
local function count_steps(rev, fn, vars)
  local rec = dbmod.recorder(rev, vars)
  if pcall(fn, rec) then
    return rec.step_count or 0
  end
  local n = 0
  for _ in rev.source:gmatch(":step%s*%(") do
    n = n + 1
  end
  return n
end

local function is_lock_timeout(err)
  return type(err) == "table" and err.sqlstate == "55P03"
end

-- Runs one revision in one direction and records it, once. mode: {single (the caller owns
-- BEGIN/COMMIT), dry (a --dry-run: nothing is recorded)}. Returns ok, ms, err, db.
local function attempt(conn, cfg, run, rev, direction, mode)
  local record = direction == "upgrade" and track.record_upgrade or track.record_downgrade
  local db = dbmod.new(conn, rev, cfg.vars)
  db.on_session_reset = function()
    session.setup(conn, cfg)
  end
  db.on_step = mode.on_step
  local t0 = core.now()
  -- The functions are read from the file now: a file edited since tide loaded it fails here,
  -- as this revision's recorded failure, not as an error that escapes the run.
  local ok, fn = xpcall(function()
    return direction == "upgrade" and rev.upgrade or rev.downgrade
  end, on_error)
  if not ok then
    return false, 0, fn, db
  end
  local err
  if rev.transaction then
    -- BEGIN and the timeouts go out with the revision's first statement (tide.db's prelude)
    db.prelude = (mode.single and "" or "BEGIN; ") .. timeouts(cfg, rev) .. ";\n"
  else
    -- Outside any transaction block, on a connection with none open: CREATE INDEX CONCURRENTLY
    -- waits for older transactions, and must not find one of tide's own.
    ok, err = xpcall(function()
      local state = conn:info().transaction
      if state ~= "idle" then
        error(core.error("run", "a non-transactional revision needs a connection with no open transaction, "
          .. "this one is " .. state), 0)
      end
      local lt, st = timeout_values(cfg, rev)
      conn:query("SELECT pg_catalog.set_config('lock_timeout', $1, false), "
        .. "pg_catalog.set_config('statement_timeout', $2, false)", lt, st)
      track.begin_partial(conn, cfg.schema, rev, direction, count_steps(rev, fn, cfg.vars))
      db.one_at_a_time = true
      db.stepper = {
        done = track.steps(conn, cfg.schema, rev.revision, direction),
        finish = function(name, ordinal)
          track.record_step(conn, cfg.schema, run, rev.revision, direction, name, ordinal)
        end,
      }
    end, on_error)
  end
  if ok then
    ok, err = xpcall(fn, on_error, db)
  end
  if not rev.transaction and not conn:closed() then
    -- its timeouts, and whatever it set, before tide writes its rows (success or failure)
    if conn:transaction_status() ~= "idle" then
      pcall(conn.exec, conn, "ROLLBACK")
    end
    pcall(conn.exec, conn, M.restore_sql(cfg))
  end
  local ms = (core.now() - t0) * 1000
  if ok and not mode.dry then
    ok, err = xpcall(function()
      if rev.transaction then
        db:send_prelude() -- a revision that sent nothing still runs under its timeouts
        db:still_in_transaction() -- nothing reached its connection around tide.db
        record(conn, cfg.schema, run, rev, ms, { after = (not mode.single and "COMMIT;\n" or "")
          .. M.restore_sql(cfg) })
      else
        conn:exec("BEGIN")
        record(conn, cfg.schema, run, rev, ms)
        conn:exec("COMMIT")
      end
    end, on_error)
  elseif ok and mode.dry then
    ok, err = xpcall(conn.exec, on_error, conn, M.restore_sql(cfg))
  end
  return ok, ms, err, db
end

-- Runs one revision, retrying it whole after a lock timeout, and records the outcome.
local function apply(conn, cfg, run, rev, direction, mode)
  local retries = math.max(0, math.floor(tonumber(cfg.lock_retries) or 0))
  local n = 0
  while true do
    n = n + 1
    local ok, ms, err, db = attempt(conn, cfg, run, rev, direction, mode)
    if ok then
      log.info("%s %s %s (%.0f ms%s)", direction == "upgrade" and "applied" or "reverted", rev.revision,
        rev.message, ms,
        mode.dry and ", to be rolled back" or "")
      return ms
    end
    if not conn:closed() and conn:info().transaction ~= "idle" then -- no "no transaction" warning
      pcall(conn.exec, conn, "ROLLBACK")
    end
    -- A non-transactional revision is retried only when every statement that ran was inside a
    -- step that is now recorded, so that nothing runs twice.
    local safe = (rev.transaction or (db.unstepped or 0) == 0) and not err.ended_transaction
    local blocker
    if is_lock_timeout(err) then
      blocker = M.blocker(conn, mode.pids or { conn:info().pid }, err.query)
      err.blocker = blocker
    end
    if is_lock_timeout(err) and n <= retries and safe and not mode.single and not mode.dry then
      local delay = math.min(30, 0.5 * 2 ^ (n - 1)) * (0.5 + math.random())
      log.warn("revision %s: lock timeout after %s (attempt %d of %d), blocked by %s; retrying in %.1fs",
        rev.revision, config.format_duration(config.duration((timeout_values(cfg, rev)))), n, retries + 1,
        M.describe_blocker(blocker), delay)
      pcall(track.record_failure, conn, cfg.schema, run, rev, direction, ms,
        { text = string.format("lock timeout (attempt %d of %d), retrying; blocked by %s", n, retries + 1,
          M.describe_blocker(blocker)), sqlstate = err.sqlstate })
      core.sleep(delay)
    else
      local rolled_back = "rolled back; earlier revisions of this run stay applied"
      if err.ended_transaction then
        rolled_back = "NOT rolled back: the revision's transaction had ended, and what ran before the end may be "
          .. "committed; the revision is not recorded as applied"
      elseif mode.dry then
        rolled_back = "rolled back, with every revision of this --dry-run"
      elseif mode.single then
        rolled_back = "rolled back, with every revision of this --single-transaction run"
      elseif not rev.transaction then
        rolled_back = "NOT rolled back: the revision runs outside a transaction (transaction = false); "
          .. "statements before the failing one stay applied; finished steps are recorded and a rerun "
          .. "resumes after them (`tide status` shows where it stopped)"
      end
      if is_lock_timeout(err) then
        err.detail = (err.detail and (err.detail .. "\n") or "") .. string.format("gave up after %d attempt%s; "
          .. "blocked by %s", n, n == 1 and "" or "s", M.describe_blocker(blocker))
      end
      if not mode.dry then
        -- The revision's connection may be gone (terminated, server restart): record on a new one.
        local rec_conn, fresh = conn, nil
        if conn:closed() then
          local ok_connect, c = pcall(session.connect, cfg)
          if ok_connect then
            rec_conn, fresh = c, c
          end
        end
        if not rev.transaction then
          pcall(track.fail_partial, rec_conn, cfg.schema, rev, db.failed_step, errors.cut(tostring(err)))
        end
        local recorded, why = pcall(track.record_failure, rec_conn, cfg.schema, run, rev, direction, ms,
          { text = errors.cut(tostring(err)), sqlstate = err.sqlstate })
        if not recorded then
          log.warn("could not record the failure in %s.history: %s", cfg.schema, tostring(why))
        end
        if fresh then
          fresh:close()
        end
      end
      run_failure(rev, direction, err, rolled_back)
    end
  end
end

-- Refuses to upgrade over drifted revisions unless allowed; on downgrade says which source runs.
local function drift_gate(cfg, graph, conn, direction, applied, opts, list)
  local drifted = drift.drifted(graph, applied)
  if #drifted == 0 then
    return
  end
  if direction == "upgrade" and not opts.allow_drift then
    errors.raise("drift", drift.report(conn, cfg, drifted)
      .. "\nrefusing to upgrade: record the edit with `tide accept REV` after review, or rerun with --allow-drift")
  end
  local in_plan = {}
  for _, rev in ipairs(list or {}) do
    in_plan[rev.revision] = true
  end
  for _, d in ipairs(drifted) do
    if direction == "upgrade" then
      log.warn("revision %s (%s) changed since it was applied (--allow-drift)", d.rev.revision, d.rev.file)
    elseif in_plan[d.rev.revision] then
      log.warn("revision %s changed since it was applied on %s: the downgrade runs the current file %s "
        .. "(checksum %s), not the source that was applied (checksum %s; `tide check` shows the difference)",
        d.rev.revision, d.row.applied_at, d.rev.file, d.rev.checksum:sub(1, 12), d.row.checksum:sub(1, 12))
    end
  end
end

-- The start-up path (AUTO_IMPROVE_DATABASE): when the target is every revision and the state
-- table holds exactly the files' revisions, all applied, with the files' checksums, there is
-- nothing pending, nothing drifted and nothing unknown. One aggregate row answers that instead
-- of a row per revision; any other answer takes the full read. Returns the answer and what
-- track.inspect said, for that read.
local function all_applied(conn, cfg, graph, target)
  local inspected = { track.inspect(conn, cfg.schema) }
  local present, format = inspected[1], inspected[2]
  -- format 2 (the state column) is all the fingerprint reads: a database still at an older
  -- format that this tide would upgrade under the lock keeps the fast start meanwhile
  if not (present and format >= 2 and format <= track.format and #graph.list > 0
      and (target == "heads" or (target == "head" and #graph.heads == 1))) then
    return false, inspected
  end
  local row = track.fingerprint(conn, cfg.schema, revisions.checksum_algorithm)
  return row.n == #graph.list and row.clean == true and row.hash == revisions.fingerprint(graph), inspected
end

-- "12 s", "3 min 05 s", "2 h 07 min"
local function duration_text(seconds)
  local s = math.floor(seconds)
  if s < 60 then
    return s .. " s"
  elseif s < 3600 then
    return string.format("%d min %02d s", s // 60, s % 60)
  end
  return string.format("%d h %02d min", s // 3600, s % 3600 // 60)
end

-- Progress of a run: a line as each revision and each db:step starts and, on a terminal, a live
-- line with the revision's elapsed time while a statement runs longer than a second (conn
-- calls back between libpq calls while it waits for the server).
local function progress(conn, list, direction, mode)
  local verb = direction == "upgrade" and "applying" or "reverting"
  local now = {}
  mode.on_step = function(name)
    now.step = name
    log.info("  step %q", name)
  end
  if log.live_enabled() then
    conn:on_wait(function()
      log.live("[%d/%d] %s %s %s: %s%s", now.i, #list, verb, now.rev.revision, now.rev.message,
        duration_text(core.now() - now.t0), now.step and string.format(", step %q", now.step) or "")
    end, 1)
  end
  return function(i, rev)
    now.i, now.rev, now.t0, now.step = i, rev, core.now(), nil
    log.info("[%d/%d] %s %s %s", i, #list, verb, rev.revision, rev.message)
  end
end

--- Plans and runs an upgrade or downgrade.
--- opts.before_migrate(info) runs once the lock is held and something is pending, before the
--- first DDL (not in a dry run): info = {conn, cfg, plan, applied, target, direction, run}; what
--- it returns (a backup reference) goes into the run's history rows (tide.backup.hook makes it).
---@param cfg table the run configuration (tide.config)
---@param graph table the revisions (tide.revisions.load)
---@param direction "upgrade"|"downgrade"
---@param target string
---@param opts table {before_migrate, single_transaction, allow_drift, dry_run, note}
---@return table result {direction, target, revisions = {...}, nothing_to_do, run_id, dry_run}
function M.migrate(cfg, graph, direction, target, opts)
  opts = opts or {}
  local result = { direction = direction, target = target, revisions = {}, nothing_to_do = false,
    dry_run = opts.dry_run or nil }
  local s <close> = session.open(cfg, { setup = false })
  local conn = s.conn

  local done, inspected = false, nil
  if direction == "upgrade" then
    done, inspected = all_applied(conn, cfg, graph, target)
  end
  if done then
    result.nothing_to_do = true
    return result
  end
  local applied, partial = M.state(conn, cfg, inspected)
  refuse_unknown(graph, applied, partial)
  local list = plan_for(graph, direction, applied, partial, target)
  drift_gate(cfg, graph, conn, direction, applied, opts, list)
  if #list == 0 then
    result.nothing_to_do = true
    return result
  end

  local lock_conn = s:lock()
  session.setup(conn, cfg) -- revisions will run on this connection
  applied, partial = M.state(conn, cfg)
  refuse_unknown(graph, applied, partial)
  list = plan_for(graph, direction, applied, partial, target)
  if #list == 0 then
    result.nothing_to_do = true
    return result
  end
  if direction == "downgrade" then
    for _, rev in ipairs(list) do
      if not rev.has_downgrade then
        errors.raise("usage", string.format("revision %s (%s) has no downgrade function", rev.revision, rev.file))
      end
    end
  end
  local single = opts.single_transaction
  if single then
    for _, rev in ipairs(list) do
      if not rev.transaction then
        errors.raise("usage", string.format("--single-transaction cannot include revision %s (%s): it has "
          .. "transaction = false", rev.revision, rev.file))
      end
    end
  end

  local run = { id = run_id(), note = opts.note }
  result.run_id = run.id
  if opts.before_migrate and not opts.dry_run then
    run.backup = opts.before_migrate({ conn = conn, cfg = cfg, plan = list, applied = applied, target = target,
      direction = direction, run = run })
  end
  -- The tracking tables come after the backup: a run whose backup fails has changed nothing,
  -- not even created tide's own schema. They get a short transaction of their own, so even a
  -- failure of the very first revision finds a history table to be written to.
  if not opts.dry_run then
    track.ensure(conn, cfg.schema)
  end
  result.to = destination(graph, applied, list, direction, target)
  log.info("%s%s: %d revision%s to %s", direction, opts.dry_run and " (dry run, rolled back at the end)" or "",
    #list, #list == 1 and "" or "s", result.to)
  local mode = { single = single or opts.dry_run, dry = opts.dry_run, pids = { conn:info().pid,
    lock_conn:info().pid } }
  if opts.dry_run then
    conn:exec("BEGIN")
    if not track.exists(conn, cfg.schema) then
      conn:exec("SET LOCAL client_min_messages = warning;\n" .. track.ddl(cfg.schema))
    end
  elseif single then
    conn:exec("BEGIN")
  end
  local starting = progress(conn, list, direction, mode)
  for i, rev in ipairs(list) do
    starting(i, rev)
    if opts.dry_run and not rev.transaction then
      log.info("skipped %s %s: transaction = false cannot run inside the dry run's transaction", rev.revision,
        rev.message)
      result.revisions[#result.revisions + 1] = { revision = rev.revision, message = rev.message, skipped = true,
        reason = "transaction = false" }
    else
      local ms = apply(conn, cfg, run, rev, direction, mode)
      revisions.release(rev) -- a long run holds one revision's functions and source at a time
      result.revisions[#result.revisions + 1] = { revision = rev.revision, message = rev.message, duration_ms = ms }
    end
  end
  -- Where the run leaves the database: the revisions reached, not the target as typed (-1).
  local now = {}
  for id in pairs(applied) do
    now[id] = true
  end
  for _, r in ipairs(result.revisions) do
    if not r.skipped then
      now[r.revision] = direction == "upgrade" or nil
    end
  end
  result.reached = revisions.current(graph, now)
  result.at_head = #result.reached == #graph.heads
  for _, id in ipairs(result.reached) do
    result.at_head = result.at_head and #graph.children[id] == 0
  end
  if opts.dry_run then
    conn:exec("ROLLBACK")
  elseif single then
    local ok, err = pcall(conn.exec, conn, "COMMIT")
    if not ok then
      errors.raise("run", "COMMIT of the --single-transaction run failed: " .. tostring(err))
    end
  end
  s:unlock()
  return result
end

--- Records revisions as applied (or not) without running them: `tide stamp TARGET`.
function M.stamp(cfg, graph, target)
  local want = revisions.stamp_set(graph, target)
  local s <close> = session.open(cfg)
  local conn = s.conn
  s:lock()
  track.ensure(conn, cfg.schema)
  local applied = track.applied(conn, cfg.schema)
  local run = { id = run_id() }
  local result = { target = target, stamped = {}, unstamped = {}, run_id = run.id }
  dbmod.transaction(conn, function()
    for _, rev in ipairs(graph.list) do
      if want[rev.revision] and not applied[rev.revision] then
        track.record_upgrade(conn, cfg.schema, run, rev, 0, { direction = "stamp" })
        result.stamped[#result.stamped + 1] = rev.revision
      end
    end
    for id, row in pairs(applied) do
      if not want[id] then
        track.record_downgrade(conn, cfg.schema, run, { revision = id, checksum = row.checksum }, 0,
          { direction = "unstamp", outcome = "applied" })
        result.unstamped[#result.unstamped + 1] = id
      end
    end
  end)
  table.sort(result.unstamped)
  s:unlock()
  return result
end

M.run_id = run_id
M.on_error = on_error
M.where_in = where_in

return M
