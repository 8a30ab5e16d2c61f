-- tide.runner: one migrating run, in the order DESIGN.md gives:
--   plan from a lock-free read -> lock -> re-read and re-plan -> backup -> each revision in its
--   own transaction with its state and history rows -> release -> summary.
-- A run with nothing to do stops after the first read and never waits for the lock.
local core = require "tide.core"
local dbmod = require "tide.db"
local errors = require "tide.errors"
local lock = require "tide.lock"
local log = require "tide.log"
local revisions = require "tide.revisions"
local sql = require "tide.sql"
local track = require "tide.track"

local M = {}

--- Connects the main connection: safe search_path, notices to the log.
function M.connect(cfg)
  local ok, conn = pcall(core.connect, cfg.url, cfg.application_name)
  if not ok then
    local err = conn
    local where = cfg.url ~= "" and require("tide.config").redact(cfg.url) or "the database named by PG* variables"
    errors.raise("connect", string.format("cannot connect to %s (from %s): %s", where, cfg.url_source,
      errors.is_error(err) and err.message or tostring(err)))
  end
  conn:on_notice(log.notice)
  -- Revisions create objects where they expect them; tide's own SQL is fully qualified.
  conn:query("SELECT pg_catalog.set_config('search_path', $1, false)", cfg.search_path)
  return conn
end

--- Applied revisions, read without any lock ({} before the first run).
function M.state(conn, cfg)
  if not track.exists(conn, cfg.schema) then
    return {}, {}
  end
  return track.applied(conn, cfg.schema)
end

--- Applied revisions the files do not know: the database is ahead of this code.
function M.unknown(graph, applied)
  local ids = {}
  for id in pairs(applied) do
    if not graph.by_id[id] then
      ids[#ids + 1] = id
    end
  end
  table.sort(ids)
  return ids
end

local function refuse_unknown(graph, applied)
  local ids = M.unknown(graph, applied)
  if #ids > 0 then
    errors.raise("ahead", string.format("the database has applied revision%s %s, not found in %s: "
      .. "this code is older than the database (deploy newer code, or `tide stamp` after inspection)",
      #ids > 1 and "s" or "", table.concat(ids, ", "), graph.dir))
  end
end

local function run_id()
  return (core.random_bytes(8):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

-- Keeps tide.Error objects and the traceback, so the message can say where in the revision
-- file the failing call was made.
local function on_error(err)
  local trace = debug.traceback("", 2)
  if type(err) ~= "table" then
    err = core.error("run", tostring(err))
  end
  err.traceback = err.traceback or trace
  return err
end

-- "versions/003_x.lua:12" for the deepest frame inside the revision file.
local function where_in(rev, err)
  local line = tostring(err.traceback or ""):match(rev.file:gsub("%p", "%%%0") .. ":(%d+):")
    or tostring(err.message or ""):match(rev.file:gsub("%p", "%%%0") .. ":(%d+):")
  return line and (rev.file .. ":" .. line) or rev.file
end

local function run_failure(rev, direction, err, rolled_back)
  local head = string.format("revision %s (%s) failed in %s", rev.revision, where_in(rev, err), direction)
  local lines = { head .. ": " .. tostring(err) }
  if err.query and #err.query > 0 then
    local stmt = err.query:gsub("%s+", " ")
    lines[#lines + 1] = "  statement: " .. (#stmt > 300 and (stmt:sub(1, 300) .. " ...") or stmt)
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

local function timeouts(cfg, rev)
  return string.format("SET LOCAL lock_timeout = %s; SET LOCAL statement_timeout = %s",
    sql.literal(rev.lock_timeout or cfg.lock_timeout), sql.literal(rev.statement_timeout or cfg.statement_timeout))
end

-- Runs one revision in one direction and records it. In a single-transaction run the caller
-- owns BEGIN/COMMIT; otherwise a transactional revision gets its own.
local function apply(conn, cfg, run, rev, direction, single)
  local fn = direction == "upgrade" and rev.upgrade or rev.downgrade
  local record = direction == "upgrade" and track.record_upgrade or track.record_downgrade
  local db = dbmod.new(conn, rev)
  local t0 = core.now()
  local ok, err = true, nil
  if rev.transaction then
    ok, err = xpcall(conn.exec, on_error, conn, (single and "" or "BEGIN; ") .. timeouts(cfg, rev))
  end
  if ok then
    ok, err = xpcall(fn, on_error, db)
  end
  local ms = (core.now() - t0) * 1000
  if ok then
    ok, err = xpcall(function()
      if rev.transaction then
        record(conn, cfg.schema, run, rev, ms)
        if not single then
          conn:exec("COMMIT")
        end
      else
        conn:exec("BEGIN")
        record(conn, cfg.schema, run, rev, ms)
        conn:exec("COMMIT")
      end
    end, on_error)
  end
  if ok then
    log.info("%s %s %s (%.0f ms)", direction == "upgrade" and "applied" or "reverted", rev.revision, rev.message, ms)
    return ms
  end
  -- Roll back, then write the failure outside the rolled-back transaction.
  local rolled_back = "rolled back; earlier revisions of this run stay applied"
  if single then
    rolled_back = "rolled back, with every revision of this --single-transaction run"
  elseif not rev.transaction then
    rolled_back = "NOT rolled back: the revision runs outside a transaction (transaction = false); "
      .. "statements before the failing one stay applied"
  end
  pcall(conn.exec, conn, "ROLLBACK")
  local recorded, why = pcall(track.record_failure, conn, cfg.schema, run, rev, direction, ms,
    { text = tostring(err), sqlstate = err.sqlstate })
  if not recorded then
    log.warn("could not record the failure in %s.history: %s", cfg.schema, tostring(why))
  end
  run_failure(rev, direction, err, rolled_back)
end

--- Plans and runs an upgrade or downgrade.
---@param ctx table {cfg, graph, hooks}
---@param direction "upgrade"|"downgrade"
---@param target string
---@param opts table {single_transaction, no_backup}
---@return table result {direction, target, revisions = {...}, nothing_to_do, run_id}
function M.migrate(ctx, direction, target, opts)
  local cfg, graph = ctx.cfg, ctx.graph
  local plan_for = direction == "upgrade" and revisions.plan_upgrade or revisions.plan_downgrade
  local result = { direction = direction, target = target, revisions = {}, nothing_to_do = false }
  local conn <close> = M.connect(cfg)

  local applied = M.state(conn, cfg)
  refuse_unknown(graph, applied)
  local plan = plan_for(graph, applied, target)
  if #plan == 0 then
    result.nothing_to_do = true
    return result
  end

  local lock_conn <close> = lock.acquire(cfg, conn)
  if not track.exists(conn, cfg.schema) then
    track.ensure(conn, cfg.schema)
  end
  applied = track.applied(conn, cfg.schema)
  refuse_unknown(graph, applied)
  plan = plan_for(graph, applied, target)
  if #plan == 0 then
    result.nothing_to_do = true
    return result
  end
  if direction == "downgrade" then
    for _, rev in ipairs(plan) do
      if not rev.downgrade then
        errors.raise("usage", string.format("revision %s (%s) has no downgrade function", rev.revision, rev.file))
      end
    end
  end
  local single = opts.single_transaction
  if single then
    for _, rev in ipairs(plan) do
      if not rev.transaction then
        errors.raise("usage", string.format("--single-transaction cannot include revision %s (%s): it has "
          .. "transaction = false", rev.revision, rev.file))
      end
    end
  end

  local run = { id = run_id(), note = opts.note }
  result.run_id = run.id
  if ctx.before_migrate then
    run.backup = ctx.before_migrate({ conn = conn, cfg = cfg, plan = plan, applied = applied, target = target,
      direction = direction, run = run })
  end
  log.info("%s: %d revision%s to %s", direction, #plan, #plan == 1 and "" or "s", target)
  if single then
    conn:exec("BEGIN")
  end
  for _, rev in ipairs(plan) do
    local ms = apply(conn, cfg, run, rev, direction, single)
    result.revisions[#result.revisions + 1] = { revision = rev.revision, message = rev.message, duration_ms = ms }
  end
  if single then
    local ok, err = pcall(conn.exec, conn, "COMMIT")
    if not ok then
      errors.raise("run", "COMMIT of the --single-transaction run failed: " .. tostring(err))
    end
  end
  lock_conn:close()
  return result
end

--- Records revisions as applied (or not) without running them: `tide stamp TARGET`.
function M.stamp(ctx, target)
  local cfg, graph = ctx.cfg, ctx.graph
  local want = revisions.stamp_set(graph, target)
  local conn <close> = M.connect(cfg)
  local lock_conn <close> = lock.acquire(cfg, conn)
  if not track.exists(conn, cfg.schema) then
    track.ensure(conn, cfg.schema)
  end
  local applied = track.applied(conn, cfg.schema)
  local run = { id = run_id() }
  local result = { target = target, stamped = {}, unstamped = {}, run_id = run.id }
  conn:exec("BEGIN")
  local ok, err = pcall(function()
    for _, rev in ipairs(graph.list) do
      if want[rev.revision] and not applied[rev.revision] then
        track.record_upgrade(conn, cfg.schema, run, rev, 0, "stamp")
        result.stamped[#result.stamped + 1] = rev.revision
      end
    end
    for id, row in pairs(applied) do
      if not want[id] then
        track.record_downgrade(conn, cfg.schema, run, { revision = id, checksum = row.checksum }, 0, "unstamp")
        result.unstamped[#result.unstamped + 1] = id
      end
    end
    conn:exec("COMMIT")
  end)
  if not ok then
    pcall(conn.exec, conn, "ROLLBACK")
    error(err, 0)
  end
  table.sort(result.unstamped)
  lock_conn:close()
  return result
end

return M
