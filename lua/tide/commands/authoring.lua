-- tide.commands.authoring: the commands that write and compare revision files and schemas
-- (see tide.commands):
--   new (revision), merge   a new revision file: a template, or with --autogenerate the changes
--                           from head to a target schema (tide.sources, tide.autogen)
--   init                    a project to start from
--   diff, dump              the changes between two schemas; a database's schema as SQL or Lua
-- The catalog model, the diff and the code generation load only when a command needs them.
local config = require "tide.config"
local core = require "tide.core"
local errors = require "tide.errors"
local log = require "tide.log"
local revisions = require "tide.revisions"
local session = require "tide.session"
local text = require "tide.text"

local out = text.out

local M = {}

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

-- `tide new --autogenerate` -----------------------------------------------------------------------

-- The flags of `new --autogenerate`.
local AUTOGENERATE_FLAGS = {
  { "autogenerate", nil, "write the changes from head to the target instead of a template" },
  { "to", "TARGET", "with --autogenerate: a URL, schema.lua or schema.sql (else tide.lua autogenerate.to)" },
  { "dev-url", "URL", "with --autogenerate: a server for scratch databases (else tide.lua dev_url)" },
  { "rename", "OLD=NEW", "with --autogenerate: a rename instead of a drop and a create (comma-separated)" },
}

local AUTOGENERATE_KEYS = { to = "string", dev_url = "string", rename = "string" }

local function autogenerate_config(cfg)
  return config.check_keys(cfg.autogenerate or {}, AUTOGENERATE_KEYS, cfg.file or "tide.lua", "autogenerate")
end

-- The text of the next revision, or nil when head already matches the target.
local function autogenerate(ctx, id, parents, message, flags)
  local sources = require "tide.sources"
  local a = autogenerate_config(ctx.cfg)
  local target = flags.to or a.to
  if not target then
    errors.raise("usage", "tide new --autogenerate needs a target: --to URL|schema.lua|schema.sql, or "
      .. "autogenerate = { to = ... } in tide.lua")
  end
  if target:match("%.lua$") or target:match("%.sql$") then
    target = config.join(ctx.cfg.dir, target)
  end
  local f = setmetatable({ ["dev-url"] = flags["dev-url"] or a.dev_url, rename = flags.rename or a.rename },
    { __index = flags })
  local from = #parents == 0 and "base" or parents[1]
  if #parents > 1 then
    from = "heads"
  end
  local r = sources.compare(ctx, from, target, f)
  if r.equal then
    log.info("no changes: the revisions at %s already give the schema of %s", from, r.to_text)
    return nil
  end
  for _, item in ipairs(sources.not_compared(r.from, r.to)) do
    log.warn("not compared: %s %s", item.kind, item.name)
  end
  return require("tide.autogen").revision { revision = id, down_revision = parents, message = message,
    source = r.to_text, up = r.up, down = r.down }, r
end

-- After the file is written: lint it like any revision and say what a reviewer should look at.
local function after_write(path, r)
  local checks = require "tide.checks"
  local rev = revisions.load_file(path)
  local result = checks.lint({ rev })
  for _, finding in ipairs(result.findings) do
    log.warn("%s", checks.describe_finding(finding))
  end
  local destructive = 0
  for _, c in ipairs(r.up) do
    destructive = destructive + (c.destructive and 1 or 0)
  end
  if destructive > 0 then
    log.warn("%s drops data in %d place%s: read it before it runs", path, destructive, destructive == 1 and "" or "s")
  end
  return result
end

local NEW = {
  summary = "write a new revision file in versions/, its parent the single head",
  details = "The file is versions/ID_slug.lua. ID is the UTC time and four random hex digits\n"
    .. "(20261124T101834-3f2a), so revisions written on two branches never share an id; --rev-id chooses it.\n"
    .. "--autogenerate writes the changes from head to TARGET (see `tide diff`) instead of a template.",
  flags = { { "message", "MESSAGE", "the revision's message (instead of the argument)", "m" }, REV_ID_FLAG,
    table.unpack(AUTOGENERATE_FLAGS) },
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
      body, generated = autogenerate(ctx, id, parents, message, flags)
      if not body then
        return { unchanged = true }
      end
    end
    local file = write_revision(ctx, id, parents, message, body)
    local lint = generated and after_write(file, generated)
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

M.new = setmetatable({ usage = 'new "MESSAGE" [--rev-id ID] [--autogenerate [--to TARGET]]' },
  { __index = NEW })

-- Alembic's word for it: `alembic revision -m "add users"`.
M.revision = setmetatable({ usage = 'revision -m "MESSAGE" [--rev-id ID]',
  summary = "the same as `new` (Alembic's `revision -m`)" }, { __index = NEW })

M.merge = {
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
}

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
M.init = {
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
}

local SOURCES = "X and Y: a database URL; head, base or a revision id (the revisions replayed on a dev database);\n"
  .. "or a desired-state file, schema.lua (a function of db written with the DSL) or schema.sql."

M.diff = {
  usage = "diff --from X --to Y [--dev-url URL] [--rename old=new,...] [--format lua|sql]",
  summary = "print the revision body (upgrade and downgrade) that turns schema X into schema Y",
  details = SOURCES .. "\nExit 0 when they are equal, 1 when they differ; --json gives the change list.",
  flags = {
    { "from", "X", "the schema to start from" },
    { "to", "Y", "the schema to reach" },
    { "dev-url", "URL", "a server for scratch databases (replays and desired-state files); else tide.lua dev_url" },
    { "rename", "OLD=NEW", "turn a drop and a create into a rename (comma-separated; never guessed)" },
    { "format", "FORMAT", "lua (the revision body, default) or sql (the upgrade as a script)" },
  },
  run = function(ctx, _, flags)
    if not flags.from or not flags.to then
      errors.raise("usage", "tide diff needs --from X and --to Y (" .. SOURCES:gsub("\n", " ") .. ")")
    end
    local format = flags.format or "lua"
    if format ~= "lua" and format ~= "sql" then
      errors.raise("usage", string.format("--format %s: use lua or sql", format))
    end
    local sources, diff, autogen = require "tide.sources", require "tide.diff", require "tide.autogen"
    local r = sources.compare(ctx, flags.from, flags.to, flags)
    return { equal = r.equal, from = r.from_text, to = r.to_text, changes = diff.plain(r.up),
      unexpressed = r.unexpressed,
      downgrade = diff.plain(r.down), not_compared = sources.not_compared(r.from, r.to),
      text = format == "sql" and autogen.script(r.up) or autogen.bodies(r.up, r.down),
      exit = r.equal and 0 or errors.exit_codes.check }
  end,
  print = function(result)
    if result.equal then
      out("-- no difference: %s and %s have the same schema", result.from, result.to)
    else
      out("-- tide diff: from %s to %s: %d change%s", result.from, result.to, #result.changes,
        #result.changes == 1 and "" or "s")
      io.stdout:write(result.text)
    end
    for _, line in ipairs(result.unexpressed) do
      out("-- differs, and tide has no change that says it: %s", line)
    end
    for _, item in ipairs(result.not_compared) do
      out("-- not compared: %s %s", item.kind, item.name)
    end
  end,
}

M.dump = {
  usage = "dump [--format sql|lua]",
  summary = "print the database's schema, the same bytes for the same schema (for review, or as schema.lua)",
  details = "sql: the statements that create it, in dependency order; lua: a desired-state schema.lua.",
  flags = { { "format", "FORMAT", "sql (default) or lua" } },
  run = function(ctx, _, flags)
    local format = flags.format or "sql"
    if format ~= "lua" and format ~= "sql" then
      errors.raise("usage", string.format("--format %s: use sql or lua", format))
    end
    local sources, diff, autogen = require "tide.sources", require "tide.diff", require "tide.autogen"
    local conn <close> = session.connect(ctx.cfg, { setup = false })
    local model = require("tide.catalog").read(conn, sources.read_opts(ctx.cfg))
    local empty = sources.empty_model(conn)
    local changes = diff.diff(empty, model)
    local source = config.redact(ctx.cfg.url ~= "" and ctx.cfg.url or "the database named by PG* variables")
      :gsub("^.*@", "")
    local body
    if format == "sql" then
      body = "-- The schema of " .. source .. ", written by `tide dump`.\n" .. autogen.script(changes)
    else
      body = autogen.schema_file(changes, source)
    end
    local items = sources.not_compared(model)
    for _, item in ipairs(items) do
      body = body .. string.format("-- not compared: %s %s\n", item.kind, item.name)
    end
    return { format = format, text = body, changes = diff.plain(changes), not_compared = items }
  end,
  print = function(result)
    io.stdout:write(result.text)
  end,
}

return M
