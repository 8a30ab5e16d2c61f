-- tools/bench/read_model.lua URL_A [URL_B]: times tide.catalog's read of one database, and with a
-- second URL the diff and the generated revision between the two, in-process (no start-up, no
-- printing). Prints one JSON object: wall and CPU seconds of each phase.
local catalog = require "tide.catalog"
local core = require "tide.core"
local diff = require "tide.diff"
local autogen = require "tide.autogen"

local function timed(fn)
  local w, c = core.now(), os.clock()
  local result = fn()
  return result, core.now() - w, os.clock() - c
end

local opts = { exclude_schema = "tide", search_path = "public" }
local out = {}
local conn = core.connect(arg[1])
local a
a, out.read_wall, out.read_cpu = timed(function()
  return catalog.read(conn, opts)
end)
conn:close()
if arg[2] then
  local conn2 = core.connect(arg[2])
  local b = catalog.read(conn2, opts)
  conn2:close()
  local text
  text, out.diff_wall, out.diff_cpu = timed(function()
    local up, down = diff.diff(a, b), diff.diff(b, a)
    out.changes = #up
    return autogen.revision { revision = "002", down_revision = { "001" }, message = "bench", source = "bench",
      up = up, down = down }
  end)
  out.revision_bytes = #text
end
print(require("tide.json").encode(out))
