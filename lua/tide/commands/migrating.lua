-- tide.commands.migrating: the commands that change what is applied (see tide.commands):
--   upgrade, downgrade   a run (tide.runner), or with --sql the script it would send (tide.script)
--   stamp                record revisions as applied without running them
--   auto                 the start-up upgrade, when AUTO_IMPROVE_DATABASE says so
--   accept, resolve      settle drift and partially applied revisions, under the lock
local backup = require "tide.backup"
local dbmod = require "tide.db"
local drift = require "tide.drift"
local errors = require "tide.errors"
local log = require "tide.log"
local revisions = require "tide.revisions"
local runner = require "tide.runner"
local session = require "tide.session"
local text = require "tide.text"
local track = require "tide.track"

local out = text.out

local M = {}

local MIGRATE_FLAGS = {
  { "single-transaction", nil, "run every revision in one transaction: all or nothing" },
  { "sql", nil, "print the SQL script the run would send (tide's bookkeeping marked); change nothing" },
  { "dry-run", nil, "run the revisions in one transaction, report, and roll back" },
  { "allow-drift", nil, "run even if an applied revision's file changed since it was applied" },
  { "mark-unknown", nil, "with --sql: mark where a revision's SQL depends on db:query, instead of refusing" },
  { "embed-sources", nil, "with --sql: store each revision's source in the script's bookkeeping, as a run does" },
}
for _, f in ipairs(backup.migrate_flags) do -- --backup-to URL, --no-backup
  MIGRATE_FLAGS[#MIGRATE_FLAGS + 1] = f
end

local function migrate(direction)
  return function(ctx, args, flags)
    local target = args[1] or (direction == "upgrade" and "head")
    if not target then
      errors.raise("usage", "downgrade needs a TARGET: a revision, -N or base")
    end
    revisions.check_target(ctx.graph, direction, target)
    for _, name in ipairs { "mark-unknown", "embed-sources" } do
      if flags[name] and not flags.sql then
        errors.raise("usage", string.format("--%s only applies to a script: add --sql", name))
      end
    end
    if flags.sql then
      return require("tide.script").script(ctx.cfg, ctx.graph, direction, target,
        { mark_unknown = flags["mark-unknown"], embed_sources = flags["embed-sources"] })
    end
    return runner.migrate(ctx.cfg, ctx.graph, direction, target, {
      before_migrate = backup.hook(ctx.cfg, flags), -- after the lock, before any DDL
      single_transaction = flags["single-transaction"],
      dry_run = flags["dry-run"],
      allow_drift = flags["allow-drift"],
    })
  end
end

-- --dry-run: what ran, each with its time, and what a dry run cannot run.
local function print_dry_run(result)
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
    or "reverted", #ran, #ran == 1 and "" or "s", result.to or result.target, total, table.concat(ran, ", "))
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
end

local function print_migrate(result)
  if result.sql then
    io.stdout:write(result.script)
    return
  end
  if result.dry_run and not result.nothing_to_do then
    return print_dry_run(result)
  end
  if result.nothing_to_do then
    out("nothing to do: no revision to %s for target %s", result.direction, result.target)
    return
  end
  local total = 0
  local ids = {}
  for i, r in ipairs(result.revisions) do
    total = total + r.duration_ms
    ids[i] = r.revision
  end
  local count = #ids
  if count > 10 then -- the first and the last few; --json and history --applied have them all
    ids = { ids[1], ids[2], ids[3], "...", ids[count - 2], ids[count - 1], ids[count] }
  end
  local reached = #result.reached > 0 and table.concat(result.reached, ", ") or "base (no revision applied)"
  out("%s %d revision%s in %.0f ms: %s; the database is now at %s%s", result.direction == "upgrade" and "applied"
    or "reverted", count, count == 1 and "" or "s", total, table.concat(ids, ", "), reached,
    result.at_head and #result.reached > 0 and " (head)" or "")
end

M.upgrade = {
  usage = "upgrade [TARGET]",
  summary = "apply pending revisions up to TARGET (default: head)",
  details = "TARGET: head, heads, a revision id or unique prefix, or +N (the next N pending revisions).",
  flags = MIGRATE_FLAGS,
  max_args = 1,
  run = migrate("upgrade"),
  print = print_migrate,
}

M.downgrade = {
  usage = "downgrade TARGET",
  summary = "revert applied revisions down to TARGET",
  details = "TARGET: a revision id or unique prefix (it stays applied), -N (revert the last N), or base (revert all).",
  flags = MIGRATE_FLAGS,
  min_args = 1,
  max_args = 1,
  run = migrate("downgrade"),
  print = print_migrate,
}

M.stamp = {
  usage = "stamp TARGET",
  summary = "record TARGET and its ancestors as applied without running them (adopt an existing database)",
  details = "TARGET: head, heads, a revision, or base (forget every revision).",
  min_args = 1,
  max_args = 1,
  run = function(ctx, args)
    revisions.stamp_set(ctx.graph, args[1])
    return runner.stamp(ctx.cfg, ctx.graph, args[1])
  end,
  print = function(result)
    out("stamped %s: recorded %s; forgot %s", result.target,
      #result.stamped > 0 and table.concat(result.stamped, ", ") or "nothing",
      #result.unstamped > 0 and table.concat(result.unstamped, ", ") or "nothing")
  end,
}

M.auto = {
  usage = "auto",
  summary = "start-up upgrade: when AUTO_IMPROVE_DATABASE is true or 1, upgrade to head (with the backup)",
  details = "Otherwise does nothing and exits 0. Exits 8 when the database has revisions this code does not\n"
    .. "know. Never waits for the lock when nothing is pending. Logs a line as each revision and step starts.",
  flags = (function()
    local list = { { "allow-drift", nil, "upgrade even if an applied revision's file changed since" } }
    for _, f in ipairs(backup.migrate_flags) do -- --backup-to URL, --no-backup
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
    local result = runner.migrate(ctx.cfg, ctx.graph, "upgrade", "head", {
      before_migrate = backup.hook(ctx.cfg, flags), -- the configured backup, as upgrade
      allow_drift = flags["allow-drift"],
      note = "tide auto",
    })
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

-- Runs fn(conn) with the migration lock held and the tracking tables current.
local function locked(cfg, fn)
  local s <close> = session.open(cfg)
  s:lock()
  track.ensure(s.conn, cfg.schema)
  return fn(s.conn)
end

local function find_rev(ctx, word)
  local id = revisions.find(ctx.graph, word)
  return ctx.graph.by_id[id]
end

M.accept = {
  usage = "accept REV",
  summary = "record the edited file of an applied revision as the applied one (after review)",
  details = "The history keeps a row with the previous checksum. `tide check` shows the difference first.",
  min_args = 1,
  max_args = 1,
  run = function(ctx, args)
    local rev = find_rev(ctx, args[1])
    return locked(ctx.cfg, function(conn)
      local applied, partial = track.applied(conn, ctx.cfg.schema)
      local row = applied[rev.revision] or partial[rev.revision]
      if not row then
        errors.raise("usage", string.format("revision %s is not applied: nothing to accept", rev.revision))
      end
      if row.checksum == rev.checksum then
        return { revision = rev.revision, accepted = false, checksum = rev.checksum }
      end
      log.info("%s", drift.report(conn, ctx.cfg, { { rev = rev, row = row } }))
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

M.resolve = {
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
    return locked(ctx.cfg, function(conn)
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

return M
