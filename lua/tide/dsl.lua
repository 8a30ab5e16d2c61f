-- tide.dsl: internals shared by the schema DSL modules (tide.schema, tide.rls).
--
-- Not for revision files. It holds what both DSL modules need to behave the same way: errors
-- that point at the revision file's line rather than at the DSL's own code, strict checking of
-- option tables with a "did you mean" suggestion, checking of enumerated words (ON DELETE
-- actions, index methods, policy commands ...), and identifier quoting that reports through
-- the same channel.

local errors = require "tide.errors"
local sql = require "tide.sql"

local dsl = {}

-- Frames in these modules are the DSL's own; an error is reported at the first frame outside
-- them, which is the revision file (or spec) line that made the bad call.
local OWN_MODULES = { schema = true, rls = true, dsl = true, sql = true }

local function caller_position()
  -- The restricted environment of a revision file does not reach this module's upvalues, but
  -- a host may still build Lua without the debug library: then messages carry no position.
  if type(debug) ~= "table" or debug.getinfo == nil then
    return ""
  end
  for level = 3, 64 do
    local info = debug.getinfo(level, "Sl")
    if info == nil then
      break
    end
    if info.what ~= "C" then
      local module = info.source:match("tide[/\\](%w+)%.lua$")
      if not (module and OWN_MODULES[module]) then
        return ("%s:%d: "):format(info.short_src, info.currentline)
      end
    end
  end
  return ""
end

---Raises `message` (formatted with `...`) located at the revision file's line.
---@param message string
---@param ... any
function dsl.fail(message, ...)
  errors.raise("run", caller_position() .. message:format(...))
end

---"did you mean `x`?", or the list of valid words when nothing is close.
---@param word string
---@param candidates string[]
---@return string
function dsl.hint(word, candidates)
  local best = errors.suggest(word, candidates)
  if best then
    return ("did you mean `%s`?"):format(best)
  end
  return ("expected one of: %s"):format(table.concat(candidates, ", "))
end

---@param value any
---@param expected string
---@return boolean
local function has_type(value, expected)
  local actual = type(value)
  if expected == "any" then
    return true
  elseif expected == "value" then
    return actual == "string" or actual == "number" or actual == "boolean" or sql.is_raw(value)
  elseif expected == "sql" then
    return actual == "string" or sql.is_raw(value)
  end
  for alternative in expected:gmatch("[^|]+") do
    if actual == alternative then
      return true
    end
  end
  return false
end

local function describe_type(expected)
  if expected == "value" then
    return "a string, number, boolean or sql.raw(...)"
  elseif expected == "sql" then
    return "a string or sql.raw(...)"
  end
  local words = {}
  for alternative in expected:gmatch("[^|]+") do
    words[#words + 1] = "a " .. alternative
  end
  return table.concat(words, " or ")
end

---Checks an option table against the allowed keys and their types, given as an array of
---`{key, type}` pairs in the order they are documented (type: "boolean", "string", "table",
---alternatives such as "string|table", "value" for what sql.literal or sql.raw accepts, "sql"
---for a string or sql.raw, "any"). Raises "unknown option `were` to create_index: did you mean
---`where`?" for an unknown key and "option `unique` to create_index must be a boolean, got
---string" for a value of the wrong type.
---@param what string the function name used in messages, e.g. "create_index"
---@param options table|nil
---@param allowed {[1]: string, [2]: string}[]
---@param positional integer? how many array entries the table may hold (column specs: 2)
---@return table options the table passed in, or an empty table for nil
function dsl.check_options(what, options, allowed, positional)
  if options == nil then
    return {}
  end
  if type(options) ~= "table" then
    dsl.fail("%s: options must be a table, got %s", what, type(options))
  end
  local types, names = {}, {}
  for _, pair in ipairs(allowed) do
    types[pair[1]] = pair[2]
    names[#names + 1] = pair[1]
  end
  for key, value in pairs(options) do
    if math.type(key) == "integer" and key >= 1 and key <= (positional or 0) then
      goto continue
    end
    if type(key) ~= "string" then
      dsl.fail("%s: unexpected value %s at position %s", what, tostring(value), tostring(key))
    end
    if types[key] == nil then
      dsl.fail("unknown option `%s` to %s: %s", key, what, dsl.hint(key, names))
    end
    if not has_type(value, types[key]) then
      dsl.fail("option `%s` to %s must be %s, got %s", key, what, describe_type(types[key]),
        type(value))
    end
    ::continue::
  end
  return options
end

---Normalizes an enumerated word (case, `_` and runs of spaces) and checks it against
---`allowed`; returns it upper-cased, ready to be written into SQL.
---@param what string context for the message, e.g. "on_delete action"
---@param word any
---@param allowed string[] lower-case words, most common first
---@return string
function dsl.keyword(what, word, allowed)
  if type(word) ~= "string" then
    dsl.fail("%s must be a string, got %s", what, type(word))
  end
  local normalized = word:lower():gsub("[%s_]+", " "):gsub("^ ", ""):gsub(" $", "")
  for _, candidate in ipairs(allowed) do
    if candidate == normalized then
      return normalized:upper()
    end
  end
  dsl.fail("unknown %s `%s`: %s", what, word, dsl.hint(normalized, allowed))
end

-- Misspelled functions. A module made strict raises at the revision file's line when asked for
-- a function it does not have, naming the closest DSL function wherever it lives
-- (`schema.create_polcy` -> `rls.create_policy`), instead of Lua's "attempt to call a nil value".
-- Modules are looked up by name when the error happens, so tide.schema and tide.rls can point at
-- each other without requiring each other.
local NEIGHBOURS = {
  schema = { "schema", "rls" },
  rls = { "rls", "schema" },
  ["schema.sql"] = { "schema.sql", "rls.sql" },
  ["rls.sql"] = { "rls.sql", "schema.sql" },
}

local function functions_of(name)
  local ok, module = pcall(require, "tide." .. name:match("^%w+"))
  if ok and name:find("%.sql$") then
    module = rawget(module, "sql")
  end
  local names = {}
  for key, value in pairs(ok and module or {}) do
    if type(key) == "string" and type(value) == "function" then
      names[#names + 1] = key
    end
  end
  table.sort(names)
  return names
end

---Makes `module` (known to revisions as `name`: "schema", "rls.sql" ...) raise on a function it
---does not have.
---@param module table
---@param name string
---@return table module
function dsl.strict(module, name)
  return setmetatable(module, {
    __index = function(_, key)
      dsl.unknown_function(name, key)
    end,
  })
end

---Raises "unknown function `schema.create_polcy`: did you mean `rls.create_policy`?" at the
---revision file's line.
---@param name string the module as revisions know it
---@param key any what was asked for
function dsl.unknown_function(name, key)
  local candidates, owner = {}, {}
  for _, neighbour in ipairs(NEIGHBOURS[name]) do
    for _, f in ipairs(functions_of(neighbour)) do
      if not owner[f] then
        candidates[#candidates + 1], owner[f] = f, neighbour
      end
    end
  end
  local best = type(key) == "string" and errors.suggest(key, candidates)
  if best then
    dsl.fail("unknown function `%s.%s`: did you mean `%s.%s`?", name, tostring(key), owner[best], best)
  end
  dsl.fail("unknown function `%s.%s`: tide.%s has %s", name, tostring(key), name,
    table.concat(functions_of(name), ", "))
end

---Checks that `db` looks like the object the engine passes to upgrade/downgrade, so that
---`schema.create_table("users", ...)` (db forgotten) fails with a message that says so.
---@param what string
---@param db any
function dsl.check_db(what, db)
  local kind = type(db)
  if (kind ~= "table" and kind ~= "userdata") or db.exec == nil then
    dsl.fail("%s: the first argument must be the db passed to upgrade/downgrade, got %s",
      what, kind)
  end
end

---sql.ident, reporting a bad name at the revision file's line.
---@param name any
---@return string
function dsl.ident(name)
  local ok, quoted = pcall(sql.ident, name)
  if not ok then
    dsl.fail("%s", quoted)
  end
  return quoted
end

---sql.qualified, reporting a bad name at the revision file's line.
---@param name any
---@return string
function dsl.qualified(name)
  local ok, quoted = pcall(sql.qualified, name)
  if not ok then
    dsl.fail("%s", quoted)
  end
  return quoted
end

---sql.literal, or the verbatim text of an sql.raw value.
---@param value any
---@return string
function dsl.value(value)
  if sql.is_raw(value) then
    return value.sql
  end
  local ok, quoted = pcall(sql.literal, value)
  if not ok then
    dsl.fail("%s", quoted)
  end
  return quoted
end

---Checks a name or a non-empty list of names; returns them quoted and comma-separated.
---@param what string
---@param names any
---@return string
function dsl.ident_list(what, names)
  if type(names) == "string" then
    return dsl.ident(names)
  end
  if type(names) ~= "table" or #names == 0 then
    dsl.fail("%s must be a name or a non-empty list of names", what)
  end
  local quoted = {}
  for i, name in ipairs(names) do
    quoted[i] = dsl.ident(name)
  end
  return table.concat(quoted, ", ")
end

---The name part of a table name given as a string or {schema = ..., name = ...}.
---@param name string|tide.QualifiedName
---@return string
function dsl.base_name(name)
  if type(name) == "table" then
    return name.name
  end
  return name
end

return dsl
