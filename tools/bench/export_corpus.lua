-- tools/bench/export_corpus.lua: prints spec/support/corpus.lua as JSON lines (one pair a line:
-- name, base, x, y, rename, lint), for tools/bench/authoring.
--   LUA_PATH="lua/?.lua;./?.lua;;" LUA_CPATH="build/lua/?.so;;" lua5.4 tools/bench/export_corpus.lua
local json = require "tide.json"
for _, pair in ipairs(require "spec.support.corpus") do
  print(json.encode { name = pair[1], base = pair.base or "", x = pair.x, y = pair.y, rename = pair.rename or "" })
end
