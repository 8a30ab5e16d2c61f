-- luacheck configuration for tide (Debian's lua-check): Lua 5.4, no globals.
std = "lua54"
max_line_length = 120
exclude_files = { "build*/**" }
files["spec/**/*_spec.lua"] = { std = "+busted" }
files["spec/support/*.lua"] = { std = "+busted" }
files["tools/**/*_spec.lua"] = { std = "+busted" }
