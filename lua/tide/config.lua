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

-- Keys tide.lua may set, with the type each must have. Modules that own a key validate its
-- contents (tide.backup validates `backup`).
M.keys = {
  url = "string",
  versions = "string",
  schema = "string",
  search_path = "string",
  application_name = "string",
  lock_wait = "number",
  lock_timeout = "string",
  statement_timeout = "string",
  lock_retries = "number",
  load_instructions = "number",
  load_memory_mb = "number",
  backup = "table",
  hooks = "table",
  cache = "boolean",
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
}

--- Replaces the password in a URL or keyword conninfo with ****, for every message tide prints.
---@param url string
---@return string
function M.redact(url)
  if not url then
    return url
  end
  url = url:gsub("^(%a[%w+.-]*://[^/@:]*:)[^@/]*@", "%1****@")
  url = url:gsub("([?&]password=)[^&]*", "%1****")
  url = url:gsub("(password%s*=%s*)'[^']*'", "%1****")
  url = url:gsub("(password%s*=%s*)[^%s']+", "%1****")
  return url
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
    local names = {}
    for k in pairs(M.keys) do
      names[#names + 1] = k
    end
    M.run_bounded(function()
      local ok, result = pcall(chunk)
      if not ok then
        errors.raise("config", path .. ": " .. errors.cut(result))
      end
      if type(result) ~= "table" then
        errors.raise("config", path .. ": must return a table, got " .. type(result))
      end
      for k, v in next, result do
        if not M.keys[k] then
          errors.raise("config", string.format("%s: unknown key `%s`%s", path, errors.cut(k),
            errors.did_you_mean(tostring(k), names)))
        elseif type(v) ~= M.keys[k] then
          errors.raise("config", string.format("%s: `%s` must be a %s, got %s", path, k, M.keys[k], type(v)))
        end
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
  if cfg.lock_wait < 0 or cfg.lock_wait > 2147483 then
    errors.raise("config", string.format("lock_wait %s: give seconds between 0 and 2147483", cfg.lock_wait))
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
