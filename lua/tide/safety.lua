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
local runner = require "tide.runner"
local track = require "tide.track"

local M = {}

local function out(fmt, ...)
  io.stdout:write(select("#", ...) > 0 and string.format(fmt, ...) or fmt, "\n")
end

local function lines_of(text)
  local list = {}
  for line in ((text or ""):gsub("\r\n?", "\n"):gsub("\n$", "") .. "\n"):gmatch("([^\n]*)\n") do
    list[#list + 1] = line
  end
  return list
end

--- A line diff of a against b, unified style ("-" only in a, "+" only in b), with `context`
--- unchanged lines around each change. Empty string when equal.
---@param a string
---@param b string
---@param label_a string
---@param label_b string
---@return string
function M.diff(a, b, label_a, label_b, context)
  context = context or 2
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
  local ops = {}
  local i, j = 1, 1
  while i <= n or j <= m do
    if i <= n and j <= m and x[i] == y[j] then
      ops[#ops + 1] = { " ", x[i] }
      i, j = i + 1, j + 1
    elseif j <= m and (i > n or L[i][j + 1] >= L[i + 1][j]) then
      ops[#ops + 1] = { "+", y[j] }
      j = j + 1
    else
      ops[#ops + 1] = { "-", x[i] }
      i = i + 1
    end
  end
  local keep = {}
  for k, op in ipairs(ops) do
    if op[1] ~= " " then
      for c = math.max(1, k - context), math.min(#ops, k + context) do
        keep[c] = true
      end
    end
  end
  if not next(keep) then
    return ""
  end
  local outl = { "--- " .. label_a, "+++ " .. label_b }
  local last = 0
  for k, op in ipairs(ops) do
    if keep[k] then
      if k > last + 1 then
        outl[#outl + 1] = "@@"
      end
      outl[#outl + 1] = op[1] .. op[2]
      last = k
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
    parts[#parts + 1] = string.format("revision %s (%s) changed since it was applied on %s:\n%s", d.rev.revision,
      d.rev.file, d.row.applied_at or "?",
      M.diff(row.source or "", d.rev.source, "applied source (" .. d.row.checksum:sub(1, 12) .. ")",
        d.rev.file .. " (" .. d.rev.checksum:sub(1, 12) .. ")"))
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

-- Records what fn(db) would send, or raises naming the revision.
local function record(rev, direction)
  local fn = direction == "upgrade" and rev.upgrade or rev.downgrade
  if not fn then
    errors.raise("usage", string.format("revision %s (%s) has no %s function", rev.revision, rev.file, direction))
  end
  local db = dbmod.recorder(rev)
  local ok, err = xpcall(fn, runner.on_error, db)
  if not ok then
    errors.raise("run", string.format("revision %s (%s): %s", rev.revision, rev.file,
      errors.is_error(err) and err.message or tostring(err)), { revision = rev.revision, file = rev.file })
  end
  return db.record
end

--- `upgrade --sql` / `downgrade --sql`: the script the run would send, planned from the
--- database's current state (read without the lock), changing nothing.
function M.sql_script(ctx, direction, target)
  local cfg, graph = ctx.cfg, ctx.graph
  local conn <close> = runner.connect(cfg)
  local present, format = track.inspect(conn, cfg.schema)
  local applied, partial = runner.state(conn, cfg)
  if next(partial) then
    errors.raise("run", "a partially applied revision must be settled before a script can be planned "
      .. "(`tide status`)")
  end
  local plan = (direction == "upgrade" and revisions.plan_upgrade or revisions.plan_downgrade)(graph, applied, target)
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
  push("\\set ON_ERROR_STOP on")
  push(BOOK .. ": revisions create objects where tide's own connection would (search_path)")
  push(string.format("SELECT pg_catalog.set_config('search_path', %s, false);",
    require("tide.sql").literal(cfg.search_path)))
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
  for _, rev in ipairs(plan) do
    local statements = record(rev, direction)
    push(string.format("-- revision %s: %s (%s, %s)", rev.revision, rev.message, rev.file, direction))
    if rev.transaction then
      push("BEGIN;")
      push(BOOK)
      push(runner.timeouts(cfg, rev) .. ";")
    else
      push("-- transaction = false: every statement runs on its own")
      push(BOOK)
      local lt, st = (rev.lock_timeout or cfg.lock_timeout), (rev.statement_timeout or cfg.statement_timeout)
      push(string.format("SET lock_timeout = %s; SET statement_timeout = %s;", require("tide.sql").literal(lt),
        require("tide.sql").literal(st)))
    end
    for _, s in ipairs(statements) do
      if s:match("^%-%- step ") then
        push(s)
      else
        push(terminated(s))
      end
    end
    push(BOOK)
    if not rev.transaction then
      push("RESET lock_timeout; RESET statement_timeout;")
      push("BEGIN;")
    end
    record_fn(bookkeeping, cfg.schema, run, rev, 0)
    push("COMMIT;")
    push("")
  end
  if #plan == 0 then
    push(string.format("-- nothing to do: no revision to %s for target %s", direction, target))
  end
  return { direction = direction, target = target, script = table.concat(lines, "\n") .. "\n",
    revisions = plan and #plan or 0, sql = true }
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

--- Lints the upgrades of revisions (a list in order). Revisions that read data cannot be
--- recorded; they are listed in `unrecorded` instead of failing the lint.
function M.lint(list)
  local items, unrecorded, refused = {}, {}, {}
  for _, rev in ipairs(list) do
    local db = dbmod.recorder(rev)
    local ok, err = pcall(rev.upgrade, db)
    if ok then
      items[#items + 1] = { rev = rev, statements = db.record, direction = "upgrade" }
    elseif type(err) == "table" and err.refused then
      -- a statement tide will refuse to run (one that ends the revision's transaction)
      refused[#refused + 1] = { revision = rev.revision, file = rev.file, rule = err.refused, message = err.message,
        statement = err.query }
    else
      unrecorded[#unrecorded + 1] = { revision = rev.revision, file = rev.file,
        reason = errors.is_error(err) and err.message or tostring(err) }
    end
  end
  local findings = lint.check(items)
  table.move(refused, 1, #refused, #findings + 1, findings)
  local problems = {}
  for _, f in ipairs(findings) do
    if not f.allowed then
      problems[#problems + 1] = f
    end
  end
  return { findings = findings, problems = problems, unrecorded = unrecorded, checked = #items }
end

local function describe_finding(f)
  return string.format("lint %s: revision %s (%s): %s%s", f.rule, f.revision, f.file, f.message,
    f.statement and ("\n    " .. f.statement:gsub("\n", "\n    ")) or "")
end
M.describe_finding = describe_finding

--- For `tide check`: drift (with diffs), a partial revision, and lint of the pending revisions.
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
  local result = M.lint(pending)
  for _, f in ipairs(result.problems) do
    problems[#problems + 1] = describe_finding(f)
  end
  return result
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
      conn:exec("BEGIN")
      local ok, err = pcall(track.record_accept, conn, ctx.cfg.schema, run, rev, row.checksum)
      if not ok then
        pcall(conn.exec, conn, "ROLLBACK")
        error(err, 0)
      end
      conn:exec("COMMIT")
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
      conn:exec("BEGIN")
      local ok, err = pcall(track.record_resolve, conn, ctx.cfg.schema, run, rev, outcome)
      if not ok then
        pcall(conn.exec, conn, "ROLLBACK")
        error(err, 0)
      end
      conn:exec("COMMIT")
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
    local list
    if flags.all then
      list = ctx.graph.list
    else
      local conn <close> = runner.connect(ctx.cfg)
      local applied = runner.state(conn, ctx.cfg)
      list = revisions.plan_upgrade(ctx.graph, applied, args[1] or "head")
    end
    local result = M.lint(list)
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
      out("not linted: revision %s (%s): %s", u.revision, u.file, u.reason)
    end
    out("%s: %d revision%s linted, %d problem%s", result.ok and "ok" or "lint failed", result.checked,
      result.checked == 1 and "" or "s", #result.problems, #result.problems == 1 and "" or "s")
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
    || ') ' || pg_catalog.md5(COALESCE(p.prosrc, ''))
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

command {
  name = "test",
  usage = "test --url SCRATCH_URL",
  summary = "round-trip every revision on a scratch database: upgrade, downgrade, compare, upgrade again",
  details = "Also checks for a single head and lints every revision. Reports the first revision whose\n"
    .. "downgrade leaves a trace, with the difference. The database must have no tide revisions applied.",
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
    local linted = M.lint(graph.list)
    for _, f in ipairs(linted.problems) do
      problem(describe_finding(f))
    end
    local conn <close> = runner.connect(cfg)
    local applied, partial = runner.state(conn, cfg)
    if next(applied) or next(partial) then
      errors.raise("usage", "tide test needs a scratch database with no tide revisions applied; "
        .. cfg.url_source .. " has some (this is not a throwaway database?)")
    end
    local level = log.level
    log.level = math.min(level, log.level >= 2 and 2 or 0)
    local inner = { cfg = cfg, graph = graph }
    local ok, err = pcall(function()
      local before = M.snapshot(conn, cfg.schema)
      for _, rev in ipairs(graph.list) do
        local entry = { revision = rev.revision, file = rev.file }
        result.revisions[#result.revisions + 1] = entry
        runner.migrate(inner, "upgrade", rev.revision, {})
        local after = M.snapshot(conn, cfg.schema)
        if not rev.has_downgrade then
          entry.outcome = "no downgrade"
          problem(string.format("revision %s (%s) has no downgrade function", rev.revision, rev.file))
          before = after
        else
          runner.migrate(inner, "downgrade", "-1", {})
          local reverted = M.snapshot(conn, cfg.schema)
          local d = M.snapshot_diff(before, reverted)
          if #d > 0 then
            entry.outcome = "downgrade leaves a trace"
            entry.difference = d
            problem(string.format("revision %s (%s): the downgrade does not restore the schema before the upgrade "
              .. "(- missing, + left behind):\n  %s", rev.revision, rev.file, table.concat(d, "\n  ")))
            result.first_failure = rev.revision
            return
          end
          runner.migrate(inner, "upgrade", rev.revision, {})
          local again = M.snapshot(conn, cfg.schema)
          d = M.snapshot_diff(after, again)
          if #d > 0 then
            entry.outcome = "second upgrade differs"
            entry.difference = d
            problem(string.format("revision %s (%s): upgrading again gives a different schema:\n  %s",
              rev.revision, rev.file, table.concat(d, "\n  ")))
            result.first_failure = rev.revision
            return
          end
          entry.outcome = "ok"
          before = again
        end
      end
    end)
    log.level = level
    if not ok then
      error(err, 0)
    end
    result.exit = result.ok and 0 or errors.exit_codes.check
    return result
  end,
  print = function(result)
    for _, r in ipairs(result.revisions) do
      out("%-12s %s", r.revision, r.outcome or "not reached")
    end
    for _, p in ipairs(result.problems) do
      out("problem: %s", p)
    end
    out("%s: %d revision%s round-tripped", result.ok and "ok" or "test failed", #result.revisions,
      #result.revisions == 1 and "" or "s")
  end,
}

command {
  name = "auto",
  usage = "auto",
  summary = "start-up upgrade: when AUTO_IMPROVE_DATABASE is true or 1, upgrade to head (with the backup)",
  details = "Otherwise does nothing and exits 0. Exits 8 when the database has revisions this code does not\n"
    .. "know. Never waits for the lock when nothing is pending. Logs one line per revision.",
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
    local result = runner.migrate(ctx, "upgrade", "head", { progress = true, allow_drift = flags["allow-drift"],
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
