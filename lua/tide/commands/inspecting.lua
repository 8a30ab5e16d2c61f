-- tide.commands.inspecting: the commands that read and report, changing nothing of the
-- project's database (see tide.commands):
--   current, status, history, heads, show, branches   the revisions and what is applied
--   check     for CI: one head, no unknown or drifted revisions, pending revisions lint clean
--   lint      the SQL pending revisions would send (tide.checks, rules in tide.lint)
--   test      round-trips every revision on a scratch database (which it leaves as it found it)
local checks = require "tide.checks"
local config = require "tide.config"
local core = require "tide.core"
local errors = require "tide.errors"
local lint = require "tide.lint"
local log = require "tide.log"
local revisions = require "tide.revisions"
local rlscheck = require "tide.rlscheck"
local runner = require "tide.runner"
local session = require "tide.session"
local snapshot = require "tide.snapshot"
local text = require "tide.text"
local track = require "tide.track"

local out = text.out

local M = {}

M.current = {
  usage = "current",
  summary = "show the revision(s) the database is at",
  run = function(ctx)
    local conn <close> = session.connect(ctx.cfg, { setup = false })
    local applied = runner.state(conn, ctx.cfg)
    local current = revisions.current(ctx.graph, applied)
    local heads = {}
    for _, h in ipairs(ctx.graph.heads) do
      heads[h] = true
    end
    local list = {}
    for i, id in ipairs(current) do
      local rev = ctx.graph.by_id[id]
      list[i] = { revision = id, message = rev and rev.message or errors.cut(applied[id].message),
        head = heads[id] or false,
        known = rev ~= nil }
    end
    return { current = list }
  end,
  print = function(result)
    if #result.current == 0 then
      out("base (no revisions applied)")
    end
    for _, c in ipairs(result.current) do
      out("%s%s  %s%s", c.revision, c.head and " (head)" or "", c.message, c.known and "" or "  [not in versions/]")
    end
  end,
}

-- "host:port/dbname" of the live connection: the database tide reached, wherever its address
-- came from (--url, DATABASE_URL, tide.lua or libpq's PG* variables and defaults).
local function reached(conn)
  local info = conn:info()
  local host = info.host or "?"
  if host:find(":", 1, true) then
    host = "[" .. host .. "]" -- an IPv6 address
  end
  return string.format("%s:%s/%s", host, info.port or "?", info.dbname or "?")
end

local STATUS_MARKS = { applied = "[x]", pending = "[ ]", unknown = "[?]", partial = "[~]" }

M.status = {
  usage = "status",
  summary = "list every revision, applied or pending, with its message",
  run = function(ctx)
    local conn <close> = session.connect(ctx.cfg, { setup = false })
    local applied, partial = runner.state(conn, ctx.cfg)
    local list, pending = {}, 0
    for _, rev in ipairs(ctx.graph.list) do
      local row = applied[rev.revision]
      local partial_row = partial[rev.revision]
      list[#list + 1] = {
        revision = rev.revision,
        message = rev.message,
        file = rev.file,
        state = row and "applied" or partial_row and "partial" or "pending",
        partial = partial_row and runner.describe_partial(partial_row) or nil,
        applied_at = row and row.applied_at or nil,
        applied_by = row and row.applied_by or nil,
        changed = row and row.checksum ~= rev.checksum or nil,
      }
      pending = pending + (row and 0 or 1)
    end
    for _, id in ipairs(runner.unknown(ctx.graph, applied)) do
      list[#list + 1] = { revision = id, message = errors.cut(applied[id].message), state = "unknown",
        applied_at = applied[id].applied_at, applied_by = applied[id].applied_by }
    end
    return { revisions = list, pending = pending, heads = ctx.graph.heads, schema = ctx.cfg.schema,
      database = reached(conn), url_source = ctx.cfg.url_source }
  end,
  -- One line per revision, written at once: a project of thousands prints thousands of lines.
  print = function(result)
    local lines = { string.format("database: %s, from %s", result.database, result.url_source) }
    -- Columns by display width, not bytes: a message in any language keeps the next column
    -- straight. The id column fits the longest id (generated ids have 20 characters).
    local width = 12
    for _, r in ipairs(result.revisions) do
      width = math.max(width, text.width(r.revision))
    end
    for _, r in ipairs(result.revisions) do
      local changed = r.changed and "  (file changed since)" or ""
      local id, message = text.pad(r.revision, width), text.pad(r.message, 40)
      if r.state == "applied" then
        lines[#lines + 1] = string.format("[x] %s %s applied %s by %s%s", id, message, r.applied_at, r.applied_by,
          changed)
      else
        local extra = r.state == "pending" and "pending" or r.partial or "applied, but not in versions/"
        lines[#lines + 1] = string.format("%s %s %s %s%s", STATUS_MARKS[r.state], id, message, extra, changed)
      end
    end
    lines[#lines + 1] = string.format("%d pending; head%s: %s", result.pending, #result.heads == 1 and "" or "s",
      table.concat(result.heads, ", "))
    out(table.concat(lines, "\n"))
  end,
}

M.history = {
  usage = "history [--applied] [--limit N]",
  summary = "show the revision graph from the files, or with --applied what ran on the database",
  flags = {
    { "applied", nil, "show the database's history table (every upgrade, downgrade, stamp, failure)" },
    { "limit", "N", "with --applied: at most N rows, newest first (default: 50)" },
  },
  run = function(ctx, _, flags)
    if flags.limit and not flags.applied then
      errors.raise("usage", "--limit goes with --applied (it limits the rows of what ran on the database); "
        .. "the revision graph from the files is shown whole")
    end
    if flags.applied then
      local limit = math.tointeger(tonumber(flags.limit or "50"))
      if not limit or limit < 1 then
        errors.raise("usage", string.format("--limit %s: give a whole number of 1 or more", errors.cut(flags.limit)))
      end
      local conn <close> = session.connect(ctx.cfg, { setup = false })
      if not track.exists(conn, ctx.cfg.schema) then
        return { applied = {} }
      end
      return { applied = track.history(conn, ctx.cfg.schema, limit) }
    end
    local list = {}
    for i = #ctx.graph.list, 1, -1 do
      local rev = ctx.graph.list[i]
      list[#list + 1] = { revision = rev.revision, down_revision = rev.parents, message = rev.message,
        file = rev.file, head = #ctx.graph.children[rev.revision] == 0 }
    end
    return { revisions = list }
  end,
  print = function(result)
    if result.applied then
      local width = 8
      for _, h in ipairs(result.applied) do
        width = math.max(width, h.revision ~= core.null and text.width(h.revision) or 1)
      end
      local function first_line(value, prefix)
        if value == core.null or value == nil or value == "" then
          return ""
        end
        return prefix .. errors.cut(value:match("[^\n]*"))
      end
      for _, h in ipairs(result.applied) do
        local revision = h.revision ~= core.null and h.revision or "-"
        out("%s  %s %s %s %s  %s@%s as %s%s%s%s", h.started_at, text.pad(h.direction, 9), text.pad(revision, width),
          text.pad(h.outcome, 8), string.format("%.0f ms", h.duration_ms), h.os_user, h.host, h.db_user,
          first_line(h.backup, "  backup: "), first_line(h.note, "  note: "), first_line(h.error, "  "))
      end
      return
    end
    for _, r in ipairs(result.revisions) do
      local parents = #r.down_revision > 0 and table.concat(r.down_revision, ", ") or "<base>"
      out("%s -> %s%s, %s", parents, r.revision, r.head and " (head)" or "", r.message)
    end
  end,
}

M.heads = {
  usage = "heads",
  summary = "show the revisions with no children",
  run = function(ctx)
    local list = {}
    for i, id in ipairs(ctx.graph.heads) do
      local rev = ctx.graph.by_id[id]
      list[i] = { revision = id, message = rev.message, file = rev.file }
    end
    return { heads = list }
  end,
  print = function(result)
    for _, h in ipairs(result.heads) do
      out("%s (head)  %s  %s", h.revision, h.message, h.file)
    end
  end,
}

-- Alembic's `show REV`: one revision as the files describe it (no database needed).
M.show = {
  usage = "show REV",
  summary = "show one revision: id, parents, children, file, message, settings",
  details = "REV: a revision id or unique prefix, or head. Reads the files only.",
  min_args = 1,
  max_args = 1,
  run = function(ctx, args)
    local id = args[1] == "head" and revisions.head(ctx.graph) or revisions.find(ctx.graph, args[1])
    local rev = ctx.graph.by_id[id]
    local children = ctx.graph.children[id] or {}
    return { revision = id, down_revision = rev.parents, children = children, head = #children == 0,
      file = rev.file, message = rev.message, transaction = rev.transaction, downgrade = rev.has_downgrade,
      lock_timeout = rev.lock_timeout, statement_timeout = rev.statement_timeout, checksum = rev.checksum }
  end,
  print = function(r)
    local kinds = {}
    kinds[#kinds + 1] = r.head and "head" or nil
    kinds[#kinds + 1] = #r.down_revision == 0 and "base" or nil
    kinds[#kinds + 1] = #r.down_revision > 1 and "merge" or nil
    kinds[#kinds + 1] = #r.children > 1 and "branch point" or nil
    local function list(ids)
      return #ids > 0 and table.concat(ids, ", ") or "none"
    end
    local function duration(ms_text)
      return ms_text and config.format_duration(config.duration(ms_text)) or "the configured one"
    end
    out("revision:          %s%s", r.revision, #kinds > 0 and (" (" .. table.concat(kinds, ", ") .. ")") or "")
    out("parents:           %s", list(r.down_revision))
    out("children:          %s", list(r.children))
    out("file:              %s", r.file)
    out("message:           %s", r.message)
    out("transaction:       %s", r.transaction and "yes" or "no (transaction = false)")
    out("downgrade:         %s", r.downgrade and "yes" or "no")
    out("lock_timeout:      %s", duration(r.lock_timeout))
    out("statement_timeout: %s", duration(r.statement_timeout))
    out("checksum:          %s", r.checksum)
  end,
}

-- Alembic's `branches`: the revisions the graph forks at, and where each fork leads.
M.branches = {
  usage = "branches",
  summary = "show the branch points: revisions with more than one child",
  run = function(ctx)
    local heads = {}
    for _, h in ipairs(ctx.graph.heads) do
      heads[h] = true
    end
    local list = {}
    for _, rev in ipairs(ctx.graph.list) do
      local children = ctx.graph.children[rev.revision]
      if #children > 1 then
        local kids = {}
        for i, c in ipairs(children) do
          kids[i] = { revision = c, message = ctx.graph.by_id[c].message, head = heads[c] or false }
        end
        list[#list + 1] = { revision = rev.revision, message = rev.message, children = kids }
      end
    end
    return { branches = list }
  end,
  print = function(result)
    if #result.branches == 0 then
      out("no branch points: every revision has at most one child")
    end
    for _, b in ipairs(result.branches) do
      out("%s (branch point), %s", b.revision, b.message)
      for _, c in ipairs(b.children) do
        out("  -> %s%s, %s", c.revision, c.head and " (head)" or "", c.message)
      end
    end
  end,
}

M.check = {
  usage = "check [--offline] [--schema [--dev-url URL]]",
  summary = "for CI: files valid, one head, database not ahead of the files, applied files unchanged",
  details = "--schema compares the live schema with its applied revisions replayed on a dev database\n"
    .. "(RLS regressions first); with it the tracking schema comes from tide.lua's `schema`.",
  flags = {
    { "offline", nil, "check the files only; do not connect" },
    { "schema", nil, "compare the live schema with what its applied revisions give (read-only)" },
    { "dev-url", "URL", "with --schema: a server for the scratch database (else tide.lua dev_url)" },
  },
  run = function(ctx, _, flags)
    if flags.schema == true then
      return require("tide.schema_drift").check(ctx, flags)
    end
    local problems = {}
    if #ctx.graph.heads > 1 then
      problems[#problems + 1] = "multiple heads: " .. table.concat(ctx.graph.heads, ", ")
    end
    local pending = 0
    if not flags.offline then
      local conn <close> = session.connect(ctx.cfg, { setup = false })
      local applied, partial = runner.state(conn, ctx.cfg)
      for _, id in ipairs(runner.unknown(ctx.graph, applied, partial)) do
        problems[#problems + 1] = string.format("the database has revision %s, not found in %s "
          .. "(deleted or renamed file, or the database is ahead of this code)", id, ctx.graph.dir)
      end
      for _, rev in ipairs(ctx.graph.list) do
        if not applied[rev.revision] then
          pending = pending + 1
        end
      end
      -- drift with diffs, a partial revision, lint of the pending revisions
      checks.check(ctx.cfg, ctx.graph, conn, applied, partial, problems)
    else
      checks.check_offline(ctx.cfg, ctx.graph, problems) -- every revision can run
    end
    return { ok = #problems == 0, problems = problems, pending = pending, revisions = #ctx.graph.list,
      exit = #problems == 0 and 0 or errors.exit_codes.check }
  end,
  print = function(result)
    if result.schema then
      return require("tide.schema_drift").print(result)
    end
    for _, p in ipairs(result.problems) do
      out("problem: %s", p)
    end
    out("%s: %s, %d pending", result.ok and "ok" or "check failed", text.count(result.revisions, "revision"),
      result.pending)
  end,
}

M.lint = {
  usage = "lint [TARGET] [--all]",
  summary = "check the SQL of pending revisions for locks, rewrites and data loss",
  details = "Rules: " .. table.concat(lint.rule_names, ", ") .. ". A revision opts out of a rule with a reason:\n"
    .. 'allow = { destructive = "why" }. Exit 1 when something is found.',
  flags = { { "all", nil, "lint every revision in versions/, without connecting" } },
  max_args = 1,
  run = function(ctx, args, flags)
    local list, options
    if flags.all then
      list, options = ctx.graph.list, checks.lint_options(ctx.cfg)
    else
      local conn <close> = session.connect(ctx.cfg)
      local applied = runner.state(conn, ctx.cfg)
      list = revisions.plan_upgrade(ctx.graph, applied, args[1] or "head")
      options = checks.lint_options(ctx.cfg, conn)
    end
    local result = checks.lint(list, options)
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
        out("%s", checks.describe_finding(f))
      end
    end
    for _, u in ipairs(result.unrecorded) do
      out("%s", checks.describe_unrecorded(u))
    end
    local skipped = #result.unrecorded > 0 and string.format(", %d not linted (reads data)", #result.unrecorded) or ""
    out("%s: %d revision%s linted, %d problem%s%s", result.ok and "ok" or "lint failed", result.checked,
      result.checked == 1 and "" or "s", #result.problems, #result.problems == 1 and "" or "s", skipped)
  end,
}

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
local function leave_as_found(conn, cfg, graph, found, had_tracking)
  local ok, err = pcall(function()
    if next((runner.state(conn, cfg))) then
      runner.migrate(cfg, graph, "downgrade", "base", {})
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
  local d = snapshot.diff(found, snapshot.read(conn, cfg.schema))
  if #d > 0 then
    return "its schema differs from before the test (- missing, + left behind):\n  " .. table.concat(d, "\n  ")
  end
end

M.test = {
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
    local function problem(line)
      result.ok = false
      result.problems[#result.problems + 1] = line
    end
    if #graph.heads > 1 then
      problem("multiple heads: " .. table.concat(graph.heads, ", "))
    end
    local linted = checks.lint(graph.list, checks.lint_options(cfg))
    local behaviour = rlscheck.load(cfg, graph) -- tests/*.lua: behaviour checks after a revision
    for _, f in ipairs(linted.problems) do
      problem(checks.describe_finding(f))
    end
    local conn <close> = session.connect(cfg)
    local applied, partial = runner.state(conn, cfg)
    if next(applied) or next(partial) then
      errors.raise("usage", "tide test needs a scratch database with no tide revisions applied; "
        .. cfg.url_source .. " has some (this is not a throwaway database? `tide downgrade base` empties a "
        .. "scratch database an interrupted test left behind)")
    end
    local had_tracking = track.exists(conn, cfg.schema)
    local found = snapshot.read(conn, cfg.schema)
    local level = log.level
    log.level = math.min(level, log.level >= 2 and 2 or 0)
    local ok, err = pcall(function()
      local before = found
      for _, rev in ipairs(graph.list) do
        local entry = { revision = rev.revision, file = rev.file }
        result.revisions[#result.revisions + 1] = entry
        if not round_trip_step(entry, problem, "upgrade", function()
          runner.migrate(cfg, graph, "upgrade", rev.revision, {})
        end) then
          return
        end
        local after = snapshot.read(conn, cfg.schema)
        rlscheck.run(conn, cfg, behaviour, rev, "after upgrade", entry, problem)
        if not rev.has_downgrade then
          entry.outcome = "no downgrade"
          problem(string.format("revision %s (%s) has no downgrade function", rev.revision, rev.file))
          before = after
        else
          if not round_trip_step(entry, problem, "downgrade", function()
            runner.migrate(cfg, graph, "downgrade", "-1", {})
          end) then
            return
          end
          local reverted = snapshot.read(conn, cfg.schema)
          local d = snapshot.diff(before, reverted)
          if #d > 0 then
            entry.outcome = "downgrade leaves a trace"
            entry.difference = d
            problem(string.format("revision %s (%s): the downgrade does not restore the schema before the upgrade "
              .. "(- missing, + left behind):\n  %s", rev.revision, rev.file, table.concat(d, "\n  ")))
            return
          end
          if not round_trip_step(entry, problem, "second upgrade", function()
            runner.migrate(cfg, graph, "upgrade", rev.revision, {})
          end) then
            return
          end
          local again = snapshot.read(conn, cfg.schema)
          rlscheck.run(conn, cfg, behaviour, rev, "after downgrade and upgrade", entry, problem)
          d = snapshot.diff(after, again)
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
      not_restored = leave_as_found(conn, cfg, graph, found, had_tracking)
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

return M
