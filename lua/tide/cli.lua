-- tide.cli: the `tide` command line: verbs (Alembic's words), flags, exit codes, and human or
-- --json output. main(args) returns the process's exit code; nothing below it calls os.exit.
local config = require "tide.config"
local core = require "tide.core"
local errors = require "tide.errors"
local json = require "tide.json"
local log = require "tide.log"
local revisions = require "tide.revisions"

local M = {}

-- Global flags work before or after the command word.
local GLOBAL_FLAGS = {
  { "url", "URL", "database to migrate (else DATABASE_URL, tide.lua `url`, then libpq's PG* variables)" },
  { "C", "DIR", "run as if tide was started in DIR (where tide.lua and versions/ are)" },
  { "versions", "DIR", "folder of revision files (default: versions/ beside tide.lua)" },
  { "schema", "NAME", "schema of tide's tracking tables (default: tide)" },
  { "lock-wait", "SECONDS", "wait at most this long for another tide's lock (default: 60)" },
  { "lock-timeout", "DURATION", "lock_timeout for each revision's statements, e.g. 2s (default: 5s)" },
  { "lock-retries", "N", "retry a revision that hit lock_timeout up to N times, with backoff (default: 3)" },
  { "json", nil, "print the result as JSON on stdout" },
  { "quiet", nil, "print only errors on stderr", "q" },
  { "verbose", nil, "print more on stderr", "v" },
  { "help", nil, "show help", "h" },
}

local commands = {}
local command_order = {}

local function command(name, spec)
  spec.name = name
  commands[name] = spec
  command_order[#command_order + 1] = name
end

-- Helpers shared by the commands ------------------------------------------------------------

local function out(fmt, ...)
  io.stdout:write(select("#", ...) > 0 and string.format(fmt, ...) or fmt, "\n")
end

-- For the commands that only read tide's tables (status, current, history, check).
local function connect(ctx)
  return require("tide.runner").connect(ctx.cfg, { session = false })
end

local function ids_of(list)
  local ids = {}
  for i, rev in ipairs(list) do
    ids[i] = rev.revision
  end
  return ids
end

-- The applied revisions with no applied children: what Alembic calls the current revision(s).
local function current_of(graph, applied)
  local current = {}
  for id in pairs(applied) do
    local covered = false
    for _, child in ipairs(graph.children[id] or {}) do
      if applied[child] then
        covered = true
      end
    end
    if not covered then
      current[#current + 1] = id
    end
  end
  table.sort(current, function(a, b)
    return (graph.index[a] or math.maxinteger) < (graph.index[b] or math.maxinteger)
  end)
  return current
end

local function slug(message)
  local s = message:lower():gsub("[^%w]+", "_"):gsub("^_+", ""):gsub("_+$", "")
  return s:sub(1, 40):gsub("_+$", "")
end

-- The next "NNN" after the highest numbered file in versions/.
local function next_number(graph)
  local top = 0
  for _, rev in ipairs(graph.list) do
    local n = tonumber(rev.file:match("([%d]+)[^/]*%.lua$") or "")
    if n and n > top then
      top = n
    end
  end
  return string.format("%03d", top + 1)
end

local TEMPLATE = [[
-- %s
return {
  revision = %q,
  down_revision = %s,
  message = %q,

  upgrade = function(db)
    -- local schema = require "tide.schema"
    -- schema.create_table(db, "example", { ... })
    db:exec("SELECT 1")
  end,

  downgrade = function(db)
    db:exec("SELECT 1")
  end,
}
]]

local function write_revision(ctx, id, parents, message)
  local name = string.format("%s_%s.lua", id, slug(message) ~= "" and slug(message) or "revision")
  local path = config.join(ctx.cfg.versions_dir, name)
  if ctx.graph.by_id[id] then
    errors.raise("usage", string.format("revision %q already exists (%s)", id, ctx.graph.by_id[id].file))
  end
  local down = "nil"
  if #parents == 1 then
    down = string.format("%q", parents[1])
  elseif #parents > 1 then
    local quoted = {}
    for i, p in ipairs(parents) do
      quoted[i] = string.format("%q", p)
    end
    down = "{ " .. table.concat(quoted, ", ") .. " }"
  end
  local existing = io.open(path, "r")
  if existing then
    existing:close()
    errors.raise("usage", "cannot create " .. path .. ": the file exists")
  end
  local f, why = io.open(path, "w")
  if not f then
    errors.raise("usage", "cannot create " .. why)
  end
  -- the header is a one-line comment: a message's later lines would turn into code
  f:write(string.format(TEMPLATE, (message:gsub("[\r\n]+", " ")), id, down, message))
  f:close()
  return path
end

-- Commands ----------------------------------------------------------------------------------

local MIGRATE_FLAGS = {
  { "single-transaction", nil, "run every revision in one transaction: all or nothing" },
  { "sql", nil, "print the SQL script the run would send (tide's bookkeeping marked); change nothing" },
  { "dry-run", nil, "run the revisions in one transaction, report, and roll back" },
  { "allow-drift", nil, "run even if an applied revision's file changed since it was applied" },
}
for _, f in ipairs(require("tide.backup").migrate_flags) do -- --backup-to URL, --no-backup
  MIGRATE_FLAGS[#MIGRATE_FLAGS + 1] = f
end

local function migrate(direction)
  return function(ctx, args, flags)
    local target = args[1] or (direction == "upgrade" and "head")
    if not target then
      errors.raise("usage", "downgrade needs a TARGET: a revision, -N or base")
    end
    revisions.check_target(ctx.graph, direction, target)
    if flags.sql then
      return require("tide.safety").sql_script(ctx, direction, target)
    end
    ctx.before_migrate = require("tide.backup").hook(ctx, flags) -- after the lock, before any DDL
    return require("tide.runner").migrate(ctx, direction, target, {
      single_transaction = flags["single-transaction"],
      dry_run = flags["dry-run"],
      allow_drift = flags["allow-drift"],
    })
  end
end

local function print_migrate(result)
  if require("tide.safety").print_migrate(result) then
    return
  end
  if result.nothing_to_do then
    out("nothing to do: no revision to %s for target %s", result.direction, result.target)
    return
  end
  local total = 0
  for _, r in ipairs(result.revisions) do
    total = total + r.duration_ms
  end
  local ids = ids_of(result.revisions)
  if #ids > 10 then -- the first and the last few; --json and history --applied have them all
    ids = { ids[1], ids[2], ids[3], "...", ids[#ids - 2], ids[#ids - 1], ids[#ids] }
  end
  out("%s %d revision%s to %s in %.0f ms: %s", result.direction == "upgrade" and "applied" or "reverted",
    #result.revisions, #result.revisions == 1 and "" or "s", result.target, total, table.concat(ids, ", "))
end

command("upgrade", {
  usage = "upgrade [TARGET]",
  summary = "apply pending revisions up to TARGET (default: head)",
  details = "TARGET: head, heads, a revision id or unique prefix, or +N (the next N pending revisions).",
  flags = MIGRATE_FLAGS,
  max_args = 1,
  run = migrate("upgrade"),
  print = print_migrate,
})

command("downgrade", {
  usage = "downgrade TARGET",
  summary = "revert applied revisions down to TARGET",
  details = "TARGET: a revision id or unique prefix (it stays applied), -N (revert the last N), or base (revert all).",
  flags = MIGRATE_FLAGS,
  min_args = 1,
  max_args = 1,
  run = migrate("downgrade"),
  print = print_migrate,
})

command("current", {
  usage = "current",
  summary = "show the revision(s) the database is at",
  run = function(ctx)
    local conn <close> = connect(ctx)
    local applied = require("tide.runner").state(conn, ctx.cfg)
    local current = current_of(ctx.graph, applied)
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
})

local STATUS_MARKS = { applied = "[x]", pending = "[ ]", unknown = "[?]", partial = "[~]" }

command("status", {
  usage = "status",
  summary = "list every revision, applied or pending, with its message",
  run = function(ctx)
    local conn <close> = connect(ctx)
    local runner = require "tide.runner"
    local applied, partial = runner.state(conn, ctx.cfg)
    local status_of = next(partial) and require("tide.safety").status_of or function() end
    local list, pending = {}, 0
    for _, rev in ipairs(ctx.graph.list) do
      local row = applied[rev.revision]
      local partial_state, partial_text = status_of(partial, rev.revision)
      list[#list + 1] = {
        revision = rev.revision,
        message = rev.message,
        file = rev.file,
        state = row and "applied" or partial_state or "pending",
        partial = partial_text,
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
      database = config.redact(ctx.cfg.url ~= "" and ctx.cfg.url or "(PG* environment)") }
  end,
  -- One line per revision, written at once: a project of thousands prints thousands of lines.
  print = function(result)
    local lines = { "database: " .. result.database }
    for _, r in ipairs(result.revisions) do
      local changed = r.changed and "  (file changed since)" or ""
      if r.state == "applied" then
        lines[#lines + 1] = string.format("[x] %-12s %-40s applied %s by %s%s", r.revision, r.message, r.applied_at,
          r.applied_by, changed)
      else
        local extra = r.state == "pending" and "pending" or r.partial or "applied, but not in versions/"
        lines[#lines + 1] = string.format("%s %-12s %-40s %s%s", STATUS_MARKS[r.state], r.revision, r.message, extra,
          changed)
      end
    end
    lines[#lines + 1] = string.format("%d pending; head%s: %s", result.pending, #result.heads == 1 and "" or "s",
      table.concat(result.heads, ", "))
    out(table.concat(lines, "\n"))
  end,
})

command("history", {
  usage = "history [--applied] [--limit N]",
  summary = "show the revision graph from the files, or with --applied what ran on the database",
  flags = {
    { "applied", nil, "show the database's history table (every upgrade, downgrade, stamp, failure)" },
    { "limit", "N", "with --applied: at most N rows, newest first (default: 50)" },
  },
  run = function(ctx, _, flags)
    if flags.applied then
      local limit = math.tointeger(tonumber(flags.limit or "50"))
      if not limit or limit < 1 then
        errors.raise("usage", string.format("--limit %s: give a whole number of 1 or more", errors.cut(flags.limit)))
      end
      local conn <close> = connect(ctx)
      if not require("tide.track").exists(conn, ctx.cfg.schema) then
        return { applied = {} }
      end
      return { applied = require("tide.track").history(conn, ctx.cfg.schema, limit) }
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
      for _, h in ipairs(result.applied) do
        local revision = h.revision ~= core.null and h.revision or "-"
        out("%s  %-9s %-8s %-7s %s  %s@%s as %s%s", h.started_at, h.direction, revision,
          h.outcome, string.format("%.0f ms", h.duration_ms), h.os_user, h.host, h.db_user,
          h.error ~= core.null and ("  " .. errors.cut(h.error:match("[^\n]*"))) or "")
      end
      return
    end
    for _, r in ipairs(result.revisions) do
      local parents = #r.down_revision > 0 and table.concat(r.down_revision, ", ") or "<base>"
      out("%s -> %s%s, %s", parents, r.revision, r.head and " (head)" or "", r.message)
    end
  end,
})

command("heads", {
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
})

command("new", {
  usage = 'new "MESSAGE"',
  summary = "write the next versions/NNN_slug.lua, its parent the single head",
  creates_versions = true,
  min_args = 1,
  max_args = 1,
  run = function(ctx, args)
    local parents = {}
    if #ctx.graph.list > 0 then
      parents = { revisions.head(ctx.graph) }
    end
    local id = next_number(ctx.graph)
    return { revision = id, down_revision = parents, file = write_revision(ctx, id, parents, args[1]) }
  end,
  print = function(result)
    out("created %s (revision %s)", result.file, result.revision)
  end,
})

command("merge", {
  usage = 'merge [-m "MESSAGE"]',
  summary = "write a merge revision whose parents are the current heads",
  flags = { { "message", "MESSAGE", "the merge revision's message", "m" } },
  run = function(ctx, _, flags)
    if #ctx.graph.heads < 2 then
      errors.raise("usage", "nothing to merge: there is only one head")
    end
    local id = next_number(ctx.graph)
    local message = flags.message or ("merge " .. table.concat(ctx.graph.heads, " and "))
    return { revision = id, down_revision = ctx.graph.heads,
      file = write_revision(ctx, id, ctx.graph.heads, message) }
  end,
  print = function(result)
    out("created %s (revision %s, merging %s)", result.file, result.revision, table.concat(result.down_revision, ", "))
  end,
})

command("stamp", {
  usage = "stamp TARGET",
  summary = "record TARGET and its ancestors as applied without running them (adopt an existing database)",
  details = "TARGET: head, heads, a revision, or base (forget every revision).",
  min_args = 1,
  max_args = 1,
  run = function(ctx, args)
    revisions.stamp_set(ctx.graph, args[1])
    return require("tide.runner").stamp(ctx, args[1])
  end,
  print = function(result)
    out("stamped %s: recorded %s; forgot %s", result.target,
      #result.stamped > 0 and table.concat(result.stamped, ", ") or "nothing",
      #result.unstamped > 0 and table.concat(result.unstamped, ", ") or "nothing")
  end,
})

command("check", {
  usage = "check [--offline]",
  summary = "for CI: files valid, one head, database not ahead of the files, applied files unchanged",
  flags = { { "offline", nil, "check the files only; do not connect" } },
  run = function(ctx, _, flags)
    local problems = {}
    if #ctx.graph.heads > 1 then
      problems[#problems + 1] = "multiple heads: " .. table.concat(ctx.graph.heads, ", ")
    end
    local pending = 0
    if not flags.offline then
      local conn <close> = connect(ctx)
      local runner = require "tide.runner"
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
      require("tide.safety").check(ctx, conn, applied, partial, problems)
    end
    return { ok = #problems == 0, problems = problems, pending = pending, revisions = #ctx.graph.list,
      exit = #problems == 0 and 0 or errors.exit_codes.check }
  end,
  print = function(result)
    for _, p in ipairs(result.problems) do
      out("problem: %s", p)
    end
    out("%s: %d revisions, %d pending", result.ok and "ok" or "check failed", result.revisions, result.pending)
  end,
})

command("version", {
  usage = "version",
  summary = "print tide's version",
  no_project = true,
  run = function()
    return { version = core.version }
  end,
  print = function(result)
    out("tide %s", result.version)
  end,
})

-- Commands of other modules (backup, restore, ...) join the table when those modules exist.
for _, name in ipairs { "tide.backup", "tide.safety" } do
  local ok, mod = pcall(require, name)
  if ok and type(mod) == "table" and mod.commands then
    for _, spec in ipairs(mod.commands) do
      command(spec.name, spec)
    end
  elseif not ok and not tostring(mod):find("module '" .. name .. "' not found", 1, true) then
    error(mod, 0)
  end
end

-- Argument parsing --------------------------------------------------------------------------

local function flag_table(list, into)
  for _, f in ipairs(list or {}) do
    into["--" .. f[1]] = f
    if #f[1] == 1 then
      into["-" .. f[1]] = f
    end
    if f[4] then
      into["-" .. f[4]] = f
    end
  end
  return into
end

local function flag_names(known)
  local names = {}
  for k in pairs(known) do
    names[#names + 1] = k
  end
  return names
end

local function parse(args)
  local globals = flag_table(GLOBAL_FLAGS, {})
  -- The command word is the first argument that is neither a global flag nor its value.
  local name
  do
    local i = 1
    while i <= #args do
      local a = args[i]
      if a == "--" then
        name = args[i + 1]
        break
      end
      local f = globals[a:match("^[^=]*")]
      if f then
        i = i + ((f[2] and not a:find("=", 1, true)) and 2 or 1)
      elseif a:sub(1, 1) == "-" and #a > 1 then
        i = i + 1
      else
        name = a
        break
      end
    end
  end
  local cmd = name and commands[name]
  if name and not cmd then
    errors.raise("usage", string.format("unknown command `%s`%s; see `tide --help`", errors.cut(name),
      errors.did_you_mean(name, command_order)))
  end
  local known = flag_table(cmd and cmd.flags, flag_table(GLOBAL_FLAGS, {}))
  local flags, positional, seen_name, only_args = {}, {}, false, false
  local i = 1
  while i <= #args do
    local a = args[i]
    if only_args or a:sub(1, 1) ~= "-" or a == "-" or a:match("^[-+]%d+$") then
      if not seen_name and a == name then
        seen_name = true
      else
        positional[#positional + 1] = a
      end
    elseif a == "--" then
      only_args = true
    else
      local key, value = a:match("^([^=]*)=(.*)$")
      key = key or a
      local f = known[key]
      if not f then
        errors.raise("usage", string.format("unknown flag `%s`%s%s", errors.cut(key),
          cmd and (" for `tide " .. cmd.name .. "`") or "", errors.did_you_mean(key, flag_names(known))))
      end
      if f[2] then
        if not value then
          i = i + 1
          value = args[i]
          if value == nil then
            errors.raise("usage", string.format("flag `%s` needs a value (%s)", key, f[2]))
          end
        end
        flags[f[1]] = value
      elseif value then
        errors.raise("usage", string.format("flag `%s` takes no value", errors.cut(key)))
      else
        flags[f[1]] = true
      end
    end
    i = i + 1
  end
  return cmd, positional, flags
end

local function flag_help(list)
  local lines = {}
  for _, f in ipairs(list or {}) do
    local names = (#f[1] == 1 and "-" or "--") .. f[1] .. (f[4] and (", -" .. f[4]) or "")
    lines[#lines + 1] = string.format("  %-26s %s", names .. (f[2] and (" " .. f[2]) or ""), f[3])
  end
  return table.concat(lines, "\n")
end

local function help(cmd)
  if cmd then
    out("usage: tide %s [global flags]\n\n%s.%s", cmd.usage, cmd.summary, cmd.details and ("\n" .. cmd.details) or "")
    if cmd.flags and #cmd.flags > 0 then
      out("\nflags:\n%s", flag_help(cmd.flags))
    end
    out("\nglobal flags:\n%s", flag_help(GLOBAL_FLAGS))
    return
  end
  out("usage: tide COMMAND [ARGS] [flags]\n\ntide runs PostgreSQL schema migrations written in Lua.\n\ncommands:")
  for _, name in ipairs(command_order) do
    out("  %-12s %s", name, commands[name].summary)
  end
  out("\nglobal flags (before or after the command):\n%s", flag_help(GLOBAL_FLAGS))
  out("\n`tide COMMAND --help` shows a command's own flags. Exit codes: see README.md.")
end

-- main ----------------------------------------------------------------------------------------

local function report(err, as_json)
  local kind = errors.is_error(err) and err.kind or "internal"
  local code = errors.exit_codes[kind] or errors.exit_codes.internal
  local message = errors.is_error(err) and tostring(err.message) or tostring(err)
  if kind == "internal" or not errors.exit_codes[kind] then
    message = "internal error: " .. tostring(err) .. (type(err) == "table" and err.traceback or "")
  elseif err.sqlstate and kind == "sql" then
    message = "database error: " .. tostring(err) .. (err.query and ("\n  statement: " .. errors.cut(err.query)) or "")
  end
  log.error("%s", message)
  if as_json then
    out(json.encode { error = { kind = kind, message = message, exit_code = code, sqlstate = err.sqlstate,
      revision = err.revision, file = err.file } })
  end
  return code
end

local function traceback(err)
  if type(err) == "table" then
    if not errors.is_error(err) then
      return err
    end
    err.traceback = err.traceback or debug.traceback("", 2)
    return err
  end
  return debug.traceback(tostring(err), 2)
end

-- The server's lock_timeout holds at most 2^31-1 ms (about 24 days).
local function lock_wait_seconds(text)
  local n = tonumber(text)
  if not n or n < 0 or n > 2147483 then
    errors.raise("usage", string.format("--lock-wait %s: give seconds between 0 and 2147483", text))
  end
  return n
end

---@param args string[]
---@return integer exit code
function M.main(args)
  -- Collect when the heap has grown by half rather than doubled: a run over thousands of
  -- revisions makes garbage in bursts (file texts, state rows), and tide's memory budget is a
  -- fixed 16 MiB while its CPU budget barely notices (tools/bench/migrate).
  collectgarbage("incremental", 150, 400)
  local as_json = false
  for _, a in ipairs(args) do
    if a == "--json" then
      as_json = true
    end
  end
  local ok, result = xpcall(function()
    local cmd, positional, flags = parse(args)
    log.level = flags.quiet and 0 or flags.verbose and 2 or 1
    if flags.help or not cmd then
      help(cmd)
      return cmd == nil and not flags.help and errors.exit_codes.usage or 0
    end
    if (cmd.min_args and #positional < cmd.min_args) or #positional > (cmd.max_args or 0) then
      errors.raise("usage", "usage: tide " .. cmd.usage)
    end
    local ctx = {}
    if not cmd.no_project then
      ctx.cfg = config.load {
        dir = flags.C,
        versions = flags.versions,
        url = flags.url,
        schema = flags.schema,
        lock_wait = flags["lock-wait"] and lock_wait_seconds(flags["lock-wait"]),
        lock_timeout = flags["lock-timeout"],
        lock_retries = flags["lock-retries"] and (tonumber(flags["lock-retries"])
          or errors.raise("usage", "--lock-retries needs a whole number")),
      }
      if cmd.creates_versions and not core.isdir(ctx.cfg.versions_dir) then
        local made, why = core.mkdir(ctx.cfg.versions_dir)
        if not made then
          errors.raise("usage", "cannot create the versions folder " .. why)
        end
      end
      ctx.graph = revisions.load(ctx.cfg.versions_dir, { cache = ctx.cfg.cache,
        limits = config.load_limits(ctx.cfg) })
      ctx.flags = flags
    end
    local res = cmd.run(ctx, positional, flags)
    if as_json then
      out(json.encode(res))
    else
      cmd.print(res)
    end
    return res.exit or 0
  end, traceback)
  if ok then
    return result
  end
  return report(result, as_json)
end

return M
