-- tide.commands.about: the commands about tide itself (see tide.commands): version, and help,
-- which is also what `tide --help` and `tide COMMAND --help` print. Help reads the registry it
-- is given (ctx.commands), so that the registry is the only one to load command files.
local core = require "tide.core"
local errors = require "tide.errors"
local text = require "tide.text"

local out = text.out

local M = {}

local function flag_help(lines, list)
  for _, f in ipairs(list or {}) do
    local names = (#f[1] == 1 and "-" or "--") .. f[1] .. (f[4] and (", -" .. f[4]) or "")
    lines[#lines + 1] = string.format("  %-26s %s", names .. (f[2] and (" " .. f[2]) or ""), f[3])
  end
end

-- "--url, -C, --versions ...": the global flags by name, for a command's help, in lines of
-- at most about 100 characters.
local function global_names(lines, globals)
  local line = "global flags: see `tide --help` ("
  for i, f in ipairs(globals) do
    local name = (#f[1] == 1 and "-" or "--") .. f[1] .. (i < #globals and ", " or ").")
    if #line + #name > 100 then
      lines[#lines + 1] = line:gsub("%s+$", "")
      line = "  "
    end
    line = line .. name
  end
  lines[#lines + 1] = line
end

-- The help text, as lines: a command's shows its own flags, and names the global ones that
-- `tide --help` explains.
local function help(commands, cmd)
  local lines = {}
  if cmd then
    lines[1] = string.format("usage: tide %s [flags]\n\n%s.%s", cmd.usage, cmd.summary,
      cmd.details and ("\n" .. cmd.details) or "")
    if cmd.flags and #cmd.flags > 0 then
      lines[#lines + 1] = "\nflags:"
      flag_help(lines, cmd.flags)
    end
    lines[#lines + 1] = ""
    global_names(lines, commands.global_flags)
    return lines
  end
  lines[1] = "usage: tide COMMAND [ARGS] [flags]\n\ntide runs PostgreSQL schema migrations written in Lua.\n\ncommands:"
  for _, name in ipairs(commands.names) do
    lines[#lines + 1] = string.format("  %-12s %s", name, commands.get(name).summary)
  end
  lines[#lines + 1] = "\nglobal flags (before or after the command):"
  flag_help(lines, commands.global_flags)
  lines[#lines + 1] = "\n`tide help COMMAND` or `tide COMMAND --help` shows a command's own flags. Exit codes: see "
    .. "README.md."
  return lines
end

M.version = {
  usage = "version",
  summary = "print tide's version",
  no_project = true,
  run = function()
    return { version = core.version }
  end,
  print = function(result)
    out("tide %s", result.version)
  end,
}

M.help = {
  usage = "help [COMMAND]",
  summary = "show this help, or a command's",
  no_project = true,
  max_args = 1,
  run = function(ctx, args)
    local name = args[1]
    local cmd = name and ctx.commands.get(name)
    if name and not cmd then
      errors.raise("usage", string.format("unknown command `%s`%s; see `tide --help`", name,
        errors.did_you_mean(name, ctx.commands.names)))
    end
    return { command = name, help = help(ctx.commands, cmd) }
  end,
  print = function(result)
    out(table.concat(result.help, "\n"))
  end,
}

return M
