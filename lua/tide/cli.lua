-- tide.cli: the `tide` command line: arguments, the command they name (from tide.commands),
-- exit codes, and human or --json output. main(args) returns the process's exit code; nothing
-- below it calls os.exit. The commands themselves live in lua/tide/commands/.
local commands = require "tide.commands"
local config = require "tide.config"
local core = require "tide.core"
local errors = require "tide.errors"
local json = require "tide.json"
local log = require "tide.log"
local revisions = require "tide.revisions"
local text = require "tide.text"

local out = text.out

local M = {}

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
  local globals = flag_table(commands.global_flags, {})
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
  local cmd = name and commands.get(name)
  if name and not cmd then
    errors.raise("usage", string.format("unknown command `%s`%s; see `tide --help`", errors.cut(name),
      errors.did_you_mean(name, commands.names)))
  end
  local known = flag_table(cmd and cmd.flags, flag_table(commands.global_flags, {}))
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

-- main ----------------------------------------------------------------------------------------

local function report(err, as_json)
  err = errors.normalize(err) -- as errors.protect left it, unless its handler failed
  local kind = err.kind
  local code = errors.exit_codes[kind] or errors.exit_codes.internal
  local message = tostring(err.message)
  if kind == "internal" or not errors.exit_codes[kind] then
    message = "internal error: " .. tostring(err) .. (err.traceback or "")
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
  local ok, result = errors.protect(function()
    local cmd, positional, flags = parse(args)
    log.level = flags.quiet and 0 or flags.verbose and 2 or 1
    if flags.version and not flags.help then
      cmd, positional = commands.get("version"), {}
    end
    if flags.help or not cmd then
      local help = commands.get("help")
      help.print(help.run({ commands = commands }, { cmd and cmd.name }))
      return cmd == nil and not flags.help and errors.exit_codes.usage or 0
    end
    if (cmd.min_args and #positional < cmd.min_args) or #positional > (cmd.max_args or 0) then
      errors.raise("usage", "usage: tide " .. cmd.usage)
    end
    local ctx = { command = cmd, commands = commands }
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
  end)
  if ok then
    return result
  end
  return report(result, as_json)
end

return M
