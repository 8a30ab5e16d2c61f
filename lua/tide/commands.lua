-- tide.commands: the registry of tide's commands. Each command lives in a file of
-- lua/tide/commands/, a group of verbs that return a table of them, every one declared the
-- same way:
--   M.<verb> = {
--     usage = "verb ARGS", summary = "one line", details = "more lines" | nil,
--     flags = { { name, VALUE | nil, help, short letter | nil }, ... },
--     min_args = n, max_args = n,         -- positional arguments (default: none)
--     no_project = true,                  -- runs without tide.lua and versions/ (init, help)
--     creates_versions = true,            -- creates versions/ when it is missing (new)
--     run = function(ctx, args, flags) -> result table ({exit = code} for a non-zero exit),
--     print = function(result) -- the human output; --json prints the result instead
--   }
-- ctx is {command, commands (this registry), cfg, graph, flags}: the configuration and the
-- revisions, loaded by tide.cli.
-- A command's file is loaded when the command runs (or for `tide --help`), so a start of
-- `tide upgrade` loads the migrating commands and nothing of the others.
local core = require "tide.core"

local M = {}

--- Flags every command takes, before or after the command word.
M.global_flags = {
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

-- Every command, in the order `tide --help` lists them, with the file that declares it
-- (lua/tide/commands/<group>.lua). A new command is declared in its group's file and listed here.
local COMMANDS = {
  { "upgrade", "migrating" },
  { "downgrade", "migrating" },
  { "current", "inspecting" },
  { "status", "inspecting" },
  { "history", "inspecting" },
  { "heads", "inspecting" },
  { "show", "inspecting" },
  { "branches", "inspecting" },
  { "new", "authoring" },
  { "revision", "authoring" },
  { "merge", "authoring" },
  { "init", "authoring" },
  { "stamp", "migrating" },
  { "check", "inspecting" },
  { "version", "about" },
  { "backup", "backups" },
  { "backups", "backups" },
  { "restore", "backups" },
  { "accept", "migrating" },
  { "resolve", "migrating" },
  { "lint", "inspecting" },
  { "test", "inspecting" },
  { "auto", "migrating" },
  { "diff", "authoring" },
  { "dump", "authoring" },
  { "help", "about" },
}

--- The command names, in the order `tide --help` lists them.
M.names = {}
local group_of = {}
for i, c in ipairs(COMMANDS) do
  M.names[i] = c[1]
  group_of[c[1]] = c[2]
end

--- The files of lua/tide/commands/, each once.
M.groups = {}
do
  local seen = {}
  for _, c in ipairs(COMMANDS) do
    if not seen[c[2]] then
      seen[c[2]] = true
      M.groups[#M.groups + 1] = c[2]
    end
  end
end

--- The command called name, with its group file loaded; nil when there is none.
---@param name string
---@return table|nil spec the declaration (see the header), its `name` field set
function M.get(name)
  local group = group_of[name]
  if not group then
    return nil
  end
  local spec = require("tide.commands." .. group)[name]
  if type(spec) ~= "table" then
    error(core.error("internal", string.format("command %s is listed in tide.commands but not declared in "
      .. "lua/tide/commands/%s.lua", name, group)), 0)
  end
  spec.name = name
  return spec
end

return M
