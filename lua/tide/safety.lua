-- tide.safety: the production-safety commands and checks around the runner.
--
--   tide accept REV                          record an edited, applied revision's new checksum
--   tide resolve REV --applied|--reverted    settle a partially applied non-transactional revision
--   tide lint [TARGET]                       lint the SQL pending revisions would send
--   tide test --url SCRATCH_URL              upgrade/downgrade round trip of every revision
--   tide auto                                start-up upgrade when AUTO_IMPROVE_DATABASE is true/1
--
-- and, for the CLI's own verbs: `upgrade/downgrade --sql` (an offline SQL script), drift and
-- lint findings for `tide check`, partial-revision lines for `tide status`.
-- cli.lua merges M.commands into its command table.
local core = require "tide.core"
local dbmod = require "tide.db"
local errors = require "tide.errors"
local lint = require "tide.lint"
local lock = require "tide.lock"
local log = require "tide.log"
local revisions = require "tide.revisions"
local rlscheck = require "tide.rlscheck"
local runner = require "tide.runner"
local track = require "tide.track"

local M = {}

local function out(fmt, ...)
  io.stdout:write(select("#", ...) > 0 and string.format(fmt, ...) or fmt, "\n")
end

local function lines_of(text)
  local list = {}
  if (text or "") == "" then
    return list
  end
  for line in ((text or ""):gsub("\r\n?", "\n"):gsub("\n$", "") .. "\n"):gmatch("([^\n]*)\n") do
    list[#list + 1] = line
  end
  return list
end

--- A unified diff of a against b, as `diff -u` writes it: `---`/`+++` labels, then hunks with
--- `@@ -start,count +start,count @@` headers, `context` unchanged lines around each change
--- (default 3), and in each change the removed lines ("-") before the added ones ("+"), so
--- `patch` applies it. Empty string when equal.
---@param a string
---@param b string
---@param label_a string
---@param label_b string
---@param context integer|nil
---@return string
function M.diff(a, b, label_a, label_b, context)
  context = context or 3
  local x, y = lines_of(a), lines_of(b)
  local n, m = #x, #y
  -- LCS table from the end; revision files are small, so O(n*m) is fine.
  local L = {}
  for i = n + 1, 1, -1 do
    L[i] = {}
    for j = m + 1, 1, -1 do
      if i > n or j > m then
        L[i][j] = 0
      elseif x[i] == y[j] then
        L[i][j] = L[i + 1][j + 1] + 1
      else
        L[i][j] = math.max(L[i + 1][j], L[i][j + 1])
      end
    end
  end
  -- the edit script, each run of changes written as its removals, then its additions
  local ops, removed, added = {}, {}, {}
  local function flush()
    table.move(removed, 1, #removed, #ops + 1, ops)
    table.move(added, 1, #added, #ops + 1, ops)
    removed, added = {}, {}
  end
  local i, j = 1, 1
  while i <= n or j <= m do
    if i <= n and j <= m and x[i] == y[j] then
      flush()
      ops[#ops + 1] = { " ", x[i] }
      i, j = i + 1, j + 1
    elseif j <= m and (i > n or L[i][j + 1] >= L[i + 1][j]) then
      added[#added + 1] = { "+", y[j] }
      j = j + 1
    else
      removed[#removed + 1] = { "-", x[i] }
      i = i + 1
    end
  end
  flush()
  -- lines of a and of b before each op, for the hunk headers
  local a_before, b_before, ai, bj = {}, {}, 0, 0
  for k, op in ipairs(ops) do
    a_before[k], b_before[k] = ai, bj
    ai = ai + (op[1] ~= "+" and 1 or 0)
    bj = bj + (op[1] ~= "-" and 1 or 0)
  end
  local hunks = {}
  for k, op in ipairs(ops) do
    if op[1] ~= " " then
      local first, last = math.max(1, k - context), math.min(#ops, k + context)
      local h = hunks[#hunks]
      if h and first <= h.last + 1 then
        h.last = math.max(h.last, last)
      else
        hunks[#hunks + 1] = { first = first, last = last }
      end
    end
  end
  if #hunks == 0 then
    return ""
  end
  local function range(before, count)
    local start = count == 0 and before or before + 1
    return count == 1 and tostring(start) or (start .. "," .. count)
  end
  local outl = { "--- " .. label_a, "+++ " .. label_b }
  for _, h in ipairs(hunks) do
    local a_count, b_count = 0, 0
    for k = h.first, h.last do
      a_count = a_count + (ops[k][1] ~= "+" and 1 or 0)
      b_count = b_count + (ops[k][1] ~= "-" and 1 or 0)
    end
    outl[#outl + 1] = string.format("@@ -%s +%s @@", range(a_before[h.first], a_count),
      range(b_before[h.first], b_count))
    for k = h.first, h.last do
      outl[#outl + 1] = ops[k][1] .. ops[k][2]
    end
  end
  return table.concat(outl, "\n")
end

--- Text naming each drifted revision with a diff of the applied source against the file.
function M.drift_report(conn, cfg, drifted)
  local ids = {}
  for i, d in ipairs(drifted) do
    ids[i] = d.rev.revision
  end
  local stored = track.sources(conn, cfg.schema, ids)
  local parts = {}
  for _, d in ipairs(drifted) do
    local row = stored[d.rev.revision] or {}
    local difference
    if row.source == "" then -- applied by an `upgrade --sql` script made without --embed-sources
      difference = string.format("  its source was not stored when it was applied (an `upgrade --sql` script made "
        .. "without --embed-sources), so there is no diff: applied checksum %s, file checksum %s",
        d.row.checksum:sub(1, 12), d.rev.checksum:sub(1, 12))
    else
      difference = M.diff(row.source or "", d.rev.source, "applied source (" .. d.row.checksum:sub(1, 12) .. ")",
        d.rev.file .. " (" .. d.rev.checksum:sub(1, 12) .. ")")
    end
    parts[#parts + 1] = string.format("revision %s (%s) changed since it was applied on %s:\n%s", d.rev.revision,
      d.rev.file, d.row.applied_at or "?", difference)
  end
  return table.concat(parts, "\n")
end

-- Offline SQL scripts (--sql) ----------------------------------------------------------------

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

--- Builds rev's SQL for one direction without a database (a recording db), for --sql, lint,
--- check and test. The result says how that went:
---   statements  what the revision sends, in order (up to where the recording stopped)
---   queries     its db:query/db:one calls {where, statement}: each hands data back, so the
---               revision's SQL may depend on the database, and no script can hold it
---   data        {where, message}: the recording stopped because the revision read data (or
---               failed after a db:query answered it with no rows); not the revision's fault
---   failure     {where, message}: the revision cannot run (a DSL error, a Lua error, anything
---               it raised before reading data); `where` is "file:line"
--- vars: tide.lua's `vars`, which revisions read as db.vars while they are built.
function M.build(rev, direction, vars)
  local fn = direction == "upgrade" and rev.upgrade or rev.downgrade
  if not fn then
    errors.raise("usage", string.format("revision %s (%s) has no %s function", rev.revision, rev.file, direction))
  end
  local db = dbmod.recorder(rev, vars)
  local ok, err = xpcall(fn, runner.on_error, db)
  local built = { statements = db.record, queries = db.queries }
  if ok then
    return built
  end
  -- "versions/003_x.lua:7: unknown option ..." names the place once, in `where`
  local message = tostring(err.message):gsub("^" .. rev.file:gsub("%p", "%%%0") .. ":%d+: ", "")
  if err.data_dependent then
    built.data = { where = err.where, message = message }
  elseif #db.queries > 0 then
    local q = db.queries[#db.queries]
    built.data = { where = q.where, message = string.format("reads data there (db:query), then raised at %s, "
      .. "perhaps because the recording answered no rows: %s", runner.where_in(rev, err), message) }
  else
    built.failure = { where = runner.where_in(rev, err), message = message }
  end
  return built
end

-- Comment lines: each line of text behind `prefix`.
local function commented(prefix, text)
  return prefix .. text:gsub("\n", "\n" .. prefix)
end

-- Where a revision's statements would go when they cannot be known: comments saying why, what
-- the recording saw, and a statement that stops psql there (ON_ERROR_STOP), so that a script
-- run unedited never skips the revision and carries on with the next ones.
local function unknown_marker(push, rev, direction, b)
  local sqlmod = require "tide.sql"
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
function M.sql_script(ctx, direction, target, opts)
  opts = opts or {}
  local cfg, graph = ctx.cfg, ctx.graph
  local sqlmod = require "tide.sql"
  local conn <close> = runner.connect(cfg)
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
    local b = M.build(rev, direction, cfg.vars)
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

--- Extra output for the CLI's print of upgrade/downgrade results (--sql, --dry-run); true when
--- it printed the whole result.
function M.print_migrate(result)
  if result.sql then
    io.stdout:write(result.script)
    return true
  end
  if result.dry_run and not result.nothing_to_do then
    local ran, skipped, total = {}, {}, 0
    for _, r in ipairs(result.revisions) do
      if r.skipped then
        skipped[#skipped + 1] = r.revision
      else
        ran[#ran + 1] = r.revision
        total = total + r.duration_ms
      end
    end
    out("dry run: %s %d revision%s to %s in %.0f ms, then rolled back: %s", result.direction == "upgrade" and "applied"
      or "reverted", #ran, #ran == 1 and "" or "s", result.target, total, table.concat(ran, ", "))
    for _, r in ipairs(result.revisions) do
      if not r.skipped then
        out("  %-12s %8.0f ms  %s", r.revision, r.duration_ms, r.message)
      else
        out("  %-12s  skipped  %s (%s)", r.revision, r.message, r.reason)
      end
    end
    if #skipped > 0 then
      out("skipped (transaction = false cannot run inside the dry run's transaction): %s", table.concat(skipped, ", "))
    end
    return true
  end
  return false
end

-- Lint ----------------------------------------------------------------------------------------

--- What lint needs besides the revisions: tide.lua's vars (revisions read them while they are
--- recorded) and lint options, and, given a connection, the tables that already have row-level
--- security (a pending revision's view or GRANT over one of them is judged by it).
function M.lint_options(cfg, conn)
  local options = { vars = cfg.vars, require_rls = (cfg.lint or {}).require_rls }
  if conn then
    options.rls_tables = {}
    for _, row in ipairs(conn:query("SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relrowsecurity")) do
      options.rls_tables[#options.rls_tables + 1] = row.relname
    end
  end
  return options
end

--- Lints the upgrades of revisions (a list in order). A revision that cannot run (it raises
--- while its SQL is built) is a problem of rule `cannot_run`, named with file and line. One that
--- reads data cannot be linted past that point: it is listed in `unrecorded`, and what it sent
--- before is linted.
function M.lint(list, options)
  options = options or {}
  local items, unrecorded, failed = {}, {}, {}
  for _, rev in ipairs(list) do
    local built = M.build(rev, "upgrade", options.vars)
    if built.failure then
      failed[#failed + 1] = { revision = rev.revision, file = rev.file, where = built.failure.where,
        rule = "cannot_run", message = built.failure.message }
    else
      items[#items + 1] = { rev = rev, statements = built.statements, direction = "upgrade" }
      if built.data then
        unrecorded[#unrecorded + 1] = { revision = rev.revision, file = rev.file, where = built.data.where,
          reason = built.data.message }
      end
    end
    revisions.release(rev) -- a lint of thousands of revisions holds one revision's functions at a time
  end
  local findings = lint.check(items, options)
  for _, f in ipairs(failed) do
    findings[#findings + 1] = f
  end
  local problems = {}
  for _, f in ipairs(findings) do
    if not f.allowed then
      problems[#problems + 1] = f
    end
  end
  return { findings = findings, problems = problems, unrecorded = unrecorded,
    checked = #items - #unrecorded, failed = #failed }
end

local function describe_finding(f)
  if f.rule == "cannot_run" then
    return string.format("cannot run: revision %s (%s): %s", f.revision, f.where, f.message)
  end
  return string.format("lint %s: revision %s (%s): %s%s", f.rule, f.revision, f.file, f.message,
    f.statement and ("\n    " .. f.statement:gsub("\n", "\n    ")) or "")
end
M.describe_finding = describe_finding

local function describe_unrecorded(u)
  return string.format("not linted: revision %s (%s): %s; what it sends from there on is not known without a "
    .. "database", u.revision, u.where, u.reason)
end

--- For `tide check`: drift (with diffs), a partial revision, and lint of the pending revisions
--- (a pending revision that cannot run is a problem).
function M.check(ctx, conn, applied, partial, problems)
  local drifted = runner.drifted(ctx.graph, applied)
  if #drifted > 0 then
    problems[#problems + 1] = M.drift_report(conn, ctx.cfg, drifted)
  end
  for id, row in pairs(partial or {}) do
    problems[#problems + 1] = string.format("revision %s is %s", id, runner.describe_partial(row))
  end
  local pending = {}
  for _, rev in ipairs(ctx.graph.list) do
    if not applied[rev.revision] then
      pending[#pending + 1] = rev
    end
  end
  local result = M.lint(pending, M.lint_options(ctx.cfg, conn))
  for _, f in ipairs(result.problems) do
    problems[#problems + 1] = describe_finding(f)
  end
  for _, u in ipairs(result.unrecorded) do
    log.info("%s", describe_unrecorded(u))
  end
  return result
end

--- For `tide check --offline`: which revisions will run is not known, so every revision's
--- upgrade is built; one that cannot run is a problem.
function M.check_offline(ctx, problems)
  for _, rev in ipairs(ctx.graph.list) do
    local built = M.build(rev, "upgrade", ctx.cfg.vars)
    if built.failure then
      problems[#problems + 1] = describe_finding({ rule = "cannot_run", revision = rev.revision,
        where = built.failure.where, message = built.failure.message })
    end
    revisions.release(rev)
  end
end

--- For `tide status`: "partial" rows get a state and a description.
function M.status_of(partial, id)
  local row = partial and partial[id]
  if row then
    return "partial", runner.describe_partial(row)
  end
end

-- Commands ------------------------------------------------------------------------------------

-- Runs fn(conn) with the migration lock held and the tracking tables current.
local function locked(ctx, fn)
  local conn <close> = runner.connect(ctx.cfg)
  local lock_conn <close> = lock.acquire(ctx.cfg, conn)
  track.ensure(conn, ctx.cfg.schema)
  local result = fn(conn)
  lock_conn:close()
  return result
end

local function find_rev(ctx, word)
  local id = revisions.find(ctx.graph, word)
  return ctx.graph.by_id[id]
end

M.commands = {}

local function command(spec)
  M.commands[#M.commands + 1] = spec
end

command {
  name = "accept",
  usage = "accept REV",
  summary = "record the edited file of an applied revision as the applied one (after review)",
  details = "The history keeps a row with the previous checksum. `tide check` shows the difference first.",
  min_args = 1,
  max_args = 1,
  run = function(ctx, args)
    local rev = find_rev(ctx, args[1])
    return locked(ctx, function(conn)
      local applied, partial = track.applied(conn, ctx.cfg.schema)
      local row = applied[rev.revision] or partial[rev.revision]
      if not row then
        errors.raise("usage", string.format("revision %s is not applied: nothing to accept", rev.revision))
      end
      if row.checksum == rev.checksum then
        return { revision = rev.revision, accepted = false, checksum = rev.checksum }
      end
      local report = M.drift_report(conn, ctx.cfg, { { rev = rev, row = row } })
      log.info("%s", report)
      local run = { id = runner.run_id() }
      dbmod.transaction(conn, track.record_accept, conn, ctx.cfg.schema, run, rev, row.checksum)
      return { revision = rev.revision, accepted = true, checksum = rev.checksum, previous = row.checksum,
        run_id = run.id }
    end)
  end,
  print = function(result)
    if result.accepted then
      out("accepted %s: checksum %s (was %s)", result.revision, result.checksum:sub(1, 12), result.previous:sub(1, 12))
    else
      out("nothing to accept: %s is unchanged since it was applied", result.revision)
    end
  end,
}

command {
  name = "resolve",
  usage = 'resolve REV --applied|--reverted --reason "..."',
  summary = "settle a partially applied non-transactional revision after inspecting the database",
  details = "--applied: everything the revision does is in place (finish by hand first if needed);\n"
    .. "--reverted: nothing of it is left. The decision, your --reason, OS user and host go into history.",
  flags = {
    { "applied", nil, "record the revision as applied" },
    { "reverted", nil, "record the revision as not applied" },
    { "reason", "TEXT", "why (required): what you inspected or fixed" },
  },
  min_args = 1,
  max_args = 1,
  run = function(ctx, args, flags)
    if (flags.applied and flags.reverted) or not (flags.applied or flags.reverted) then
      errors.raise("usage", "resolve needs exactly one of --applied or --reverted")
    end
    if not flags.reason or flags.reason:match("^%s*$") then
      errors.raise("usage", 'resolve needs --reason "..." (it is kept in history)')
    end
    local rev = find_rev(ctx, args[1])
    return locked(ctx, function(conn)
      local _, partial = track.applied(conn, ctx.cfg.schema)
      local row = partial[rev.revision]
      if not row then
        errors.raise("usage", string.format("revision %s is not partially applied: nothing to resolve "
          .. "(`tide status` shows the state; `tide stamp` records revisions without running them)", rev.revision))
      end
      local outcome = flags.applied and "applied" or "reverted"
      local run = { id = runner.run_id(), note = flags.reason }
      dbmod.transaction(conn, track.record_resolve, conn, ctx.cfg.schema, run, rev, outcome)
      return { revision = rev.revision, outcome = outcome, was = runner.describe_partial(row), reason = flags.reason,
        run_id = run.id }
    end)
  end,
  print = function(result)
    out("resolved %s as %s (it was %s); reason recorded: %s", result.revision, result.outcome, result.was,
      result.reason)
  end,
}

command {
  name = "lint",
  usage = "lint [TARGET] [--all]",
  summary = "check the SQL of pending revisions for locks, rewrites and data loss",
  details = "Rules: " .. table.concat(lint.rule_names, ", ") .. ". A revision opts out of a rule with a reason:\n"
    .. 'allow = { destructive = "why" }. Exit 1 when something is found.',
  flags = { { "all", nil, "lint every revision in versions/, without connecting" } },
  max_args = 1,
  run = function(ctx, args, flags)
    local list, options
    if flags.all then
      list, options = ctx.graph.list, M.lint_options(ctx.cfg)
    else
      local conn <close> = runner.connect(ctx.cfg)
      local applied = runner.state(conn, ctx.cfg)
      list = revisions.plan_upgrade(ctx.graph, applied, args[1] or "head")
      options = M.lint_options(ctx.cfg, conn)
    end
    local result = M.lint(list, options)
    result.ok = #result.problems == 0
    result.exit = result.ok and 0 or errors.exit_codes.check
    result.revisions = #list
    return result
  end,
  print = function(result)
    for _, f in ipairs(result.findings) do
      if f.allowed then
        out("allowed %s: revision %s (%s): %s", f.rule, f.revision, f.file, f.allowed)
      else
        out("%s", describe_finding(f))
      end
    end
    for _, u in ipairs(result.unrecorded) do
      out("%s", describe_unrecorded(u))
    end
    local skipped = #result.unrecorded > 0 and string.format(", %d not linted (reads data)", #result.unrecorded) or ""
    out("%s: %d revision%s linted, %d problem%s%s", result.ok and "ok" or "lint failed", result.checked,
      result.checked == 1 and "" or "s", #result.problems, #result.problems == 1 and "" or "s", skipped)
  end,
}

-- The schema as sorted lines of text: every object outside the system schemas and tide's own.
local SNAPSHOT = [[
WITH ns AS (
  SELECT oid, nspname FROM pg_catalog.pg_namespace
  WHERE nspname NOT IN ('pg_catalog', 'information_schema', $1) AND nspname NOT LIKE 'pg\_%'
), rel AS (
  SELECT c.oid, c.relkind, pg_catalog.format('%I.%I', ns.nspname, c.relname) AS name
  FROM pg_catalog.pg_class c JOIN ns ON ns.oid = c.relnamespace
)
SELECT line FROM (
  SELECT 'schema ' || pg_catalog.quote_ident(nspname) AS line FROM ns
  UNION ALL
  SELECT 'relation ' || name || ' kind ' || relkind::text FROM rel WHERE relkind <> 'i'
  UNION ALL
  SELECT 'column ' || rel.name || '.' || pg_catalog.quote_ident(a.attname) || ' '
    || pg_catalog.format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
    || COALESCE(' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_catalog.pg_attribute a JOIN rel ON rel.oid = a.attrelid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE a.attnum > 0 AND NOT a.attisdropped AND rel.relkind IN ('r', 'p', 'v', 'm', 'f')
  UNION ALL
  SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
  JOIN rel ON rel.oid = i.indrelid
  UNION ALL
  SELECT 'constraint ' || rel.name || ' ' || pg_catalog.quote_ident(co.conname) || ' '
    || pg_catalog.pg_get_constraintdef(co.oid)
  FROM pg_catalog.pg_constraint co JOIN rel ON rel.oid = co.conrelid
  UNION ALL
  SELECT 'view ' || rel.name || ' ' || pg_catalog.pg_get_viewdef(rel.oid) FROM rel WHERE relkind IN ('v', 'm')
  UNION ALL
  SELECT 'function ' || ns.nspname || '.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid)
    || ') ' || pg_catalog.md5(CASE p.prokind WHEN 'a' THEN p.prosrc ELSE pg_catalog.pg_get_functiondef(p.oid) END)
  FROM pg_catalog.pg_proc p JOIN ns ON ns.oid = p.pronamespace
  UNION ALL
  SELECT 'type ' || ns.nspname || '.' || t.typname || ' ' || t.typtype::text || COALESCE(' (' || (
    SELECT pg_catalog.string_agg(e.enumlabel, ', ' ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e
    WHERE e.enumtypid = t.oid) || ')', '')
  FROM pg_catalog.pg_type t JOIN ns ON ns.oid = t.typnamespace
  WHERE t.typtype IN ('e', 'd', 'c', 'r') AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
    WHERE c.oid = t.typrelid AND c.relkind <> 'c')
  UNION ALL
  SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(tg.oid) FROM pg_catalog.pg_trigger tg
  JOIN rel ON rel.oid = tg.tgrelid WHERE NOT tg.tgisinternal
  UNION ALL
  SELECT 'policy ' || rel.name || ' ' || pg_catalog.quote_ident(po.polname) || ' ' || po.polcmd::text || ' '
    || COALESCE(pg_catalog.pg_get_expr(po.polqual, po.polrelid), '') || ' '
    || COALESCE(pg_catalog.pg_get_expr(po.polwithcheck, po.polrelid), '')
  FROM pg_catalog.pg_policy po JOIN rel ON rel.oid = po.polrelid
  UNION ALL
  SELECT 'row security ' || rel.name FROM rel JOIN pg_catalog.pg_class c ON c.oid = rel.oid
  WHERE c.relrowsecurity
  UNION ALL
  SELECT 'extension ' || extname FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql'
) s ORDER BY line]]

--- The schema of the database conn is connected to, as a sorted list of lines.
function M.snapshot(conn, schema)
  local lines = {}
  for _, row in ipairs(conn:query(SNAPSHOT, schema)) do
    lines[#lines + 1] = row.line
  end
  return lines
end

--- What differs between two snapshots: lines only in a ("-") and only in b ("+").
function M.snapshot_diff(a, b)
  local in_a, in_b, d = {}, {}, {}
  for _, l in ipairs(a) do
    in_a[l] = true
  end
  for _, l in ipairs(b) do
    in_b[l] = true
  end
  for _, l in ipairs(a) do
    if not in_b[l] then
      d[#d + 1] = "- " .. l
    end
  end
  for _, l in ipairs(b) do
    if not in_a[l] then
      d[#d + 1] = "+ " .. l
    end
  end
  return d
end

-- Runs one step of the round trip: a revision that fails is a finding of the test, anything
-- else (connection, lock) stops it. Returns true when the step ran.
local function round_trip_step(entry, problem, what, fn)
  local ok, err = pcall(fn)
  if ok then
    return true
  end
  if not (errors.is_error(err) and err.kind == "run") then
    error(err, 0)
  end
  entry.outcome = what .. " failed"
  problem(tostring(err.message))
  return false
end

-- Puts the scratch database back as the test found it: downgrades what the test applied and
-- drops the tracking schema if the test created it. Returns nil when that worked, else why not.
local function leave_as_found(conn, inner, found, had_tracking)
  local cfg = inner.cfg
  local ok, err = pcall(function()
    if next((runner.state(conn, cfg))) then
      runner.migrate(inner, "downgrade", "base", {})
    end
    if not had_tracking and track.exists(conn, cfg.schema) then
      conn:exec("SET client_min_messages = warning; DROP SCHEMA " .. require("tide.sql").ident(cfg.schema)
        .. " CASCADE; RESET client_min_messages")
    end
  end)
  if not ok then
    return "reverting the revisions the test applied failed: "
      .. (errors.is_error(err) and err.message or tostring(err))
  end
  local d = M.snapshot_diff(found, M.snapshot(conn, cfg.schema))
  if #d > 0 then
    return "its schema differs from before the test (- missing, + left behind):\n  " .. table.concat(d, "\n  ")
  end
end

command {
  name = "test",
  usage = "test --url SCRATCH_URL",
  summary = "round-trip every revision on a scratch database: upgrade, downgrade, compare, upgrade again",
  details = "Also checks for a single head and lints every revision. Reports the first revision whose\n"
    .. "downgrade leaves a trace, with the difference. The database must have no tide revisions applied;\n"
    .. "the test leaves it as it found it (everything it applied reverted, tide's tables dropped).\n"
    .. "Runs the behaviour checks of tests/*.lua after each revision they name, and again after its\n"
    .. "downgrade and upgrade (README \"Round-trip test\").",
  run = function(ctx)
    if not ctx.flags or not ctx.flags.url then
      errors.raise("usage", "tide test needs --url SCRATCH_URL: a throwaway database it may change freely")
    end
    local cfg, graph = ctx.cfg, ctx.graph
    local result = { ok = true, problems = {}, revisions = {} }
    local function problem(text)
      result.ok = false
      result.problems[#result.problems + 1] = text
    end
    if #graph.heads > 1 then
      problem("multiple heads: " .. table.concat(graph.heads, ", "))
    end
    local linted = M.lint(graph.list, M.lint_options(cfg))
    local checks = rlscheck.load(cfg, graph) -- tests/*.lua: behaviour checks after a revision
    for _, f in ipairs(linted.problems) do
      problem(describe_finding(f))
    end
    local conn <close> = runner.connect(cfg)
    local applied, partial = runner.state(conn, cfg)
    if next(applied) or next(partial) then
      errors.raise("usage", "tide test needs a scratch database with no tide revisions applied; "
        .. cfg.url_source .. " has some (this is not a throwaway database? `tide downgrade base` empties a "
        .. "scratch database an interrupted test left behind)")
    end
    local had_tracking = track.exists(conn, cfg.schema)
    local found = M.snapshot(conn, cfg.schema)
    local level = log.level
    log.level = math.min(level, log.level >= 2 and 2 or 0)
    local inner = { cfg = cfg, graph = graph }
    local ok, err = pcall(function()
      local before = found
      for _, rev in ipairs(graph.list) do
        local entry = { revision = rev.revision, file = rev.file }
        result.revisions[#result.revisions + 1] = entry
        if not round_trip_step(entry, problem, "upgrade", function()
          runner.migrate(inner, "upgrade", rev.revision, {})
        end) then
          return
        end
        local after = M.snapshot(conn, cfg.schema)
        rlscheck.run(conn, cfg, checks, rev, "after upgrade", entry, problem)
        if not rev.has_downgrade then
          entry.outcome = "no downgrade"
          problem(string.format("revision %s (%s) has no downgrade function", rev.revision, rev.file))
          before = after
        else
          if not round_trip_step(entry, problem, "downgrade", function()
            runner.migrate(inner, "downgrade", "-1", {})
          end) then
            return
          end
          local reverted = M.snapshot(conn, cfg.schema)
          local d = M.snapshot_diff(before, reverted)
          if #d > 0 then
            entry.outcome = "downgrade leaves a trace"
            entry.difference = d
            problem(string.format("revision %s (%s): the downgrade does not restore the schema before the upgrade "
              .. "(- missing, + left behind):\n  %s", rev.revision, rev.file, table.concat(d, "\n  ")))
            return
          end
          if not round_trip_step(entry, problem, "second upgrade", function()
            runner.migrate(inner, "upgrade", rev.revision, {})
          end) then
            return
          end
          local again = M.snapshot(conn, cfg.schema)
          rlscheck.run(conn, cfg, checks, rev, "after downgrade and upgrade", entry, problem)
          d = M.snapshot_diff(after, again)
          if #d > 0 then
            entry.outcome = "second upgrade differs"
            entry.difference = d
            problem(string.format("revision %s (%s): upgrading again gives a different schema:\n  %s",
              rev.revision, rev.file, table.concat(d, "\n  ")))
            return
          end
          entry.outcome = "ok"
          before = again
        end
      end
    end)
    -- Whatever happened, the scratch database goes back to how it was found: the next run needs it so.
    local not_restored = "its connection was lost"
    if not conn:closed() then
      not_restored = leave_as_found(conn, inner, found, had_tracking)
    end
    log.level = level
    if not ok then
      if not_restored then
        log.warn("the scratch database is not as tide test found it: %s", not_restored)
      end
      error(err, 0)
    end
    for _, entry in ipairs(result.revisions) do
      if entry.outcome ~= "ok" then
        result.first_failure = result.first_failure or entry.revision
      end
    end
    for i = #result.revisions + 1, #graph.list do
      result.revisions[i] = { revision = graph.list[i].revision, file = graph.list[i].file, outcome = "not reached" }
    end
    result.round_tripped, result.total = 0, #graph.list
    for _, entry in ipairs(result.revisions) do
      result.round_tripped = result.round_tripped + (entry.outcome == "ok" and 1 or 0)
    end
    result.left_as_found = not not_restored
    if not_restored then
      problem("the scratch database is not as tide test found it: " .. not_restored .. "\n  recreate it before the "
        .. "next run")
    end
    result.exit = result.ok and 0 or errors.exit_codes.check
    return result
  end,
  print = function(result)
    for _, r in ipairs(result.revisions) do
      out("%-12s %s%s", r.revision, r.outcome or "not reached", r.checks_passed
        and string.format(" (checks: %d passed, %d failed)", r.checks_passed, r.checks_failed) or "")
    end
    for _, p in ipairs(result.problems) do
      out("problem: %s", p)
    end
    if result.ok then
      out("ok: %d revision%s round-tripped", result.round_tripped, result.round_tripped == 1 and "" or "s")
    else
      out("test failed: %d of %d revision%s round-tripped, %d problem%s", result.round_tripped, result.total,
        result.total == 1 and "" or "s", #result.problems, #result.problems == 1 and "" or "s")
    end
  end,
}

command {
  name = "auto",
  usage = "auto",
  summary = "start-up upgrade: when AUTO_IMPROVE_DATABASE is true or 1, upgrade to head (with the backup)",
  details = "Otherwise does nothing and exits 0. Exits 8 when the database has revisions this code does not\n"
    .. "know. Never waits for the lock when nothing is pending. Logs a line as each revision and step starts.",
  flags = (function()
    local list = { { "allow-drift", nil, "upgrade even if an applied revision's file changed since" } }
    for _, f in ipairs(require("tide.backup").migrate_flags) do -- --backup-to URL, --no-backup
      list[#list + 1] = f
    end
    return list
  end)(),
  run = function(ctx, _, flags)
    local value = os.getenv("AUTO_IMPROVE_DATABASE")
    local v = (value or ""):lower()
    if v ~= "true" and v ~= "1" then
      if v ~= "" and v ~= "false" and v ~= "0" then
        log.warn("AUTO_IMPROVE_DATABASE=%s is neither true/1 nor false/0: not upgrading", value)
      end
      return { auto = false, reason = "AUTO_IMPROVE_DATABASE is " .. (value and ("'" .. value .. "'") or "not set") }
    end
    ctx.before_migrate = require("tide.backup").hook(ctx, flags) -- the configured backup, as upgrade
    local result = runner.migrate(ctx, "upgrade", "head", { allow_drift = flags["allow-drift"],
      note = "tide auto" })
    result.auto = true
    return result
  end,
  print = function(result)
    if not result.auto then
      out("not upgrading: %s", result.reason)
    elseif result.nothing_to_do then
      out("up to date: nothing to apply")
    else
      local ids = {}
      for i, r in ipairs(result.revisions) do
        ids[i] = r.revision
      end
      out("applied %d revision%s: %s", #ids, #ids == 1 and "" or "s", table.concat(ids, ", "))
    end
  end,
}

return M
