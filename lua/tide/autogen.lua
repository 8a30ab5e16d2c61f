-- tide.autogen: change lists (tide.diff) -> text: a revision file for `tide new --autogenerate`,
-- the body of `tide diff`, a script for `tide dump --format sql`.
--
-- A generated revision reads as a person would write it: the DSL (tide.schema, tide.rls) where
-- it has the operation, db:exec with the SQL otherwise, only the modules it uses required,
-- lines kept under 120 columns where SQL allows (never inside a function body), a comment above
-- what needs a human (a backfill, a destructive change). It is linted like any revision: an
-- index on an existing table is built CONCURRENTLY, which makes the revision
-- `transaction = false` with one db:step per change so a rerun resumes where it stopped; so
-- does an enum value that the same revision uses (PostgreSQL cannot use a value added in the
-- same transaction). Check and foreign-key constraints on existing tables are added NOT VALID
-- and validated in a second statement (tide.ddl).
local ddl = require "tide.ddl"

local M = {}

local WIDTH = 100

local wrap = ddl.wrap

local function is_function(sql)
  return sql:match("^CREATE OR REPLACE FUNCTION") or sql:match("^CREATE FUNCTION") or sql:match("^CREATE PROCEDURE")
    or sql:match("^CREATE OR REPLACE PROCEDURE")
end

-- One statement as Lua code at the given indentation.
local function statement_lua(s, indent)
  if s.lua then
    -- the DSL call, its expression strings wrapped like SQL
    return indent .. s.lua:gsub("\n", "\n" .. indent)
  end
  local sql = is_function(s.sql) and s.sql or wrap(s.sql, WIDTH)
  local literal = ddl.lua_string(sql)
  if not literal:find("\n", 1, true) and #indent + #literal + 10 > 120 then
    -- a long one-line statement reads better on a line of its own
    literal = "[[\n" .. sql .. "]]"
    if sql:find("]]", 1, true) then
      literal = ddl.lua_string("\n" .. sql)
    end
  end
  return indent .. "db:exec(" .. literal .. ")"
end

local function uses(changes, pattern)
  for _, c in ipairs(changes) do
    for _, s in ipairs(c.statements) do
      if s.lua and s.lua:find(pattern) then
        return true
      end
    end
  end
  return false
end

--- Whether a revision with these upgrade (and downgrade) changes must run outside a
--- transaction, and why.
function M.needs_nontx(up, down)
  local why = M.needs_nontx_one(up)
  if why or not down then
    return why
  end
  why = M.needs_nontx_one(down, true)
  return why and (why .. " (in the downgrade)")
end

function M.needs_nontx_one(up, is_down)
  for _, c in ipairs(up) do
    if c.alt and c.action == "create" and not is_down then
      return "an index on an existing table is built CONCURRENTLY, which cannot run in a transaction"
    end
  end
  for _, c in ipairs(up) do
    if c.enum_values then
      for _, other in ipairs(up) do
        if other ~= c then
          for _, s in ipairs(other.statements) do
            if s.sql:find(c.type_sql, 1, true) then
              return "values added to enum " .. c.type_sql .. " are used by this revision, and PostgreSQL cannot use "
                .. "an enum value in the transaction that added it"
            end
          end
        end
      end
    end
  end
  return nil
end

-- The body of upgrade or downgrade: one block per change.
local function body(changes, nontx, indent, mark_destructive)
  local lines = {}
  local names = {}
  for _, c in ipairs(changes) do
    local statements = (nontx and c.alt) or c.statements
    local parts = {}
    local inner = nontx and (indent .. "  ") or indent
    for _, s in ipairs(statements) do
      if s.note then
        parts[#parts + 1] = inner .. "-- " .. s.note
      end
      parts[#parts + 1] = statement_lua(s, inner)
    end
    if c.destructive and mark_destructive then
      table.insert(parts, 1, inner .. "-- destructive: " .. c.action .. " " .. c.kind .. " " .. c.name
        .. " (its data is lost)")
    end
    if nontx then
      local name = c.action .. " " .. c.kind .. " " .. c.name
      if names[name] then
        names[name] = names[name] + 1
        name = name .. " #" .. names[name]
      else
        names[name] = 1
      end
      lines[#lines + 1] = indent .. "db:step(" .. ddl.lua_string(name) .. ", function(db)"
      for _, p in ipairs(parts) do
        lines[#lines + 1] = p
      end
      lines[#lines + 1] = indent .. "end)"
    else
      for _, p in ipairs(parts) do
        lines[#lines + 1] = p
      end
    end
  end
  if #lines == 0 then
    lines[1] = indent .. "-- nothing to change"
  end
  return table.concat(lines, "\n")
end

--- The text of a revision file.
---@param r table {revision, down_revision (list), message, source (where the target came from), up, down}
---@return string
function M.revision(r)
  local nontx = M.needs_nontx(r.up, r.down)
  local all = {}
  for _, c in ipairs(r.up) do
    all[#all + 1] = c
  end
  for _, c in ipairs(r.down) do
    all[#all + 1] = c
  end
  local requires = {}
  if uses(all, "^schema%.") or uses(all, "\n%s*schema%.") then
    requires[#requires + 1] = 'local schema = require "tide.schema"'
  end
  if uses(all, "^rls%.") then
    requires[#requires + 1] = 'local rls = require "tide.rls"'
  end
  if uses(all, "sql%.raw") then
    requires[#requires + 1] = 'local sql = require "tide.sql"'
  end
  local down = "nil"
  if #r.down_revision == 1 then
    down = ddl.lua_string(r.down_revision[1])
  elseif #r.down_revision > 1 then
    local q = {}
    for i, p in ipairs(r.down_revision) do
      q[i] = ddl.lua_string(p)
    end
    down = "{ " .. table.concat(q, ", ") .. " }"
  end
  local out = {
    "-- " .. r.revision .. ": " .. (r.message:gsub("[\r\n]+", " ")),
    "-- Written by `tide new --autogenerate` from " .. r.source .. ": read it before it runs anywhere.",
  }
  if #requires > 0 then
    for _, line in ipairs(requires) do
      out[#out + 1] = line
    end
  end
  out[#out + 1] = ""
  out[#out + 1] = "return {"
  out[#out + 1] = "  revision = " .. ddl.lua_string(r.revision) .. ","
  out[#out + 1] = "  down_revision = " .. down .. ","
  out[#out + 1] = "  message = " .. ddl.lua_string(r.message) .. ","
  if nontx then
    out[#out + 1] = "  -- " .. nontx .. "; each"
    out[#out + 1] = "  -- step is recorded when it finishes, and a rerun after a failure resumes at the next one."
    out[#out + 1] = "  transaction = false,"
  end
  out[#out + 1] = ""
  out[#out + 1] = "  upgrade = function(db)"
  out[#out + 1] = body(r.up, nontx, "    ", true)
  out[#out + 1] = "  end,"
  out[#out + 1] = ""
  out[#out + 1] = "  downgrade = function(db)"
  out[#out + 1] = body(r.down, nontx, "    ")
  out[#out + 1] = "  end,"
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

--- The upgrade and downgrade bodies alone, for `tide diff`.
function M.bodies(up, down)
  local nontx = M.needs_nontx(up, down)
  local out = {}
  if nontx then
    out[#out + 1] = "-- transaction = false: " .. nontx
  end
  out[#out + 1] = "upgrade = function(db)"
  out[#out + 1] = body(up, nontx, "  ", true)
  out[#out + 1] = "end,"
  out[#out + 1] = ""
  out[#out + 1] = "downgrade = function(db)"
  out[#out + 1] = body(down, nontx, "  ")
  out[#out + 1] = "end,"
  return table.concat(out, "\n") .. "\n"
end

--- Changes as an SQL script (`tide dump --format sql`, `tide diff --format sql`).
function M.script(changes)
  local out = {}
  for _, c in ipairs(changes) do
    for _, s in ipairs(c.statements) do
      out[#out + 1] = s.sql:gsub("%s+$", "") .. ";"
    end
  end
  return table.concat(out, "\n") .. (#out > 0 and "\n" or "")
end

--- Changes as the body of a `schema.lua` desired-state function (`tide dump --format lua`).
function M.schema_file(changes, source)
  local all = changes
  local requires = {}
  if uses(all, "^schema%.") then
    requires[#requires + 1] = 'local schema = require "tide.schema"'
  end
  if uses(all, "^rls%.") then
    requires[#requires + 1] = 'local rls = require "tide.rls"'
  end
  if uses(all, "sql%.raw") then
    requires[#requires + 1] = 'local sql = require "tide.sql"'
  end
  local out = { "-- The schema of " .. source .. ", written by `tide dump --format lua`." }
  for _, line in ipairs(requires) do
    out[#out + 1] = line
  end
  out[#out + 1] = ""
  out[#out + 1] = "return function(db)"
  out[#out + 1] = body(changes, false, "  ")
  out[#out + 1] = "end"
  return table.concat(out, "\n") .. "\n"
end

return M
