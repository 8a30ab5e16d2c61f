-- tide.ddl: the statements of one schema change, from catalog model objects (tide.catalog), for
-- tide.diff. Each builder returns a list of statements {sql = "...", lua = "..."|nil}: the SQL, and,
-- where tide's DSL has the operation, the same statement as a DSL call (tide.autogen writes the
-- call; `tide diff --json` and `tide dump --format sql` the SQL). The DSL form builds exactly the
-- SQL's effect: every generated revision is proven by applying it and reading the catalog again.
local catalog = require "tide.catalog"

local M = {}

local ident = catalog.ident

-- Names ------------------------------------------------------------------------------------------

--- The schema objects are created in when a name is not qualified (search_path's first).
M.default_schema = "public"

local function rel_sql(obj)
  if obj.schema == M.default_schema then
    return ident(obj.name)
  end
  return catalog.qualified(obj.schema, obj.name)
end
M.rel_sql = rel_sql

-- A model qname ("public.t" as quoted by catalog.qualified) for SQL: without the default schema.
local function qname_sql(q)
  local prefix = ident(M.default_schema) .. "."
  if q:sub(1, #prefix) == prefix then
    return q:sub(#prefix + 1)
  end
  return q
end
M.qname_sql = qname_sql

local function lua_string(s)
  if not s:find("\n", 1, true) and not s:find("[%c]") then
    if not s:find('"', 1, true) then
      return '"' .. s:gsub("\\", "\\\\") .. '"'
    end
    if not s:find("'", 1, true) then
      return "'" .. s:gsub("\\", "\\\\") .. "'"
    end
  end
  local level = 0
  while s:find("]" .. string.rep("=", level) .. "]", 1, true) or s:sub(-1) == "]" and level == 0 do
    level = level + 1
  end
  local eq = string.rep("=", level)
  -- a long string drops a first newline: keep one that is part of the text
  return "[" .. eq .. "[" .. (s:sub(1, 1) == "\n" and "\n" or "") .. s .. "]" .. eq .. "]"
end
M.lua_string = lua_string

-- Breaks long lines of SQL at spaces outside string literals and quoted names (PostgreSQL
-- stores expressions parsed, so the line breaks change nothing but how the revision reads).
function M.wrap(text, width)
  width = width or 90
  local out = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    while #line > width do
      local cut, i, quote = nil, 1, nil
      while i <= #line do
        local c = line:sub(i, i)
        if quote then
          if c == quote then
            quote = nil
          end
        elseif c == "'" or c == '"' then
          quote = c
        elseif c == " " and i > 20 then
          if i <= width then
            cut = i
          else
            cut = cut or i
            break
          end
        end
        i = i + 1
      end
      if not cut or cut >= #line then
        break
      end
      out[#out + 1] = line:sub(1, cut - 1)
      line = "  " .. line:sub(cut + 1)
    end
    out[#out + 1] = line
  end
  return table.concat(out, "\n")
end

-- An SQL expression as a Lua string for a DSL option.
local function expr_lua(e)
  return lua_string(M.wrap(e))
end

-- The Lua value naming a relation for the DSL: "users" or { schema = "app", name = "users" }.
local function rel_lua(obj)
  if obj.schema == M.default_schema then
    return lua_string(obj.name)
  end
  return string.format("{ schema = %s, name = %s }", lua_string(obj.schema), lua_string(obj.name))
end

-- "{ a, b, c }" from field texts, broken over lines (continuation indented by `indent` plus two)
-- when one line would pass 100 columns.
local function fields_table(fields, indent)
  local one = "{ " .. table.concat(fields, ", ") .. " }"
  if #indent + #one <= 100 then
    return one
  end
  local lines, line = {}, "{ " .. fields[1]
  for i = 2, #fields do
    if #indent + #line + #fields[i] + 4 > 100 then
      lines[#lines + 1] = line .. ","
      line = indent .. "  " .. fields[i]
    else
      line = line .. ", " .. fields[i]
    end
  end
  lines[#lines + 1] = line .. " }"
  return table.concat(lines, "\n")
end

local function string_list(list)
  local quoted = {}
  for i, s in ipairs(list) do
    quoted[i] = lua_string(s)
  end
  return "{ " .. table.concat(quoted, ", ") .. " }"
end

local function literal(s)
  if s == nil then
    return "NULL"
  end
  local q = s:gsub("'", "''")
  if q:find("\\", 1, true) then
    return "E'" .. q:gsub("\\", "\\\\") .. "'"
  end
  return "'" .. q .. "'"
end
M.literal = literal

local function exec(sql)
  return { sql = sql }
end

local function dsl(sql, lua)
  return { sql = sql, lua = lua }
end

-- Columns ---------------------------------------------------------------------------------------

-- Column types the DSL accepts as written (format_type's spellings); anything else is sql.raw.
local DSL_TYPES = {}
for t in ([[text|integer|bigint|smallint|boolean|timestamp with time zone|timestamp without time zone|uuid|jsonb|
json|numeric|date|bytea|inet|cidr|macaddr|macaddr8|real|double precision|interval|time without time zone|
time with time zone|character|character varying|money|xml|tsvector|tsquery|point|line|lseg|box|path|polygon|
circle|int4range|int8range|numrange|tsrange|tstzrange|daterange|oid|regclass|bit|bit varying]]):gmatch("[^|]+") do
  DSL_TYPES[t:gsub("^%s+", ""):gsub("%s+$", "")] = true
end

local function dsl_type(type_text)
  local base = type_text:gsub("%[%]", ""):gsub("%(%d+[,%d]*%)", "")
  if DSL_TYPES[base] then
    return lua_string(type_text)
  end
  return "sql.raw(" .. lua_string(type_text) .. ")"
end

-- A column default as the DSL writes it: a plain value when the default is a literal of the
-- column's own type (what PostgreSQL stores for default = "x"), else sql.raw(expression).
local CASTS = { text = "text", ["character varying"] = "character varying", character = "bpchar", jsonb = "jsonb",
  json = "json", uuid = "uuid", date = "date" }
local function dsl_default(col)
  local d = col.default
  local base = col.type:gsub("%(%d+[,%d]*%)", "")
  if (d == "true" or d == "false") and base == "boolean" then
    return d
  end
  if d:match("^%-?%d+$") and (base == "integer" or base == "bigint" or base == "smallint") then
    local n = math.tointeger(tonumber(d))
    if n and n >= 0 then
      return d
    end
  end
  local inner, cast = d:match("^'(.*)'::([%a ]+)$")
  local plain = inner and not inner:gsub("''", ""):find("'", 1, true) and not inner:find("\\", 1, true)
  if plain and CASTS[base] == cast then
    return lua_string((inner:gsub("''", "'")))
  end
  return "sql.raw(" .. lua_string(d) .. ")"
end

-- "serial"/"bigserial" columns: the default and owned sequence they stand for (tide.diff decides).
local SERIALS = { integer = "serial", bigint = "bigserial", smallint = "smallserial" }

local function column_sql(col)
  local parts = { ident(col.name), col.serial and SERIALS[col.type] or col.type }
  if col.collation then
    parts[#parts + 1] = "COLLATE " .. col.collation
  end
  if col.identity then
    parts[#parts + 1] = "GENERATED " .. col.identity:upper() .. " AS IDENTITY"
  end
  if col.generated then
    parts[#parts + 1] = "GENERATED ALWAYS AS (" .. col.generated .. ") STORED"
  end
  if col.default and not col.serial then
    parts[#parts + 1] = "DEFAULT " .. col.default
  end
  if col.not_null and not col.identity then
    parts[#parts + 1] = "NOT NULL"
  end
  return table.concat(parts, " ")
end
M.column_sql = column_sql

-- The DSL's column table, or nil when the DSL cannot say it (generated, collation).
local function column_lua(col, not_null)
  if col.generated or col.collation then
    return nil
  end
  local parts = { lua_string(col.name), col.serial and lua_string(SERIALS[col.type]) or dsl_type(col.type) }
  if col.identity then
    parts[#parts + 1] = "identity = " .. lua_string(col.identity)
  end
  if col.default and not col.serial then
    parts[#parts + 1] = "default = " .. dsl_default(col)
  end
  if not_null and not col.identity then
    parts[#parts + 1] = "not_null = true"
  end
  return fields_table(parts, "    ")
end

-- Constraints ------------------------------------------------------------------------------------

local function split_idents(text)
  local list = {}
  for part in (text .. ","):gmatch("%s*([^,]+),") do
    local name = part:match('^"(.*)"$')
    if name then
      name = name:gsub('""', '"')
    elseif part:match("^[%l_][%l%d_$]*$") then
      name = part
    else
      return nil
    end
    list[#list + 1] = name
  end
  return list
end

local ACTIONS = { CASCADE = "cascade", RESTRICT = "restrict", ["SET NULL"] = "set null",
  ["SET DEFAULT"] = "set default" }

-- A constraint as an entry of create_table's `constraints`, or nil when the DSL cannot say it.
local function constraint_lua(c)
  local def = c.definition
  local name = "name = " .. lua_string(c.name)
  local cols = def:match("^PRIMARY KEY %(([^()]*)%)$")
  if cols and split_idents(cols) then
    return fields_table({ name, "primary_key = " .. string_list(split_idents(cols)) }, "    ")
  end
  cols = def:match("^UNIQUE %(([^()]*)%)$")
  if cols and split_idents(cols) then
    return fields_table({ name, "unique = " .. string_list(split_idents(cols)) }, "    ")
  end
  local expr = def:match("^CHECK %((.*)%)$")
  if expr and not def:find(" NOT VALID$") and not def:find(" NO INHERIT$") then
    return fields_table({ name, "check = " .. expr_lua(expr) }, "    ")
  end
  local from, target, to, rest = def:match("^FOREIGN KEY %(([^()]*)%) REFERENCES ([^()]+)%(([^()]*)%)(.*)$")
  if from and split_idents(from) and split_idents(to) then
    local options = {}
    for _, clause in ipairs { "DELETE", "UPDATE" } do
      local action = rest:match(" ON " .. clause .. " (SET NULL)") or rest:match(" ON " .. clause .. " (SET DEFAULT)")
        or rest:match(" ON " .. clause .. " (%u+)")
      if action then
        if not ACTIONS[action] then
          return nil
        end
        options[#options + 1] = "on_" .. clause:lower() .. " = " .. lua_string(ACTIONS[action])
        rest = rest:gsub(" ON " .. clause .. " " .. action, "", 1)
      end
    end
    if rest ~= "" then -- MATCH FULL, DEFERRABLE, NOT VALID: SQL
      return nil
    end
    local table_lua
    local tschema, tname = target:match('^(.-)%.(.+)$')
    local plain = target:match("^[%l_][%l%d_$]*$") or target:match('^"[^"]*"$')
    if plain then
      local n = target:match('^"(.*)"$')
      table_lua = lua_string(n and n:gsub('""', '"') or target)
    elseif tschema and tschema:match("^[%l_][%l%d_$]*$") and tname:match("^[%l_][%l%d_$]*$") then
      table_lua = string.format("{ schema = %s, name = %s }", lua_string(tschema), lua_string(tname))
    else
      return nil
    end
    local fields = { name, "foreign_key = " .. string_list(split_idents(from)),
      string.format("references = { table = %s, columns = %s }", table_lua, string_list(split_idents(to))) }
    for _, o in ipairs(options) do
      fields[#fields + 1] = o
    end
    return fields_table(fields, "    ")
  end
  return nil
end

local function constraint_sql(c)
  return "CONSTRAINT " .. ident(c.name) .. " " .. c.definition
end

-- Tables -----------------------------------------------------------------------------------------

local CONSTRAINT_ORDER = { ["primary key"] = 1, unique = 2, exclusion = 3, check = 4, ["foreign key"] = 5 }

--- CREATE TABLE with its columns and the given constraints (others follow as their own changes).
function M.create_table(t, constraints)
  constraints = { table.unpack(constraints) }
  table.sort(constraints, function(a, b)
    local ra, rb = CONSTRAINT_ORDER[a.type] or 9, CONSTRAINT_ORDER[b.type] or 9
    if ra ~= rb then
      return ra < rb
    end
    return a.name < b.name
  end)
  local lines, lua_columns, lua_constraints, dsl_ok = {}, {}, {}, true
  if t.partition_of then
    local head = "CREATE TABLE " .. rel_sql(t) .. " PARTITION OF " .. qname_sql(t.partition_of)
    local extra = {}
    for _, c in ipairs(constraints) do
      extra[#extra + 1] = "  " .. constraint_sql(c)
    end
    local sql = head .. (#extra > 0 and (" (\n" .. table.concat(extra, ",\n") .. "\n)") or "") .. " " .. t.bound
    if t.partition_key then
      sql = sql .. " PARTITION BY " .. t.partition_key
    end
    return { exec(sql) }
  end
  for _, col in ipairs(t.columns) do
    lines[#lines + 1] = "  " .. column_sql(col)
    local l = column_lua(col, col.not_null)
    if l then
      lua_columns[#lua_columns + 1] = "    " .. l .. ","
    else
      dsl_ok = false
    end
  end
  for _, c in ipairs(constraints) do
    lines[#lines + 1] = "  " .. constraint_sql(c)
    local l = constraint_lua(c)
    if l then
      lua_constraints[#lua_constraints + 1] = "    " .. l .. ","
    else
      dsl_ok = false
    end
  end
  local sql = string.format("CREATE %sTABLE %s (\n%s\n)", t.unlogged and "UNLOGGED " or "", rel_sql(t),
    table.concat(lines, ",\n"))
  if t.partition_key then
    sql = sql .. " PARTITION BY " .. t.partition_key
  end
  if t.options then
    sql = sql .. " WITH (" .. t.options .. ")"
  end
  if not dsl_ok or #t.columns == 0 or t.unlogged or t.partition_key or t.options then
    return { exec(sql) }
  end
  local lua = { "schema.create_table(db, " .. rel_lua(t) .. ", {", "  columns = {" }
  for _, l in ipairs(lua_columns) do
    lua[#lua + 1] = l
  end
  lua[#lua + 1] = "  },"
  if #lua_constraints > 0 then
    lua[#lua + 1] = "  constraints = {"
    for _, l in ipairs(lua_constraints) do
      lua[#lua + 1] = l
    end
    lua[#lua + 1] = "  },"
  end
  lua[#lua + 1] = "})"
  return { dsl(sql, table.concat(lua, "\n")) }
end

function M.drop_table(t)
  return { dsl("DROP TABLE " .. rel_sql(t), "schema.drop_table(db, " .. rel_lua(t) .. ")") }
end

function M.rename_table(t, new_name)
  return { exec("ALTER TABLE " .. rel_sql(t) .. " RENAME TO " .. ident(new_name)) }
end

--- ADD COLUMN. A NOT NULL column without a default is added nullable and then set NOT NULL, so a
--- table with rows fails at the second step with a clear message, after a place to backfill.
function M.add_column(t, col)
  local out = {}
  local needs_backfill = col.not_null and not col.default and not col.identity and not col.generated
    and not col.serial
  local shown = needs_backfill and setmetatable({ not_null = false }, { __index = col }) or col
  local sql = "ALTER TABLE " .. rel_sql(t) .. " ADD COLUMN " .. column_sql(shown)
  local l = column_lua(col, col.not_null and not needs_backfill)
  out[1] = l and dsl(sql, "schema.add_column(db, " .. rel_lua(t) .. ", " .. l .. ")") or exec(sql)
  if needs_backfill then
    out[2] = M.set_not_null(t, col, true)[1]
    out[2].note = "existing rows need a value for " .. col.name .. " before it can be NOT NULL: backfill here"
  end
  return out
end

function M.drop_column(t, col)
  return { dsl("ALTER TABLE " .. rel_sql(t) .. " DROP COLUMN " .. ident(col.name),
    "schema.drop_column(db, " .. rel_lua(t) .. ", " .. lua_string(col.name) .. ")") }
end

function M.rename_column(t, old, new)
  return { dsl("ALTER TABLE " .. rel_sql(t) .. " RENAME COLUMN " .. ident(old) .. " TO " .. ident(new),
    "schema.rename_column(db, " .. rel_lua(t) .. ", " .. lua_string(old) .. ", " .. lua_string(new) .. ")") }
end

function M.set_not_null(t, col, on)
  return { dsl(string.format("ALTER TABLE %s ALTER COLUMN %s %s NOT NULL", rel_sql(t), ident(col.name),
    on and "SET" or "DROP"), string.format("schema.alter_column(db, %s, %s, { not_null = %s })", rel_lua(t),
    lua_string(col.name), tostring(on))) }
end

function M.set_default(t, col)
  if not col.default then
    return { dsl(string.format("ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT", rel_sql(t), ident(col.name)),
      string.format("schema.alter_column(db, %s, %s, { drop_default = true })", rel_lua(t), lua_string(col.name))) }
  end
  return { dsl(string.format("ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s", rel_sql(t), ident(col.name),
    col.default), string.format("schema.alter_column(db, %s, %s, { default = %s })", rel_lua(t),
    lua_string(col.name), dsl_default(col))) }
end

--- ALTER COLUMN ... TYPE, converting values through text when PostgreSQL has no implicit cast.
function M.set_type(t, col, using)
  local sql = string.format("ALTER TABLE %s ALTER COLUMN %s TYPE %s%s", rel_sql(t), ident(col.name), col.type,
    col.collation and (" COLLATE " .. col.collation) or "")
  if using then
    sql = sql .. " USING (" .. using .. ")"
  end
  if col.collation then
    return { exec(sql) }
  end
  return { dsl(sql, string.format("schema.alter_column(db, %s, %s, { type = %s%s })", rel_lua(t),
    lua_string(col.name), dsl_type(col.type), using and (", using = " .. lua_string(using)) or "")) }
end

function M.identity(t, col, old)
  local target = string.format("ALTER TABLE %s ALTER COLUMN %s ", rel_sql(t), ident(col.name))
  if not col.identity then
    return { exec(target .. "DROP IDENTITY") }
  elseif not old then
    return { exec(target .. "ADD GENERATED " .. col.identity:upper() .. " AS IDENTITY") }
  end
  return { exec(target .. "SET GENERATED " .. col.identity:upper()) }
end

function M.add_constraint(t, c, existing)
  local sql = "ALTER TABLE " .. rel_sql(t) .. " ADD " .. constraint_sql(c)
  -- on a table that has rows, check and foreign keys are added NOT VALID and validated
  -- separately: the validation then takes a weaker lock and does not block writes
  if existing and (c.type == "check" or c.type == "foreign key") and not c.definition:find(" NOT VALID$") then
    return { exec(sql .. " NOT VALID"),
      exec("ALTER TABLE " .. rel_sql(t) .. " VALIDATE CONSTRAINT " .. ident(c.name)) }
  end
  return { exec(sql) }
end

function M.drop_constraint(t, c)
  return { exec("ALTER TABLE " .. rel_sql(t) .. " DROP CONSTRAINT " .. ident(c.name)) }
end

function M.rename_constraint(t, old, new)
  return { exec("ALTER TABLE " .. rel_sql(t) .. " RENAME CONSTRAINT " .. ident(old) .. " TO " .. ident(new)) }
end

-- Indexes ----------------------------------------------------------------------------------------

--- CREATE INDEX from pg_get_indexdef's text; CONCURRENTLY on an existing table when allowed.
function M.create_index(t, x, concurrently)
  local def = x.definition
  local unique = def:find("^CREATE UNIQUE INDEX ") ~= nil
  local name, cols, where = def:gsub("^CREATE UNIQUE ", "CREATE ", 1)
    :match("^CREATE INDEX (%S+) ON %S+ USING btree %(([^()]*)%)(.*)$")
  local sql = def
  if concurrently then
    sql = def:gsub(" INDEX ", " INDEX CONCURRENTLY ", 1) -- the first " INDEX " is the keyword
  end
  sql = sql:gsub(" ON " .. (ident(M.default_schema) .. "."):gsub("%p", "%%%0"), " ON ", 1)
  if not name then
    return { exec(sql) }
  end
  local list = split_idents(cols)
  local predicate = where:match("^ WHERE %((.*)%)$")
  if not list or (where ~= "" and not predicate) then
    return { exec(sql) }
  end
  local options = {}
  local default_name = "ix_" .. t.name .. "_" .. table.concat(list, "_")
  if x.name ~= default_name then
    options[#options + 1] = "name = " .. lua_string(x.name)
  end
  if unique then
    options[#options + 1] = "unique = true"
  end
  if predicate then
    options[#options + 1] = "where = " .. expr_lua(predicate)
  end
  if concurrently then
    options[#options + 1] = "concurrently = true"
  end
  local cols_lua = #list == 1 and lua_string(list[1]) or string_list(list)
  return { dsl(sql, string.format("schema.create_index(db, %s, %s%s)", rel_lua(t), cols_lua,
    #options > 0 and (", { " .. table.concat(options, ", ") .. " }") or "")) }
end

function M.drop_index(t, x, concurrently)
  local obj = { schema = t.schema, name = x.name }
  return { dsl(string.format("DROP INDEX %s%s", concurrently and "CONCURRENTLY " or "", rel_sql(obj)),
    string.format("schema.drop_index(db, %s%s)", rel_lua(obj), concurrently and ", { concurrently = true }" or "")) }
end

function M.rename_index(t, old, new)
  return { exec(string.format("ALTER INDEX %s RENAME TO %s", rel_sql { schema = t.schema, name = old },
    ident(new))) }
end

--- A partition detached from its old parent and attached to its new one (either may be none).
function M.partition(t, old)
  local out = {}
  if old.partition_of then
    out[#out + 1] = exec("ALTER TABLE " .. qname_sql(old.partition_of) .. " DETACH PARTITION " .. rel_sql(t))
  end
  if t.partition_of then
    out[#out + 1] = exec("ALTER TABLE " .. qname_sql(t.partition_of) .. " ATTACH PARTITION " .. rel_sql(t) .. " "
      .. t.bound)
  end
  return out
end

-- Row-level security and policies ------------------------------------------------------------------

function M.rls(t, old)
  local out = {}
  local name = rel_sql(t)
  if t.rls and not old.rls then
    if t.force_rls and not old.force_rls then
      return { dsl("ALTER TABLE " .. name .. " ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY",
        "rls.enable_rls(db, " .. rel_lua(t) .. ", { force = true })") }
    end
    out[#out + 1] = dsl("ALTER TABLE " .. name .. " ENABLE ROW LEVEL SECURITY", "rls.enable_rls(db, " .. rel_lua(t)
      .. ")")
  elseif not t.rls and old.rls then
    if old.force_rls and not t.force_rls then
      return { dsl("ALTER TABLE " .. name .. " NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY",
        "rls.disable_rls(db, " .. rel_lua(t) .. ")") }
    end
    out[#out + 1] = exec("ALTER TABLE " .. name .. " DISABLE ROW LEVEL SECURITY")
  end
  if t.force_rls ~= old.force_rls then
    out[#out + 1] = exec("ALTER TABLE " .. name .. (t.force_rls and " FORCE" or " NO FORCE") .. " ROW LEVEL SECURITY")
  end
  return out
end

local function roles_lua(roles)
  local list = {}
  for role in roles:gmatch("[^,%s]+") do
    local name = role:match('^"(.*)"$')
    list[#list + 1] = name and name:gsub('""', '"') or role
  end
  if #list == 1 then
    return lua_string(list[1])
  end
  return string_list(list)
end

function M.create_policy(t, p)
  local sql = "CREATE POLICY " .. ident(p.name) .. " ON " .. rel_sql(t)
  local options = {}
  if not p.permissive then
    sql = sql .. " AS RESTRICTIVE"
    options[#options + 1] = 'as = "restrictive"'
  end
  if p.command ~= "all" then
    sql = sql .. " FOR " .. p.command:upper()
  end
  options[#options + 1] = "command = " .. lua_string(p.command)
  if p.roles ~= "public" then
    sql = sql .. " TO " .. p.roles
    options[#options + 1] = "to = " .. roles_lua(p.roles)
  end
  if p.using then
    sql = sql .. " USING (" .. p.using .. ")"
    options[#options + 1] = "using = " .. expr_lua(p.using)
  end
  if p.with_check then
    sql = sql .. " WITH CHECK (" .. p.with_check .. ")"
    options[#options + 1] = "with_check = " .. expr_lua(p.with_check)
  end
  if not p.using and not p.with_check then
    return { exec(sql) }
  end
  return { dsl(sql, string.format("rls.create_policy(db, %s, %s, {\n  %s,\n})", rel_lua(t), lua_string(p.name),
    table.concat(options, ",\n  "))) }
end

function M.drop_policy(t, p)
  return { dsl("DROP POLICY " .. ident(p.name) .. " ON " .. rel_sql(t),
    "rls.drop_policy(db, " .. rel_lua(t) .. ", " .. lua_string(p.name) .. ")") }
end

--- ALTER POLICY for what it can change (roles, USING, WITH CHECK); nil when it must be recreated.
function M.alter_policy(t, p, old)
  if p.permissive ~= old.permissive or p.command ~= old.command or (old.using and not p.using)
    or (old.with_check and not p.with_check) then
    return nil
  end
  local sql = "ALTER POLICY " .. ident(p.name) .. " ON " .. rel_sql(t)
  if p.roles ~= old.roles then
    sql = sql .. " TO " .. p.roles
  end
  if p.using ~= old.using then
    sql = sql .. " USING (" .. p.using .. ")"
  end
  if p.with_check ~= old.with_check then
    sql = sql .. " WITH CHECK (" .. p.with_check .. ")"
  end
  return { exec(sql) }
end

function M.rename_policy(t, old, new)
  return { exec("ALTER POLICY " .. ident(old) .. " ON " .. rel_sql(t) .. " RENAME TO " .. ident(new)) }
end

-- Triggers ---------------------------------------------------------------------------------------

local ENABLED = { O = nil, D = "DISABLE TRIGGER", R = "ENABLE REPLICA TRIGGER", A = "ENABLE ALWAYS TRIGGER" }

function M.create_trigger(t, tg)
  local out = { exec((tg.definition:gsub(" ON " .. (ident(M.default_schema) .. "."):gsub("%p", "%%%0"), " ON ", 1))) }
  if ENABLED[tg.enabled] then
    out[2] = exec("ALTER TABLE " .. rel_sql(t) .. " " .. ENABLED[tg.enabled] .. " " .. ident(tg.name))
  end
  return out
end

function M.drop_trigger(t, tg)
  return { exec("DROP TRIGGER " .. ident(tg.name) .. " ON " .. rel_sql(t)) }
end

-- Views ------------------------------------------------------------------------------------------

function M.create_view(v, replace)
  local def = v.definition:gsub(";%s*$", "")
  local kind = v.materialized and "MATERIALIZED VIEW" or "VIEW"
  return { exec(string.format("CREATE %s%s %s%s AS\n%s", replace and "OR REPLACE " or "", kind, rel_sql(v),
    v.options and (" WITH (" .. v.options .. ")") or "", def)) }
end

function M.drop_view(v)
  return { exec(string.format("DROP %s %s", v.materialized and "MATERIALIZED VIEW" or "VIEW", rel_sql(v))) }
end

--- ALTER VIEW|TABLE ... RESET (removed options), SET (options).
function M.view_options(v, old, what)
  what = what or "VIEW"
  local out = {}
  local name = rel_sql(v)
  local old_keys = {}
  for item in (old.options or ""):gmatch("[^,%s][^,]*") do
    old_keys[item:match("^([^=]+)")] = true
  end
  local new_keys = {}
  for item in (v.options or ""):gmatch("[^,%s][^,]*") do
    new_keys[item:match("^([^=]+)")] = true
  end
  local reset = {}
  for k in pairs(old_keys) do
    if not new_keys[k] then
      reset[#reset + 1] = k
    end
  end
  table.sort(reset)
  if #reset > 0 then
    out[#out + 1] = exec("ALTER " .. what .. " " .. name .. " RESET (" .. table.concat(reset, ", ") .. ")")
  end
  if v.options then
    out[#out + 1] = exec("ALTER " .. what .. " " .. name .. " SET (" .. v.options .. ")")
  end
  return out
end

-- Functions --------------------------------------------------------------------------------------

function M.create_function(f, replace)
  local def = f.definition:gsub("%s+$", "")
  if not replace then
    def = def:gsub("^CREATE OR REPLACE ", "CREATE ", 1)
  end
  return { exec(def) }
end

function M.drop_function(f)
  local name = f.schema == M.default_schema and ident(f.name) or catalog.qualified(f.schema, f.name)
  return { exec(string.format("DROP %s %s(%s)", f.kind:upper(), name, f.args)) }
end

-- Types, sequences, schemas, extensions ------------------------------------------------------------

function M.create_enum(t)
  local labels = {}
  for i, l in ipairs(t.labels) do
    labels[i] = literal(l)
  end
  return { exec(string.format("CREATE TYPE %s AS ENUM (%s)", rel_sql(t), table.concat(labels, ", "))) }
end

function M.add_enum_value(t, label, before, after)
  local where = ""
  if before then
    where = " BEFORE " .. literal(before)
  elseif after then
    where = " AFTER " .. literal(after)
  end
  return { exec(string.format("ALTER TYPE %s ADD VALUE %s%s", rel_sql(t), literal(label), where)) }
end

function M.create_domain(t)
  local sql = string.format("CREATE DOMAIN %s AS %s", rel_sql(t), t.base)
  if t.default then
    sql = sql .. " DEFAULT " .. t.default
  end
  if t.not_null then
    sql = sql .. " NOT NULL"
  end
  for _, c in ipairs(t.checks) do
    if not c.definition:match("^NOT NULL") then
      sql = sql .. " CONSTRAINT " .. ident(c.name) .. " " .. c.definition
    end
  end
  return { exec(sql) }
end

function M.drop_type(t)
  return { exec(string.format("DROP %s %s", t.kind == "domain" and "DOMAIN" or "TYPE", rel_sql(t))) }
end

function M.rename_type(t, new)
  return { exec(string.format("ALTER TYPE %s RENAME TO %s", rel_sql(t), ident(new))) }
end

local function sequence_options(s, old)
  local parts = {}
  local function opt(key, text)
    if not old or s[key] ~= old[key] then
      parts[#parts + 1] = text
    end
  end
  opt("type", "AS " .. s.type)
  opt("increment", "INCREMENT BY " .. s.increment)
  opt("min", "MINVALUE " .. s.min)
  opt("max", "MAXVALUE " .. s.max)
  opt("start", "START WITH " .. s.start)
  opt("cache", "CACHE " .. s.cache)
  opt("cycle", s.cycle and "CYCLE" or "NO CYCLE")
  return table.concat(parts, " ")
end

function M.create_sequence(s)
  return { exec("CREATE SEQUENCE " .. rel_sql(s) .. " " .. sequence_options(s)) }
end

function M.alter_sequence(s, old)
  return { exec("ALTER SEQUENCE " .. rel_sql(s) .. " " .. sequence_options(s, old)) }
end

function M.sequence_owner(s)
  local owner = s.owned_by and (qname_sql(s.owned_by.table) .. "." .. ident(s.owned_by.column)) or "NONE"
  return { exec("ALTER SEQUENCE " .. rel_sql(s) .. " OWNED BY " .. owner) }
end

function M.drop_sequence(s)
  return { exec("DROP SEQUENCE " .. rel_sql(s)) }
end

function M.create_schema(s)
  return { exec("CREATE SCHEMA " .. ident(s.name)) }
end

function M.drop_schema(s)
  return { exec("DROP SCHEMA " .. ident(s.name)) }
end

function M.create_extension(e)
  return { exec(string.format("CREATE EXTENSION %s WITH SCHEMA %s", ident(e.name), ident(e.schema))) }
end

function M.drop_extension(e)
  return { exec("DROP EXTENSION " .. ident(e.name)) }
end

-- Comments and privileges -----------------------------------------------------------------------------

--- COMMENT ON <what> IS ...; `what` is the object clause ("TABLE users", "COLUMN users.email").
function M.comment(what, text)
  return { exec(string.format("COMMENT ON %s IS %s", what, literal(text))) }
end

-- ACL entries grouped: {grantee -> {privileges}} for grants with and without grant option.
local PRIVILEGE_WORDS = { SELECT = "select", INSERT = "insert", UPDATE = "update", DELETE = "delete",
  TRUNCATE = "truncate", REFERENCES = "references", TRIGGER = "trigger", USAGE = "usage", CREATE = "create" }

--- GRANT/REVOKE statements turning ACL list `old` into `new` on object clause `on` ("TABLE users");
--- dsl_on: the DSL's target (a Lua expression) when grant/revoke can say it, else nil.
function M.privileges(on, old, new, dsl_on, columns)
  local had, has = {}, {}
  for _, item in ipairs(old) do
    had[item] = true
  end
  for _, item in ipairs(new) do
    has[item] = true
  end
  -- grantee -> {privileges} for: revoke, revoke grant option, grant, grant with grant option
  local groups = { revoke = {}, revoke_option = {}, grant = {}, grant_option = {} }
  local order = {}
  local function put(kind, grantee, privilege)
    local g = groups[kind]
    if not g[grantee] then
      g[grantee] = {}
      order[#order + 1] = { kind, grantee }
    end
    table.insert(g[grantee], privilege)
  end
  local function parse(item)
    local grantee, privilege, star = item:match("^(.-)=(%u+)(%*?)$")
    return grantee, privilege, star == "*"
  end
  for _, item in ipairs(old) do
    if not has[item] then
      local grantee, privilege, option = parse(item)
      if option and has[grantee .. "=" .. privilege] then
        put("revoke_option", grantee, privilege)
      elseif not (not option and has[grantee .. "=" .. privilege .. "*"]) then
        put("revoke", grantee, privilege)
      end
    end
  end
  for _, item in ipairs(new) do
    if not had[item] then
      local grantee, privilege, option = parse(item)
      put(option and "grant_option" or "grant", grantee, privilege)
    end
  end
  local out = {}
  for _, entry in ipairs(order) do
    local kind, grantee = entry[1], entry[2]
    local privileges = groups[kind][grantee]
    local cols = columns and (" (" .. columns .. ")") or ""
    local words = table.concat(privileges, cols .. ", ") .. cols
    local sql
    if kind == "revoke" then
      sql = string.format("REVOKE %s ON %s FROM %s", words, on, grantee)
    elseif kind == "revoke_option" then
      sql = string.format("REVOKE GRANT OPTION FOR %s ON %s FROM %s", words, on, grantee)
    else
      sql = string.format("GRANT %s ON %s TO %s%s", words, on, grantee,
        kind == "grant_option" and " WITH GRANT OPTION" or "")
    end
    local lua
    if dsl_on and (kind == "revoke" or kind == "grant") and not columns then
      local names, ok = {}, true
      for i, p in ipairs(privileges) do
        names[i] = PRIVILEGE_WORDS[p]
        ok = ok and names[i] ~= nil
      end
      local role = grantee == "PUBLIC" and "public" or (grantee:match('^"(.*)"$') or grantee):gsub('""', '"')
      if ok and (grantee == "PUBLIC" or (role ~= "public" and role ~= "current_user" and role ~= "session_user"
          and role ~= "current_role")) then
        lua = string.format("schema.%s(db, %s, %s, %s)", kind, #names == 1 and lua_string(names[1])
          or string_list(names), dsl_on, lua_string(role))
      end
    end
    out[#out + 1] = { sql = sql, lua = lua }
  end
  return out
end

M.rel_lua = rel_lua

return M
