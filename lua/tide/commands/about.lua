-- tide.commands.about: the commands about tide itself (see tide.commands): version, and help,
-- which is also what `tide --help` and `tide COMMAND --help` print.
local commands = require "tide.commands"
local core = require "tide.core"
local errors = require "tide.errors"
local text = require "tide.text"

local out = text.out

local M = {}

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
  local globals = commands.global_flags
  local lines, line = {}, "global flags: see `tide --help` ("
  for i, f in ipairs(globals) do
    local name = (#f[1] == 1 and "-" or "--") .. f[1] .. (i < #globals and ", " or ").")
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
  for _, name in ipairs(commands.names) do
    out("  %-12s %s", name, commands.get(name).summary)
  end
  out("\nglobal flags (before or after the command):\n%s", flag_help(commands.global_flags))
  out("\n`tide help COMMAND` or `tide COMMAND --help` shows a command's own flags. Exit codes: see README.md.")
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
  run = function(_, args)
    local name = args[1]
    if name and not commands.get(name) then
      errors.raise("usage", string.format("unknown command `%s`%s; see `tide --help`", name,
        errors.did_you_mean(name, commands.names)))
    end
    return { command = name }
  end,
  -- result.command: the command whose help to show; none: tide's
  print = function(result)
    help(result.command and commands.get(result.command))
  end,
}

return M
