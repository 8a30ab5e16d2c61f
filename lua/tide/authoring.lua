-- tide.authoring: the authoring commands over the catalog model.
--
--   tide diff --from X --to Y [--dev-url URL] [--rename old=new,...] [--format lua|sql]
--   tide dump [--format sql|lua]
--   tide new "MESSAGE" --autogenerate [--to Y]        (cli.lua's `new` calls M.autogenerate)
--   tide check --schema [--dev-url URL]               (cli.lua's `check` calls tide.drift)
--
-- X and Y ("sources") are each a database URL; `head`, `base` or a revision id, replayed onto a
-- dev database; or a desired-state file, `schema.lua` (a function of db written with the DSL) or
-- `schema.sql`, applied to an empty dev database. The dev database is scratch, as Atlas's is:
-- tide creates a database of its own on the server --dev-url names and drops it afterwards; a
-- role that may not create databases gets the database the URL names instead, which must then
-- be empty, and which tide empties again afterwards.
-- cli.lua merges M.commands into its command table.
local config = require "tide.config"
local core = require "tide.core"
local errors = require "tide.errors"
local log = require "tide.log"
local revisions = require "tide.revisions"

-- The model, the diff and the code generation load when a command of this module runs, not at
-- every start of tide (which loads this module for its list of commands).
local function lazy(name)
  return setmetatable({}, { __index = function(proxy, key)
    local mod = require(name)
    setmetatable(proxy, { __index = mod })
    return mod[key]
  end })
end
local catalog = lazy "tide.catalog"
local diff = lazy "tide.diff"
local autogen = lazy "tide.autogen"

local M = {}

local function out(fmt, ...)
  io.stdout:write(select("#", ...) > 0 and string.format(fmt, ...) or fmt, "\n")
end

-- The schema unqualified names are created in: the first of search_path.
local function first_schema(search_path)
  local first = (search_path or "public"):match("^%s*([^,]+)") or "public"
  first = first:gsub("%s+$", "")
  return first:match('^"(.*)"$') or first:lower()
end

local function read_opts(cfg)
  require("tide.ddl").default_schema = first_schema(cfg.search_path)
  return { exclude_schema = cfg.schema, search_path = cfg.search_path }
end

--- Reads the model of the database at url (read-only, one snapshot).
function M.read_url(cfg, url, source)
  local c = setmetatable({ url = url, url_source = source }, { __index = cfg })
  local conn <close> = require("tide.runner").connect(c, { session = false })
  return catalog.read(conn, read_opts(cfg))
end

-- URLs --------------------------------------------------------------------------------------------

--- url with its database name replaced by `name` (URL or keyword/value form).
function M.with_dbname(url, name)
  if url:match("^postgres[%a]*://") then
    local head, rest = url:match("^([^/]*//[^/?]*)(.*)$")
    local query = rest:match("(%?.*)$") or ""
    query = query:gsub("([?&])dbname=[^&]*&?", "%1"):gsub("[?&]$", "")
    return head .. "/" .. name .. query
  end
  if url:find("dbname%s*=") then
    return (url:gsub("dbname%s*=%s*'[^']*'", "dbname=" .. name):gsub("dbname%s*=%s*[^%s']+", "dbname=" .. name))
  end
  return url .. (url == "" and "" or " ") .. "dbname=" .. name
end

local function looks_like_url(s)
  return s:match("^postgres[%a]*://") ~= nil or s:find("=", 1, true) ~= nil
end

-- The dev database ------------------------------------------------------------------------------------

local Dev = {}
Dev.__index = Dev

local function random_name()
  return "tide_dev_" .. (core.random_bytes(6):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

--- A scratch database on the server dev_url names (see the header). Close it with dev:close().
function M.dev_database(cfg, dev_url)
  if not dev_url or dev_url == "" then
    errors.raise("usage", "this needs a dev database: give --dev-url URL (a server where tide may create a "
      .. "scratch database, as Atlas's dev database) or `dev_url` in tide.lua")
  end
  local runner = require "tide.runner"
  local admin_cfg = setmetatable({ url = dev_url, url_source = "--dev-url" }, { __index = cfg })
  local admin = runner.connect(admin_cfg, { session = false })
  local name = random_name()
  local ok, err = pcall(admin.exec, admin, "CREATE DATABASE " .. name .. " TEMPLATE template0")
  local dev = setmetatable({ cfg = cfg, admin = admin }, Dev)
  if ok then
    dev.name = name
    dev.url = M.with_dbname(dev_url, name)
    log.debug("dev database %s created", name)
  elseif type(err) == "table" and err.sqlstate == "42501" then
    -- may not create databases: use the one named, if it is empty
    dev.url = dev_url
    local model = catalog.read(admin, read_opts(cfg))
    local lines = catalog.lines(model)
    local empty_lines = catalog.lines(M.empty_model(admin))
    if #lines ~= #empty_lines then
      admin:close()
      errors.raise("usage", string.format("--dev-url %s: the role may not create databases, and the database named "
        .. "is not empty (%d objects): give an empty scratch database, or a role with CREATEDB",
        config.redact(dev_url), #lines - #empty_lines))
    end
    dev.reuse = true
  else
    admin:close()
    error(err, 0)
  end
  dev.cfg = setmetatable({ url = dev.url, url_source = "--dev-url" }, { __index = cfg })
  return dev
end

-- What a new, empty database of this server reads as: its public schema, as initdb makes it.
function M.empty_model(conn)
  local m = catalog.empty()
  local version = conn:info().server_version or 150000
  m.schemas.public = { name = "public", comment = "standard public schema",
    acl = version >= 150000 and { "PUBLIC=USAGE" } or { "PUBLIC=CREATE", "PUBLIC=USAGE" } }
  return m
end

--- Empties (a reused database) or drops (a created one) the dev database.
function Dev:close()
  if self.closed then
    return
  end
  self.closed = true
  if self.name then
    local ok, err = pcall(self.admin.exec, self.admin, "DROP DATABASE IF EXISTS " .. self.name .. " WITH (FORCE)")
    if not ok then
      log.warn("could not drop the dev database %s: %s", self.name, tostring(err))
    end
  elseif self.reuse then
    local ok, err = pcall(function()
      local runner = require "tide.runner"
      local conn <close> = runner.connect(self.cfg)
      local now = catalog.read(conn, read_opts(self.cfg))
      local changes = diff.diff(now, M.empty_model(conn))
      conn:exec("BEGIN")
      conn:exec(autogen.script(changes))
      conn:exec("DROP SCHEMA IF EXISTS " .. catalog.ident(self.cfg.schema) .. " CASCADE")
      conn:exec("COMMIT")
    end)
    if not ok then
      log.warn("could not empty the dev database again: %s", tostring(err))
    end
  end
  self.admin:close()
end
Dev.__close = Dev.close

-- Sources -----------------------------------------------------------------------------------------

local function quietly(fn, ...)
  local level = log.level
  log.level = math.min(level, level >= 2 and 2 or 0)
  local ok, result = pcall(fn, ...)
  log.level = level
  if not ok then
    error(result, 0)
  end
  return result
end

-- Replays the revision files up to target (head, heads, or a revision) onto the dev database.
local function replay(ctx, dev, targets)
  local runner = require "tide.runner"
  local inner = { cfg = dev.cfg, graph = ctx.graph }
  for _, target in ipairs(targets) do
    quietly(runner.migrate, inner, "upgrade", target, {})
  end
end

-- Applies a desired-state file (schema.lua or schema.sql) to the dev database.
local function apply_file(dev, path)
  local text = config.read_file(path)
  if not text then
    errors.raise("usage", "cannot read " .. path)
  end
  local runner = require "tide.runner"
  local conn <close> = runner.connect(dev.cfg)
  if path:match("%.lua$") then
    local chunk, err = load(text, "@" .. path, "t", config.sandbox())
    if not chunk then
      errors.raise("load", err, { file = path })
    end
    local ok, fn = pcall(chunk)
    if not ok then
      errors.raise("load", tostring(fn), { file = path })
    end
    if type(fn) ~= "function" then
      errors.raise("load", string.format("%s: a desired-state file returns a function of db, got %s", path, type(fn)),
        { file = path })
    end
    local db = require("tide.db").new(conn)
    conn:exec("BEGIN")
    local ran, err2 = xpcall(fn, runner.on_error, db)
    if not ran then
      pcall(conn.exec, conn, "ROLLBACK")
      errors.raise("run", string.format("%s: %s", path, errors.is_error(err2) and err2.message or tostring(err2)),
        { file = path })
    end
    conn:exec("COMMIT")
  else
    conn:exec("BEGIN")
    local ran, err = pcall(conn.exec, conn, text)
    if not ran then
      pcall(conn.exec, conn, "ROLLBACK")
      errors.raise("run", string.format("%s: %s", path, tostring(err)), { file = path })
    end
    conn:exec("COMMIT")
  end
end

--- The model a source names, and how to describe it. dev_for() opens the dev database on first use.
function M.source_model(ctx, spec, dev_for)
  if spec:match("%.lua$") or spec:match("%.sql$") then
    local dev = dev_for()
    apply_file(dev, spec)
    return M.read_url(ctx.cfg, dev.url, "--dev-url"), spec
  elseif looks_like_url(spec) then
    return M.read_url(ctx.cfg, spec, "--from/--to"), config.redact(spec)
  end
  if spec == "base" then
    -- nothing applied: what a new database holds, without creating one
    return M.empty_model({ info = function()
      return { server_version = dev_for("version") }
    end }), "base (no revisions)"
  end
  local dev = dev_for()
  do
    local targets
    if spec == "head" then
      targets = { revisions.head(ctx.graph) }
    elseif spec == "heads" then
      targets = { "heads" }
    else
      targets = { revisions.find(ctx.graph, spec) }
    end
    replay(ctx, dev, targets)
  end
  local model = M.read_url(ctx.cfg, dev.url, "--dev-url")
  return model, "revisions at " .. spec
end

-- Opens a fresh dev database per call (each source gets an empty one); all closed by close_all.
local function dev_pool(ctx, flags)
  local pool = {}
  local url = flags["dev-url"] or ctx.cfg.dev_url
  return function(what)
    if what == "version" then
      local c = setmetatable({ url = url or ctx.cfg.url, url_source = url and "--dev-url" or ctx.cfg.url_source },
        { __index = ctx.cfg })
      local conn <close> = require("tide.runner").connect(c, { session = false })
      return conn:info().server_version
    end
    local dev = M.dev_database(ctx.cfg, url)
    pool[#pool + 1] = dev
    return dev
  end, function()
    for _, dev in ipairs(pool) do
      dev:close()
    end
  end
end

--- "a=b,c=d" -> {{old = "a", new = "b"}, ...}
function M.parse_renames(text)
  local list = {}
  for item in (text or ""):gmatch("[^,]+") do
    local old, new = item:match("^%s*([^=]-)%s*=%s*([^=]-)%s*$")
    if not old or old == "" or new == "" then
      errors.raise("usage", string.format("--rename %s: write old=new (tables, table.column, table.index, "
        .. "table.constraint, table.policy), several separated by commas", item))
    end
    list[#list + 1] = { old = old, new = new }
  end
  return list
end

--- The hints of the way back: tables first (`people=t`), then the parts of tables named as the
--- target has them after those renames ("t=people,people.mail=email" becomes
--- "people=t,t.email=mail").
function M.inverse_renames(renames)
  local tables, parts, back = {}, {}, {}
  for _, r in ipairs(renames) do
    local owner = r.old:match("^(.*)%.[^.]+$")
    if owner and not r.new:find(".", 1, true) then
      parts[#parts + 1] = r
    else
      tables[#tables + 1] = { old = r.new, new = r.old }
      back[r.new] = r.old
      back[r.new:match("([^.]+)$")] = r.old:match("([^.]+)$")
    end
  end
  for _, r in ipairs(parts) do
    local owner = r.old:match("^(.*)%.[^.]+$")
    tables[#tables + 1] = { old = (back[owner] or owner) .. "." .. r.new, new = r.old:match("([^.]+)$") }
  end
  return tables
end

--- Both models, the changes each way, and whether they are equal.
function M.compare(ctx, from_spec, to_spec, flags)
  local open, close_all = dev_pool(ctx, flags)
  local ok, result = pcall(function()
    local from, from_text = M.source_model(ctx, from_spec, open)
    local to, to_text = M.source_model(ctx, to_spec, open)
    local renames = M.parse_renames(flags.rename)
    local up = diff.diff(from, to, { renames = renames })
    local down = diff.diff(to, from, { renames = M.inverse_renames(renames) })
    local a, b = catalog.lines(from), catalog.lines(to)
    local equal = #a == #b
    if equal then
      for i = 1, #a do
        equal = equal and a[i] == b[i]
      end
    end
    -- the models differ, yet no change says so: name the facts rather than call them equal
    local unexpressed = {}
    if not equal and #up == 0 then
      unexpressed = require("tide.safety").snapshot_diff(a, b)
    end
    return { from = from, to = to, from_text = from_text, to_text = to_text, up = up, down = down, equal = equal
      and #up == 0, unexpressed = unexpressed }
  end)
  close_all()
  if not ok then
    error(result, 0)
  end
  return result
end

local function not_compared(...)
  local seen, list = {}, {}
  for _, model in ipairs { ... } do
    for _, item in ipairs(model.not_compared) do
      local key = item.kind .. " " .. item.name
      if not seen[key] then
        seen[key] = true
        list[#list + 1] = item
      end
    end
  end
  return list
end

-- Commands ----------------------------------------------------------------------------------------

M.commands = {}

local function command(spec)
  M.commands[#M.commands + 1] = spec
end

local SOURCES = "X and Y: a database URL; head, base or a revision id (the revisions replayed on a dev database);\n"
  .. "or a desired-state file, schema.lua (a function of db written with the DSL) or schema.sql."

command {
  name = "diff",
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
    local r = M.compare(ctx, flags.from, flags.to, flags)
    return { equal = r.equal, from = r.from_text, to = r.to_text, changes = diff.plain(r.up),
      unexpressed = r.unexpressed,
      downgrade = diff.plain(r.down), not_compared = not_compared(r.from, r.to),
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

command {
  name = "dump",
  usage = "dump [--format sql|lua]",
  summary = "print the database's schema, the same bytes for the same schema (for review, or as schema.lua)",
  details = "sql: the statements that create it, in dependency order; lua: a desired-state schema.lua.",
  flags = { { "format", "FORMAT", "sql (default) or lua" } },
  run = function(ctx, _, flags)
    local format = flags.format or "sql"
    if format ~= "lua" and format ~= "sql" then
      errors.raise("usage", string.format("--format %s: use sql or lua", format))
    end
    local runner = require "tide.runner"
    local conn <close> = runner.connect(ctx.cfg, { session = false })
    local model = catalog.read(conn, read_opts(ctx.cfg))
    local empty = M.empty_model(conn)
    local changes = diff.diff(empty, model)
    local source = config.redact(ctx.cfg.url ~= "" and ctx.cfg.url or "the database named by PG* variables")
      :gsub("^.*@", "")
    local text
    if format == "sql" then
      text = "-- The schema of " .. source .. ", written by `tide dump`.\n" .. autogen.script(changes)
    else
      text = autogen.schema_file(changes, source)
    end
    local items = not_compared(model)
    for _, item in ipairs(items) do
      text = text .. string.format("-- not compared: %s %s\n", item.kind, item.name)
    end
    return { format = format, text = text, changes = diff.plain(changes), not_compared = items }
  end,
  print = function(result)
    io.stdout:write(result.text)
  end,
}

-- `tide new --autogenerate` -----------------------------------------------------------------------

--- The flags cli.lua's `new` takes.
M.new_flags = {
  { "autogenerate", nil, "write the changes from head to the target instead of a template" },
  { "to", "TARGET", "with --autogenerate: a URL, schema.lua or schema.sql (else tide.lua autogenerate.to)" },
  { "dev-url", "URL", "with --autogenerate: a server for scratch databases (else tide.lua dev_url)" },
  { "rename", "OLD=NEW", "with --autogenerate: a rename instead of a drop and a create (comma-separated)" },
}

local AUTOGENERATE_KEYS = { to = "string", dev_url = "string", rename = "string" }

local function autogenerate_config(cfg)
  return config.check_keys(cfg.autogenerate or {}, AUTOGENERATE_KEYS, cfg.file or "tide.lua", "autogenerate")
end

--- The text of the next revision, or nil when head already matches the target.
function M.autogenerate(ctx, id, parents, message, flags)
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
  local r = M.compare(ctx, from, target, f)
  if r.equal then
    log.info("no changes: the revisions at %s already give the schema of %s", from, r.to_text)
    return nil
  end
  for _, item in ipairs(not_compared(r.from, r.to)) do
    log.warn("not compared: %s %s", item.kind, item.name)
  end
  return autogen.revision { revision = id, down_revision = parents, message = message, source = r.to_text,
    up = r.up, down = r.down }, r
end

--- After the file is written: lint it like any revision and say what a reviewer should look at.
function M.after_write(path, r)
  local rev = revisions.load_file(path)
  local result = require("tide.safety").lint({ rev })
  for _, finding in ipairs(result.findings) do
    log.warn("%s", require("tide.safety").describe_finding(finding))
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

return M
