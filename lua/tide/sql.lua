-- tide.sql: the one place where tide turns names and values into SQL text.
--
-- Every identifier tide writes into a statement goes through `sql.ident` and every value that
-- is not sent as a `$n` parameter goes through `sql.literal`. Keeping both in one small module
-- means one function to read, test and fix when it comes to injection. The engine and the
-- schema DSL both use it, so the API is deliberately small: ident, qualified, literal, raw.

local errors = require "tide.errors"

local sql = {}

-- Misuse raises a tide.Error of kind "run" (the revision API's), located like error(message,
-- level): at the line that called sql.* (a revision file's, or the DSL's, which relocates it).
local function fail(level, message)
  errors.raise_at(level + 1, "run", message)
end

-- PostgreSQL silently truncates identifiers to NAMEDATALEN - 1 bytes (63 by default) and only
-- says so in a NOTICE. Two long names that share a prefix would then name the same object, and
-- a later `drop_index(long_name)` would still work by accident. Refusing them is clearer.
local MAX_IDENT_BYTES = 63

-- The checks behind ident and qualified; `level` points the error at their caller.
local function quote_ident(name, level)
  if type(name) ~= "string" then
    fail(level + 1, ("sql.ident: identifier must be a string, got %s"):format(type(name)))
  end
  if name == "" then
    fail(level + 1, "sql.ident: identifier must not be empty")
  end
  if name:find("\0", 1, true) then
    fail(level + 1, ("sql.ident: identifier %q contains a NUL byte"):format(name))
  end
  if #name > MAX_IDENT_BYTES then
    fail(level + 1, ("sql.ident: identifier %q is %d bytes long; PostgreSQL would truncate it to %d")
      :format(name, #name, MAX_IDENT_BYTES))
  end
  return '"' .. name:gsub('"', '""') .. '"'
end

---Quotes one identifier: always double-quoted, embedded `"` doubled, so the name reaches
---PostgreSQL exactly as written (case kept, no keyword clashes, no injection).
---A dot is part of the name: `ident("app.users")` names a table called `app.users`;
---use `qualified` for a schema-qualified name.
---@param name string
---@return string
function sql.ident(name)
  return (quote_ident(name, 2))
end

---@class tide.QualifiedName
---@field schema string? the schema; omitted means "whatever search_path finds first"
---@field name string the object's name

---Quotes a possibly schema-qualified name: `"users"` or `{schema = "app", name = "users"}`.
---Strings are never split at dots (see `ident`).
---@param name string|tide.QualifiedName
---@return string
function sql.qualified(name)
  if type(name) == "string" then
    return (quote_ident(name, 2))
  end
  if type(name) ~= "table" then
    fail(2, ("sql.qualified: expected a name or {schema = ..., name = ...}, got %s")
      :format(type(name)))
  end
  for key in pairs(name) do
    if key ~= "schema" and key ~= "name" then
      fail(2, ("sql.qualified: unknown key `%s` (expected `schema` and `name`)"):format(key))
    end
  end
  if name.name == nil then
    fail(2, "sql.qualified: missing `name`")
  end
  if name.schema == nil then
    return (quote_ident(name.name, 2))
  end
  return quote_ident(name.schema, 2) .. "." .. quote_ident(name.name, 2)
end

---Quotes one value as an SQL literal: strings in single quotes (`'` doubled; written as E'...'
---with `\` doubled when they contain a backslash, so the result means the same whatever
---`standard_conforming_strings` says, like PostgreSQL's own quote_literal), integers and
---finite floats as numbers (negative ones in parentheses so `x -` .. literal(-1) cannot become
---a `--` comment), booleans as TRUE/FALSE, nil as NULL.
---@param value string|number|boolean|nil
---@return string
function sql.literal(value)
  local kind = type(value)
  if value == nil then
    return "NULL"
  elseif kind == "boolean" then
    return value and "TRUE" or "FALSE"
  elseif kind == "number" then
    local text
    if math.type(value) == "integer" then
      text = ("%d"):format(value)
    elseif value ~= value or value == math.huge or value == -math.huge then
      fail(2, ("sql.literal: %s has no SQL numeric literal"):format(tostring(value)))
    else
      -- the shortest form that reads back as the same double: 0.1, not 0.10000000000000001
      for digits = 15, 17 do
        text = ("%." .. digits .. "g"):format(value)
        if tonumber(text) == value then break end
      end
    end
    if value < 0 then
      return "(" .. text .. ")"
    end
    return text
  elseif kind == "string" then
    if value:find("\0", 1, true) then
      fail(2, "sql.literal: a string literal cannot contain a NUL byte")
    end
    local quoted = value:gsub("'", "''")
    if quoted:find("\\", 1, true) then
      return "E'" .. quoted:gsub("\\", "\\\\") .. "'"
    end
    return "'" .. quoted .. "'"
  end
  fail(2, ("sql.literal: cannot write a %s as an SQL literal"):format(kind))
end

local Raw = { __name = "tide.sql.Raw" }
Raw.__index = Raw
function Raw.__tostring(raw)
  return raw.sql
end

---Marks text as SQL to be written verbatim, for the few places that take either a value or
---an expression (a column default such as `now()`, an index expression such as
---`lower(email)`). Never pass text that came from outside the revision file.
---@param text string
---@return tide.sql.Raw
function sql.raw(text)
  if type(text) ~= "string" or text == "" then
    fail(2, "sql.raw: expected a non-empty string of SQL")
  end
  return setmetatable({ sql = text }, Raw)
end

---@class tide.sql.Raw
---@field sql string

---True when `value` came from `sql.raw`.
---@param value any
---@return boolean
function sql.is_raw(value)
  return getmetatable(value) == Raw
end

-- A misspelled function (`sql.rwa`) raises with a suggestion, as in tide.schema and tide.rls,
-- at the line that asked for it.
return setmetatable(sql, {
  __index = function(_, key)
    local names = {}
    for name, value in pairs(sql) do
      if type(value) == "function" then
        names[#names + 1] = name
      end
    end
    table.sort(names)
    local best = type(key) == "string" and errors.suggest(key, names)
    fail(2, best and ("unknown function `sql.%s`: did you mean `sql.%s`?"):format(tostring(key), best)
      or ("unknown function `sql.%s`: tide.sql has %s"):format(tostring(key), table.concat(names, ", ")))
  end,
})
