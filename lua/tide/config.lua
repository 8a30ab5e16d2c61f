-- tide.config: where the project is, what its optional tide.lua says, and which database to use.
--
-- The connection has one precedence, first found wins:
--   1. --url URL on the command line
--   2. the DATABASE_URL environment variable
--   3. `url` in tide.lua
--   4. libpq's own defaults: PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSFILE, PGSERVICE ...
-- Whatever the URL leaves out (a password, say) libpq still takes from its PG* variables and
-- ~/.pgpass, so a URL without a password plus PGPASSFILE keeps the secret out of argv.
local core = require "tide.core"
local errors = require "tide.errors"

local M = {}

-- Keys tide.lua may set, with the type each must have ("duration": a number of seconds or a
-- string with a unit, see M.duration). Modules that own a key validate its contents
-- (tide.backup validates `backup`).
M.keys = {
  url = "string",
  versions = "string",
  schema = "string",
  search_path = "string",
  application_name = "string",
  lock_wait = "duration",
  lock_timeout = "duration",
  statement_timeout = "duration",
  lock_retries = "number",
  load_instructions = "number",
  load_memory_mb = "number",
  backup = "table",
  hooks = "table",
  cache = "boolean",
  vars = "table",
  lint = "table",
  tests = "string",
  dev_url = "string", -- scratch databases for diff, autogenerate and check --schema (tide.sources)
  autogenerate = "table", -- {to =, dev_url =, rename =}: validated by tide.commands.authoring
}

M.defaults = {
  versions = "versions",
  schema = "tide",
  search_path = "public",
  application_name = "tide",
  lock_wait = 60,
  lock_timeout = "5s",
  statement_timeout = "0",
  lock_retries = 3,
  load_instructions = 100000000,
  load_memory_mb = 64,
  cache = true,
  tests = "tests",
}

-- Durations -----------------------------------------------------------------------------------
-- Every duration tide reads (flags, tide.lua, revision keys, backup settings) is parsed here, once:
-- a number, or a string without a unit, is seconds; a string may carry a unit (ms, s, min, h).
-- PostgreSQL reads a bare number as milliseconds for lock_timeout and as seconds elsewhere, so
-- tide never hands it one: the server gets whole milliseconds with their unit ("5000ms").

local UNITS = { ms = 1, s = 1000, min = 60000, h = 3600000 }

-- PostgreSQL's timeouts are a 32-bit count of milliseconds (about 24.8 days).
M.MAX_DURATION_MS = 2147483647

--- A duration as whole milliseconds (fractions round to the nearest millisecond), or nil and why.
--- 0 is allowed: for PostgreSQL's timeouts it means "off".
---@param value number|string 2, 0.5, "2", "1.5s", "500ms", "5min", "1h"
---@return integer|nil ms
---@return string|nil why
function M.duration(value)
  local number, unit
  if type(value) == "number" then
    number, unit = value, "s"
  elseif type(value) == "string" then
    if value:match("^%s*%-") then
      return nil, "a duration cannot be negative"
    end
    local digits, word = value:match("^%s*([%d.]+)%s*(%a*)%s*$")
    number, unit = tonumber(digits or ""), word ~= "" and word or "s"
    if not number then
      return nil, "not a duration: give seconds, or a number with a unit (500ms, 2s, 5min, 1h)"
    end
    if not UNITS[unit] then
      return nil, string.format("unknown unit `%s`: use ms, s, min or h (a bare number is seconds)%s", unit,
        unit == "m" and "; `m` is ambiguous: write `min` for minutes or `ms` for milliseconds" or "")
    end
  else
    return nil, "a duration must be a number of seconds or a string such as \"5s\", got " .. type(value)
  end
  if number ~= number or number < 0 then
    return nil, "a duration cannot be negative"
  end
  local ms = number * UNITS[unit]
  if ms > M.MAX_DURATION_MS + 0.5 then
    return nil, "longer than PostgreSQL's limit for a timeout, 2147483647ms (about 24.8 days)"
  end
  local whole = math.floor(ms + 0.5)
  if whole == 0 and ms > 0 then
    return nil, "shorter than a millisecond (0 would mean no timeout at all)"
  end
  return math.tointeger(whole)
end

--- A duration from tide.lua or a flag as whole milliseconds (M.duration), or a raise that
--- names where it came from and the value: `tide.lua: \`lock_wait\` "5x": not a duration ...`,
--- `--lock-wait "-1": a duration cannot be negative`. The one range check of every duration
--- (lock_wait, the timeouts, the backup's).
---@param value any
---@param where string "--lock-wait", "tide.lua: `lock_wait`", "tide.lua: `backup.deadline`"
---@param opts? {kind: string?, positive: boolean?} kind: of the error ("config"); positive: refuse 0
---@return integer ms
function M.check_duration(value, where, opts)
  opts = opts or {}
  local ms, why = M.duration(value)
  if ms == 0 and opts.positive then
    ms, why = nil, "must be more than 0"
  end
  if not ms then
    errors.raise(opts.kind or "config", string.format("%s %s: %s", where, type(value) == "string"
      and string.format("%q", value:sub(1, 40)) or tostring(value), why))
  end
  return ms
end

--- The one check of an options table of tide.lua (its top level, and each section: lint,
--- backup, autogenerate): every key known, every value of its type, in one wording:
---   tide.lua: unknown key `lint.require_rsl` (did you mean `require_rls`?)
---   tide.lua: `lint.require_rls` must be a boolean, got string
--- allowed: key -> "string", "number", "boolean", "table" or "duration" (a number of seconds or
--- a string such as "5s"; M.check_duration reads it). Keys are read with next, not pairs: a
--- table's __pairs is code of tide.lua's that need not run.
---@param t table
---@param allowed table<string, string>
---@param where string the file named in messages
---@param section? string "lint", "backup" ...: keys are shown as `section.key`
---@return table t
function M.check_keys(t, allowed, where, section)
  local names = {}
  for k in pairs(allowed) do
    names[#names + 1] = k
  end
  table.sort(names)
  local prefix = section and (section .. ".") or ""
  for k, v in next, t do
    local want = allowed[k]
    if not want then
      errors.raise("config", string.format("%s: unknown key `%s%s`%s", where, prefix, errors.cut(k),
        errors.did_you_mean(tostring(k), names)))
    elseif want == "duration" and type(v) ~= "number" and type(v) ~= "string" then
      errors.raise("config", string.format("%s: `%s%s` must be a duration (seconds, or a string such as \"5s\"), "
        .. "got %s", where, prefix, k, type(v)))
    elseif want ~= "duration" and type(v) ~= want then
      errors.raise("config", string.format("%s: `%s%s` must be a %s, got %s", where, prefix, k, want, type(v)))
    end
  end
  return t
end

--- What PostgreSQL is sent for a duration of ms: whole milliseconds with their unit.
---@param ms integer
---@return string
function M.pg_duration(ms)
  return string.format("%dms", ms)
end

--- A duration of ms for people: "500ms", "2s", "1.5s", "5min", "2h".
---@param ms integer
---@return string
function M.format_duration(ms)
  for _, u in ipairs { { "h", 3600000 }, { "min", 60000 }, { "s", 1000 } } do
    if ms >= u[2] and (ms * 10) % u[2] == 0 then
      return string.format("%g%s", ms / u[2], u[1])
    end
  end
  return string.format("%dms", ms)
end

-- The options of `lint = {...}` in tide.lua, with their types (tide.lint reads them).
M.lint_options = { require_rls = "boolean" }

--- Replaces every secret of a URL or keyword conninfo (password, sslpassword ... as libpq reads
--- them, percent-encoded names included) with ****, for every message tide prints.
---@param url string
---@return string
function M.redact(url)
  if not url then
    return url
  end
  return require("tide.core").redact(url)
end

-- The libraries a restricted environment sees through a proxy of its own: a table that reads
-- through to the library and keeps its own assignments, so a file that assigns string.x (or
-- os.getenv) changes neither the library tide itself uses nor what the next file sees.
local libraries = {
  string = string,
  table = table,
  math = math,
  utf8 = utf8,
  os = { getenv = os.getenv, time = os.time, date = os.date, clock = os.clock },
}
local library_meta = {}
for name, lib in pairs(libraries) do
  library_meta[name] = { __index = lib }
end

-- What every restricted environment sees, built once: a thousand revision files then cost a
-- thousand two-table environments, not a thousand copies of the library.
local base

local function make_base()
  local b = {
    assert = assert,
    error = error,
    ipairs = ipairs,
    next = next,
    pairs = pairs,
    pcall = pcall,
    print = print,
    rawequal = rawequal,
    rawget = rawget,
    rawlen = rawlen,
    rawset = rawset,
    select = select,
    setmetatable = function(t, mt)
      -- A finalizer would run whenever the collector gets to it, outside the load budget
      if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
        error("setmetatable: a metatable with __gc cannot be set here", 2)
      end
      return setmetatable(t, mt)
    end,
    getmetatable = getmetatable,
    tonumber = tonumber,
    tostring = tostring,
    type = type,
    xpcall = xpcall,
  }
  b.require = function(name)
    if type(name) ~= "string" or not name:match("^tide%.[%w_]+$") or name == "tide.core" then
      error("require: only tide.* library modules can be loaded here, not " .. tostring(name), 2)
    end
    return require(name)
  end
  return b
end

-- An environment's proxy of a library is made on first use (most files never touch one).
local function env_index(env, key)
  local meta = library_meta[key]
  if meta then
    local proxy = setmetatable({}, meta)
    rawset(env, key, proxy)
    return proxy
  end
  return base[key]
end

--- A restricted environment for tide.lua and revision files: the pure standard library plus
--- require for tide.* modules and os.getenv/os.time/os.date. No io, no os.execute, no load of
--- binary chunks. Globals a file sets stay in its own environment.
---
--- With watch, every call that can answer differently from one run to the next (os.*,
--- math.random, math.randomseed, print) calls watch() first: tide.cache keeps only what a
--- file's top level computed without them.
---@param watch function|nil
function M.sandbox(watch)
  base = base or make_base()
  local env = setmetatable({}, { __index = env_index })
  env._G = env
  if watch then
    local function watched(lib, names)
      local proxy = setmetatable({}, library_meta[lib])
      for name in pairs(names) do
        local f = libraries[lib][name]
        proxy[name] = function(...)
          watch()
          return f(...)
        end
      end
      env[lib] = proxy
    end
    watched("os", libraries.os)
    watched("math", { random = true, randomseed = true })
    env.print = function(...)
      watch()
      return print(...)
    end
  end
  return env
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local text = f:read("a")
  f:close()
  return text
end
M.read_file = read_file

--- What the top level of a revision file may spend: cfg's load_instructions and load_memory_mb
--- (tide.lua's own top level runs under the defaults).
function M.load_limits(cfg)
  cfg = cfg or M.defaults
  return { instructions = cfg.load_instructions, memory_mb = cfg.load_memory_mb, configurable = cfg ~= M.defaults }
end

--- Runs fn, the top level of tide.lua or of a revision file together with what tide reads of
--- its result (a metatable's code runs there too), within limits: a file that loops forever or
--- allocates without end is an error of `kind` naming it (and the line it was on), not a hang.
--- Returns fn's result; raises fn's own error as it is.
function M.run_bounded(fn, path, kind, limits)
  local ok, result, why, line = core.run_limited(fn, path, limits.instructions,
    math.floor(limits.memory_mb * 1024 * 1024))
  if ok then
    return result
  end
  local where = line and (path .. ":" .. line) or path
  local function hint(key)
    return limits.configurable and string.format("; `%s` in tide.lua raises it", key) or ""
  end
  if why == "instructions" then
    errors.raise(kind, string.format("%s: its top level ran over the load budget of %d Lua instructions (an endless "
      .. "loop?)%s", where, limits.instructions, hint("load_instructions")), { file = path, line = line })
  elseif why == "memory" then
    errors.raise(kind, string.format("%s: its top level used more than the load budget of %g MiB of memory%s", where,
      limits.memory_mb, hint("load_memory_mb")), { file = path, line = line })
  end
  error(result, 0)
end

--- Loads DIR/tide.lua when present. Returns the validated table (defaults filled in).
local function load_file(path)
  local cfg = {}
  local text = read_file(path)
  if text then
    local chunk, err = load(text, "@" .. path, "t", M.sandbox())
    if not chunk then
      errors.raise("config", err)
    end
    M.run_bounded(function()
      local ok, result = pcall(chunk)
      if not ok then
        errors.raise("config", path .. ": " .. errors.cut(result))
      end
      if type(result) ~= "table" then
        errors.raise("config", path .. ": must return a table, got " .. type(result))
      end
      M.check_keys(result, M.keys, path)
      for k, v in next, result do
        cfg[k] = v
      end
    end, path, "config", M.load_limits())
  end
  for k, v in pairs(M.defaults) do
    if cfg[k] == nil then
      cfg[k] = v
    end
  end
  return cfg
end

-- `vars`: names a revision reads as db.vars.NAME, values it builds SQL from. Plain values only,
-- so what a revision sees is what tide.lua says, whatever code tide.lua ran to say it.
local function check_vars(path, vars)
  for k, v in pairs(vars) do
    if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then
      errors.raise("config", string.format("%s: vars: `%s` is not a name (letters, digits, _)", path, tostring(k)))
    end
    local t = type(v)
    if t ~= "string" and t ~= "number" and t ~= "boolean" then
      errors.raise("config", string.format("%s: vars.%s must be a string, number or boolean, got %s", path, k, t))
    end
  end
end


local function join(dir, path)
  if path:sub(1, 1) == "/" or dir == "." then
    return path
  end
  return dir .. "/" .. path
end
M.join = join

--- The configuration of one run, from flags (already parsed by the CLI), environment and file.
---@param flags table {dir=, versions=, url=, lock_wait=, ...}
---@return table cfg {dir, file, versions_dir, url, url_source, schema, ...}
function M.load(flags)
  local dir = flags.dir or "."
  if not core.isdir(dir) then
    errors.raise("config", string.format("-C %s: no such directory", errors.cut(dir)))
  end
  local file = join(dir, "tide.lua")
  local cfg = load_file(file)
  cfg.dir = dir
  cfg.file = read_file(file) and file or nil
  -- As with `git -C`, a relative --versions is relative to DIR, like tide.lua's `versions`.
  cfg.versions_dir = join(dir, flags.versions or cfg.versions)
  cfg.tests_dir = join(dir, cfg.tests)
  check_vars(file, cfg.vars or {})
  M.check_keys(cfg.lint or {}, M.lint_options, file, "lint")
  cfg.vars = cfg.vars or {}
  cfg.lint = cfg.lint or {}
  if flags.url then
    cfg.url, cfg.url_source = flags.url, "--url"
  elseif os.getenv("DATABASE_URL") and os.getenv("DATABASE_URL") ~= "" then
    cfg.url, cfg.url_source = os.getenv("DATABASE_URL"), "DATABASE_URL"
  elseif cfg.url then
    cfg.url_source = "tide.lua"
  else
    cfg.url, cfg.url_source = "", "libpq environment (PG* variables)"
  end
  for _, k in ipairs { "lock_wait", "lock_timeout", "statement_timeout", "lock_retries", "schema" } do
    if flags[k] ~= nil then
      cfg[k] = flags[k]
    end
  end
  -- Durations are checked before anything connects; the lock wait stays in seconds (tide.lock),
  -- the timeouts become what PostgreSQL is sent.
  for _, k in ipairs { "lock_wait", "lock_timeout", "statement_timeout" } do
    local ms = M.check_duration(cfg[k], flags[k] ~= nil and ("--" .. k:gsub("_", "-"))
      or ((cfg.file or "tide.lua") .. ": `" .. k .. "`"), { kind = flags[k] ~= nil and "usage" or "config" })
    cfg[k] = k == "lock_wait" and ms / 1000 or M.pg_duration(ms)
  end
  for _, k in ipairs { "load_instructions", "load_memory_mb" } do
    if not (cfg[k] > 0 and cfg[k] < math.huge) then
      errors.raise("config", string.format("%s %s: give a positive number", k, cfg[k]))
    end
  end
  cfg.load_instructions = math.floor(cfg.load_instructions)
  if cfg.search_path:find("\0", 1, true) then
    errors.raise("config", "search_path: a NUL byte cannot reach the server")
  end
  local retries = math.tointeger(cfg.lock_retries)
  if not retries or retries < 0 then
    errors.raise("config", string.format("lock_retries %s: give a whole number, 0 or more", cfg.lock_retries))
  end
  cfg.lock_retries = retries
  if not cfg.schema:match("^[%a_][%w_]*$") or #cfg.schema > 63 then
    errors.raise("config", string.format("schema `%s`: use a plain identifier (letters, digits, _; at most 63)",
      errors.cut(cfg.schema)))
  end
  return cfg
end

return M
