-- tide.script: `upgrade --sql` / `downgrade --sql`, the SQL script a run would send (its
-- revisions' statements, recorded without a database, and tide's bookkeeping, marked), planned
-- from the database's state and changing nothing.
local core = require "tide.core"
local dbmod = require "tide.db"
local errors = require "tide.errors"
local log = require "tide.log"
local recording = require "tide.recording"
local revisions = require "tide.revisions"
local runner = require "tide.runner"
local session = require "tide.session"
local sqlmod = require "tide.sql"
local track = require "tide.track"

local M = {}

-- A stand-in connection that writes tide's bookkeeping statements into the script.
local function script_conn(push)
  return {
    query = function(_, statement, ...)
      push(dbmod.inline(statement, ...))
      return {}
    end,
    -- a prepared statement is, in a script, the statement with its values inlined
    prepared = function(_, _, statement, ...)
      push(dbmod.inline(statement, ...))
      return {}
    end,
    exec = function(_, statement)
      push(statement)
    end,
  }
end

local function terminated(statement)
  local s = statement:gsub("%s+$", "")
  if s:sub(-1) == ";" then
    return s
  end
  local last = s:match("([^\n]*)$")
  return s .. (last:find("--", 1, true) and "\n;" or ";")
end

-- Comment lines: each line of text behind `prefix`.
local function commented(prefix, text)
  return prefix .. text:gsub("\n", "\n" .. prefix)
end

-- Where a revision's statements would go when they cannot be known: comments saying why, what
-- the recording saw, and a statement that stops psql there (ON_ERROR_STOP), so that a script
-- run unedited never skips the revision and carries on with the next ones.
local function unknown_marker(push, rev, direction, b)
  push(string.format("-- tide: UNKNOWN STATEMENTS of revision %s (%s): its SQL depends on what the database returns",
    rev.revision, direction))
  push(string.format("-- (db:query at %s), so no script can hold it. Replace the DO statement below with the",
    b.queries[1].where))
  push(string.format("-- statements to run, or apply this revision with `tide %s` instead.", direction))
  push("-- What the recording saw, every db:query answering no rows and a count of 0"
    .. (b.data and (" (it stopped at " .. b.data.where .. ")") or "") .. ":")
  for _, st in ipairs(b.statements) do
    push(commented("--   ", st))
  end
  push(string.format("DO $tide$ BEGIN RAISE EXCEPTION %s; END $tide$;", sqlmod.literal(string.format(
    "tide: the statements of revision %s (%s) are not in this script: replace this marker or run tide %s",
    rev.revision, direction, direction))))
end

--- `upgrade --sql` / `downgrade --sql`: the script the run would send, planned from the
--- database's current state (read without the lock), changing nothing. A revision that cannot
--- run, or whose SQL depends on what the database returns (it calls db:query or db:one), is
--- refused, naming each; with opts.mark_unknown the latter are written as a marker that stops
--- the script instead. opts.embed_sources stores each revision's source in the bookkeeping, as
--- a run does; without it the state rows keep the checksum only.
function M.script(cfg, graph, direction, target, opts)
  opts = opts or {}
  local conn <close> = session.connect(cfg)
  local present, format = track.inspect(conn, cfg.schema)
  local applied, partial = runner.state(conn, cfg)
  if next(partial) then
    errors.raise("run", "a partially applied revision must be settled before a script can be planned "
      .. "(`tide status`)")
  end
  local plan = (direction == "upgrade" and revisions.plan_upgrade or revisions.plan_downgrade)(graph, applied, target)
  -- Every revision is built before a line is written: a script is whole or not at all.
  local built, refused, unknown = {}, {}, {}
  for i, rev in ipairs(plan) do
    local b = recording.build(rev, direction, cfg.vars)
    if b.failure then
      refused[#refused + 1] = string.format("revision %s (%s) cannot run: %s", rev.revision, b.failure.where,
        b.failure.message)
    elseif #b.queries > 0 then
      b.unknown = true
      unknown[#unknown + 1] = rev.revision
      local line = string.format("revision %s (%s): its SQL depends on what db:query returns there, so no script "
        .. "can hold it", rev.revision, b.queries[1].where)
      if opts.mark_unknown then
        log.warn("%s: its place in the script is marked, and the script stops there", line)
      else
        refused[#refused + 1] = line
      end
    end
    built[i] = b
  end
  if #refused > 0 then
    errors.raise("run", string.format("cannot write the %s script:\n  %s%s", direction, table.concat(refused, "\n  "),
      (#unknown > 0 and not opts.mark_unknown) and "\n  --mark-unknown writes the script with such revisions marked "
      .. "(it then stops there when run)" or ""))
  end
  local lines = {}
  local function push(s)
    lines[#lines + 1] = s
  end
  local BOOK = "-- tide bookkeeping"
  local run = { id = runner.run_id(), note = "--sql script" }
  push(string.format("-- tide %s to %s: SQL script generated by tide %s at %s", direction, target, core.version,
    os.date("!%Y-%m-%dT%H:%M:%SZ")))
  push("-- Statements under `" .. BOOK .. "` are tide's own tracking; the others are the revisions'.")
  push("-- Planned from the database's state when the script was made: run it with psql on that database.")
  if #unknown > 0 then
    push("-- INCOMPLETE: the statements of revision" .. (#unknown == 1 and " " or "s ") .. table.concat(unknown, ", ")
      .. " cannot be known without the database; see `-- tide: UNKNOWN STATEMENTS`.")
  end
  push("\\set ON_ERROR_STOP on")
  push(BOOK .. ": revisions create objects where tide's own connection would (search_path)")
  push(string.format("SELECT pg_catalog.set_config('search_path', %s, false);", sqlmod.literal(cfg.search_path)))
  push(BOOK .. ": the literals below are written for UTF-8, as tide's own connection speaks it")
  push("SET client_encoding = 'UTF8';")
  push("")
  if not present or format < track.format then
    push(BOOK .. ": the tracking tables")
    push("BEGIN;")
    push("SET LOCAL client_min_messages = warning;")
    push((track.ddl(cfg.schema):gsub("%s+$", "")))
    push("COMMIT;")
    push("")
  end
  local bookkeeping = script_conn(function(s)
    push(terminated(s))
  end)
  local record_fn = direction == "upgrade" and track.record_upgrade or track.record_downgrade
  for i, rev in ipairs(plan) do
    local b = built[i]
    push(string.format("-- revision %s: %s (%s, %s)", rev.revision, rev.message, rev.file, direction))
    if rev.transaction then
      push("BEGIN;")
      push(BOOK)
      push(runner.timeouts(cfg, rev) .. ";")
    else
      push("-- transaction = false: every statement runs on its own")
      push(BOOK)
      local lt, st = (rev.lock_timeout or cfg.lock_timeout), (rev.statement_timeout or cfg.statement_timeout)
      push(string.format("SET lock_timeout = %s; SET statement_timeout = %s;", sqlmod.literal(lt), sqlmod.literal(st)))
    end
    if b.unknown then
      unknown_marker(push, rev, direction, b)
    else
      for _, s in ipairs(b.statements) do
        if s:match("^%-%- step ") then
          push(s)
        else
          push(terminated(s))
        end
      end
    end
    push(BOOK)
    if not rev.transaction then
      push("RESET lock_timeout; RESET statement_timeout;")
      push("BEGIN;")
    end
    -- The applied source goes into the state row only when asked: a script is for reading.
    local recorded = rev
    if direction == "upgrade" and not opts.embed_sources then
      recorded = { revision = rev.revision, message = rev.message, checksum = rev.checksum, source = "" }
    end
    record_fn(bookkeeping, cfg.schema, run, recorded, 0)
    push("COMMIT;")
    push("")
    revisions.release(rev)
  end
  if #plan == 0 then
    push(string.format("-- nothing to do: no revision to %s for target %s", direction, target))
  end
  return { direction = direction, target = target, script = table.concat(lines, "\n") .. "\n",
    revisions = #plan, unknown = unknown, sql = true }
end

return M
