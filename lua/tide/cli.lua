-- tide.cli: the `tide` command line: verbs (Alembic's words), flags, exit codes, and human or
-- --json output. main(args) returns the process's exit code; nothing below it calls os.exit.
local config = require "tide.config"
local core = require "tide.core"
local errors = require "tide.errors"
local json = require "tide.json"
local log = require "tide.log"
local revisions = require "tide.revisions"
local text = require "tide.text"

local M = {}

-- Global flags work before or after the command word.
local GLOBAL_FLAGS = {
  { "url", "URL", "database to migrate (else DATABASE_URL, tide.lua `url`, then libpq's PG* variables)" },
  { "C", "DIR", "run as if tide was started in DIR (where tide.lua and versions/ are)" },
  { "versions", "DIR", "folder of revision files (default: versions/ beside tide.lua)" },
  { "schema", "NAME", "schema of tide's tracking tables (default: tide)" },
  { "lock-wait", "DURATION", "wait at most this long for another tide's lock, e.g. 30s (default: 60s)" },
  { "lock-timeout", "DURATION", "lock_timeout for each revision's statements, e.g. 2s (default: 5s)" },
  { "lock-retries", "N", "retry a revision that hit lock_timeout up to N times, with backoff (default: 3)" },
  { "json", nil, "print the result as JSON on stdout" },
  { "version", nil, "print tide's version" },
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


-- The id of a new revision: --rev-id, checked as the loader would and kept clear of target
-- words, or a generated one (revisions.new_id: time and randomness, no collisions across branches).
local function new_id(ctx, flags)
  local id = flags["rev-id"]
  if not id then
    return revisions.new_id(ctx.graph)
  end
  if not id:match("^[%w_.-]+$") or #id > 64 then
    errors.raise("usage", string.format("--rev-id %q: use up to 64 letters, digits, '.', '_' and '-'", id:sub(1, 64)))
  end
  if id == "head" or id == "heads" or id == "base" or id:match("^[-+]%d+$") then
    errors.raise("usage", string.format("--rev-id %s: that is a target word (head, heads, base, +N, -N); choose "
      .. "an id that names only this revision", id))
  end
  return id
end

local REV_ID_FLAG = { "rev-id", "ID", "the revision's id instead of a generated one (letters, digits, '.', '_', '-')" }

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

local function write_revision(ctx, id, parents, message, body)
  local slug = text.slug(message)
  local name = string.format("%s_%s.lua", id, slug ~= "" and slug or "revision")
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
  f:write(body or string.format(TEMPLATE, (message:gsub("[\r\n]+", " ")), id, down, message))
  f:close()
  return path
end

-- Commands ----------------------------------------------------------------------------------

local MIGRATE_FLAGS = {
  { "single-transaction", nil, "run every revision in one transaction: all or nothing" },
  { "sql", nil, "print the SQL script the run would send (tide's bookkeeping marked); change nothing" },
  { "dry-run", nil, "run the revisions in one transaction, report, and roll back" },
  { "allow-drift", nil, "run even if an applied revision's file changed since it was applied" },
  { "mark-unknown", nil, "with --sql: mark where a revision's SQL depends on db:query, instead of refusing" },
  { "embed-sources", nil, "with --sql: store each revision's source in the script's bookkeeping, as a run does" },
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
    for _, name in ipairs { "mark-unknown", "embed-sources" } do
      if flags[name] and not flags.sql then
        errors.raise("usage", string.format("--%s only applies to a script: add --sql", name))
      end
    end
    if flags.sql then
      return require("tide.safety").sql_script(ctx, direction, target,
        { mark_unknown = flags["mark-unknown"], embed_sources = flags["embed-sources"] })
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
  local reached = #result.reached > 0 and table.concat(result.reached, ", ") or "base (no revision applied)"
  out("%s %d revision%s in %.0f ms: %s; the database is now at %s%s", result.direction == "upgrade" and "applied"
    or "reverted", #result.revisions, #result.revisions == 1 and "" or "s", total, table.concat(ids, ", "), reached,
    result.at_head and #result.reached > 0 and " (head)" or "")
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
})

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
})

command("history", {
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

-- Alembic's `show REV`: one revision as the files describe it (no database needed).
command("show", {
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
})

-- Alembic's `branches`: the revisions the graph forks at, and where each fork leads.
command("branches", {
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
})

local NEW = {
  summary = "write a new revision file in versions/, its parent the single head",
  details = "The file is versions/ID_slug.lua. ID is the UTC time and four random hex digits\n"
    .. "(20261124T101834-3f2a), so revisions written on two branches never share an id; --rev-id chooses it.\n"
    .. "--autogenerate writes the changes from head to TARGET (see `tide diff`) instead of a template.",
  flags = { { "message", "MESSAGE", "the revision's message (instead of the argument)", "m" }, REV_ID_FLAG,
    table.unpack(require("tide.authoring").new_flags) },
  creates_versions = true,
  max_args = 1,
  run = function(ctx, args, flags)
    local message = flags.message or args[1]
    if not message or (flags.message and args[1]) then
      errors.raise("usage", string.format('usage: tide %s: give the message once, as "MESSAGE" or -m "MESSAGE"',
        ctx.command.usage))
    end
    local parents = {}
    if #ctx.graph.list > 0 then
      parents = { revisions.head(ctx.graph) }
    end
    local id = new_id(ctx, flags)
    local body, generated
    if flags.autogenerate then
      body, generated = require("tide.authoring").autogenerate(ctx, id, parents, message, flags)
      if not body then
        return { unchanged = true }
      end
    end
    local file = write_revision(ctx, id, parents, message, body)
    local lint = generated and require("tide.authoring").after_write(file, generated)
    return { revision = id, down_revision = parents, file = file, lint = lint and lint.findings }
  end,
  print = function(result)
    if result.unchanged then
      out("no changes: nothing written")
      return
    end
    out("created %s (revision %s)", result.file, result.revision)
  end,
}

command("new", setmetatable({ usage = 'new "MESSAGE" [--rev-id ID] [--autogenerate [--to TARGET]]' },
  { __index = NEW }))

-- Alembic's word for it: `alembic revision -m "add users"`.
command("revision", setmetatable({ usage = 'revision -m "MESSAGE" [--rev-id ID]',
  summary = "the same as `new` (Alembic's `revision -m`)" }, { __index = NEW }))

command("merge", {
  usage = 'merge [-m "MESSAGE"] [--rev-id ID] [heads]',
  summary = "write a merge revision whose parents are the current heads",
  details = "It always joins every head; `heads` may be written, as in Alembic's `merge -m \"x\" heads`.",
  flags = { { "message", "MESSAGE", "the merge revision's message", "m" }, REV_ID_FLAG },
  max_args = 1,
  run = function(ctx, args, flags)
    if args[1] and args[1] ~= "heads" then
      errors.raise("usage", string.format("tide merge joins every head: write `heads` or nothing, not %q",
        args[1]:sub(1, 64)))
    end
    if #ctx.graph.heads < 2 then
      errors.raise("usage", "nothing to merge: there is only one head")
    end
    local id = new_id(ctx, flags)
    local message = flags.message or ("merge " .. table.concat(ctx.graph.heads, " and "))
    return { revision = id, down_revision = ctx.graph.heads,
      file = write_revision(ctx, id, ctx.graph.heads, message) }
  end,
  print = function(result)
    out("created %s (revision %s, merging %s)", result.file, result.revision, table.concat(result.down_revision, ", "))
  end,
})

-- What `tide init` writes: every key optional, the defaults shown, nothing that changes them.
local TIDE_LUA_TEMPLATE = [[
-- tide.lua: this project's tide settings. Every key is optional; unknown keys are an error.
-- The database: --url, else DATABASE_URL, else `url` below, else libpq's PG* variables.
return {
  -- url = os.getenv("APP_DATABASE_URL"),
  versions = %q,                  -- the folder of revision files, relative to this file
  -- schema = "tide",                     -- schema of tide's tracking tables
  -- search_path = "public",              -- set before any revision runs
  -- lock_wait = "60s",                   -- how long to wait for another tide's lock
  -- lock_timeout = "5s",                 -- each revision's lock_timeout (a bare number is seconds)
  -- statement_timeout = 0,               -- each revision's statement_timeout (0: off)
  -- backup = {                           -- a verified backup before every run that changes something
  --   to = "file:///var/backups/app/",   -- or s3://bucket/prefix/ or https://host/path/
  --   keep = 14,                         -- complete backups to keep
  -- },
}
]]

local function exists(path)
  local f = io.open(path, "r")
  if f then
    f:close()
  end
  return f ~= nil
end

-- Alembic's `init`: a project to start from. Nothing that exists is touched.
command("init", {
  usage = "init",
  summary = "start a project: a commented tide.lua and an empty versions/ folder (keeps what exists)",
  details = "With -C DIR, in DIR; with --versions DIR, that folder instead of versions/.",
  no_project = true,
  run = function(_, _, flags)
    local dir = flags.C or "."
    if not core.isdir(dir) then
      errors.raise("usage", string.format("-C %s: no such directory", dir))
    end
    local result = { created = {}, kept = {} }
    local file = config.join(dir, "tide.lua")
    local versions = flags.versions or "versions"
    if exists(file) then
      result.kept[#result.kept + 1] = file
      versions = config.load({ dir = dir, versions = flags.versions }).versions_dir
    else
      local f, why = io.open(file, "w")
      if not f then
        errors.raise("usage", "cannot create " .. why)
      end
      f:write(string.format(TIDE_LUA_TEMPLATE, versions))
      f:close()
      result.created[#result.created + 1] = file
      versions = config.join(dir, versions)
    end
    if core.isdir(versions) then
      result.kept[#result.kept + 1] = versions .. "/"
    else
      local made, why = pcall(core.mkdir, versions)
      if not made then
        errors.raise("usage", "cannot create the versions folder " .. tostring(why))
      end
      result.created[#result.created + 1] = versions .. "/"
    end
    -- the revision cache is this machine's, never the repository's
    local ignore = config.join(versions, ".gitignore")
    if not exists(ignore) then
      local f = io.open(ignore, "w")
      if f then
        f:write(".tide-cache*\n")
        f:close()
        result.created[#result.created + 1] = ignore
      end
    end
    return result
  end,
  print = function(result)
    for _, f in ipairs(result.created) do
      out("created %s", f)
    end
    for _, f in ipairs(result.kept) do
      out("kept %s (it exists)", f)
    end
    out('next: tide new "first revision", then tide upgrade')
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
    else
      require("tide.safety").check_offline(ctx, problems) -- every revision can run
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
for _, name in ipairs { "tide.backup", "tide.safety", "tide.authoring" } do
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

-- "--url, -C, --versions ...": the global flags by name, for a command's help, in lines of
-- at most about 100 characters.
local function global_names()
  local lines, line = {}, "global flags: see `tide --help` ("
  for i, f in ipairs(GLOBAL_FLAGS) do
    local name = (#f[1] == 1 and "-" or "--") .. f[1] .. (i < #GLOBAL_FLAGS and ", " or ").")
    if #line + #name > 100 then
      lines[#lines + 1] = line:gsub("%s+$", "")
      line = "  "
    end
    line = line .. name
  end
  lines[#lines + 1] = line
  return table.concat(lines, "\n")
end

-- A command's help shows its own flags; the global ones are named and explained by `tide --help`.
local function help(cmd)
  if cmd then
    out("usage: tide %s [flags]\n\n%s.%s", cmd.usage, cmd.summary, cmd.details and ("\n" .. cmd.details) or "")
    if cmd.flags and #cmd.flags > 0 then
      out("\nflags:\n%s", flag_help(cmd.flags))
    end
    out("\n%s", global_names())
    return
  end
  out("usage: tide COMMAND [ARGS] [flags]\n\ntide runs PostgreSQL schema migrations written in Lua.\n\ncommands:")
  for _, name in ipairs(command_order) do
    out("  %-12s %s", name, commands[name].summary)
  end
  out("\nglobal flags (before or after the command):\n%s", flag_help(GLOBAL_FLAGS))
  out("\n`tide help COMMAND` or `tide COMMAND --help` shows a command's own flags. Exit codes: see README.md.")
end

command("help", {
  usage = "help [COMMAND]",
  summary = "show this help, or a command's",
  no_project = true,
  max_args = 1,
  run = function(_, args)
    local name = args[1]
    if name and not commands[name] then
      errors.raise("usage", string.format("unknown command `%s`%s; see `tide --help`", name,
        errors.did_you_mean(name, command_order)))
    end
    return { command = name }
  end,
  print = function(result)
    help(result.command and commands[result.command])
  end,
})

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
    if flags.version and not flags.help then
      cmd, positional = commands.version, {}
    end
    if flags.help or not cmd then
      help(cmd)
      return cmd == nil and not flags.help and errors.exit_codes.usage or 0
    end
    if (cmd.min_args and #positional < cmd.min_args) or #positional > (cmd.max_args or 0) then
      errors.raise("usage", "usage: tide " .. cmd.usage)
    end
    local ctx = { command = cmd }
    if not cmd.no_project then
      ctx.cfg = config.load {
        dir = flags.C,
        versions = flags.versions,
        url = flags.url,
        schema = flags.schema ~= true and flags.schema or nil, -- `check --schema` is a flag of its own
        lock_wait = flags["lock-wait"],
        lock_timeout = flags["lock-timeout"],
        lock_retries = flags["lock-retries"] and (tonumber(flags["lock-retries"])
          or errors.raise("usage", "--lock-retries needs a whole number")),
      }
      if cmd.creates_versions and not core.isdir(ctx.cfg.versions_dir) then
        local made, why = pcall(core.mkdir, ctx.cfg.versions_dir)
        if not made then
          errors.raise("usage", "cannot create the versions folder " .. tostring(why))
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
