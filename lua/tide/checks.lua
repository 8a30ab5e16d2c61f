-- tide.checks: what `tide lint`, `tide check` and `tide test` find in revisions: lint findings
-- of their recorded SQL (rules in tide.lint), revisions that cannot run, drift, and partially
-- applied revisions.
local drift = require "tide.drift"
local lint = require "tide.lint"
local log = require "tide.log"
local recording = require "tide.recording"
local revisions = require "tide.revisions"
local runner = require "tide.runner"

local M = {}

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
    local built = recording.build(rev, "upgrade", options.vars)
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

function M.describe_finding(f)
  if f.rule == "cannot_run" then
    return string.format("cannot run: revision %s (%s): %s", f.revision, f.where, f.message)
  end
  return string.format("lint %s: revision %s (%s): %s%s", f.rule, f.revision, f.file, f.message,
    f.statement and ("\n    " .. f.statement:gsub("\n", "\n    ")) or "")
end

function M.describe_unrecorded(u)
  return string.format("not linted: revision %s (%s): %s; what it sends from there on is not known without a "
    .. "database", u.revision, u.where, u.reason)
end

--- For `tide check`: drift (with diffs), a partial revision, and lint of the pending revisions
--- (a pending revision that cannot run is a problem).
function M.check(cfg, graph, conn, applied, partial, problems)
  local drifted = drift.drifted(graph, applied)
  if #drifted > 0 then
    problems[#problems + 1] = drift.report(conn, cfg, drifted)
  end
  for id, row in pairs(partial or {}) do
    problems[#problems + 1] = string.format("revision %s is %s", id, runner.describe_partial(row))
  end
  local pending = {}
  for _, rev in ipairs(graph.list) do
    if not applied[rev.revision] then
      pending[#pending + 1] = rev
    end
  end
  local result = M.lint(pending, M.lint_options(cfg, conn))
  for _, f in ipairs(result.problems) do
    problems[#problems + 1] = M.describe_finding(f)
  end
  for _, u in ipairs(result.unrecorded) do
    log.info("%s", M.describe_unrecorded(u))
  end
  return result
end

--- For `tide check --offline`: which revisions will run is not known, so every revision's
--- upgrade is built; one that cannot run is a problem.
function M.check_offline(cfg, graph, problems)
  for _, rev in ipairs(graph.list) do
    local built = recording.build(rev, "upgrade", cfg.vars)
    if built.failure then
      problems[#problems + 1] = M.describe_finding({ rule = "cannot_run", revision = rev.revision,
        where = built.failure.where, message = built.failure.message })
    end
    revisions.release(rev)
  end
end

return M
