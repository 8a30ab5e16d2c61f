-- tide.schema: the schema DSL for revision files (tables, columns, indexes, grants, raw SQL).
--
--   local schema = require "tide.schema"
--   schema.create_table(db, "users", { columns = { { "id", "bigint", identity = "always",
--     primary_key = true }, { "email", "text", not_null = true } } })
--
-- Every function takes the `db` the engine passes to upgrade/downgrade as its first argument,
-- builds exactly one SQL statement and runs it with one `db:exec` call, so a failing statement is
-- identifiable and a dry run that records `db:exec` sees every statement. The pure builders are
-- exposed as `schema.sql.<function>(...) -> string` with the same arguments minus `db`.
-- Identifiers go through tide.sql's one quoting function; values through its one literal
-- function (or sql.raw for an expression); expressions (check, where, using) are SQL text
-- written by the revision's author. Unknown options and types raise with a suggestion.
-- Row-level security lives in tide.rls.

local errors = require "tide.errors"
local sql = require "tide.sql"
local dsl = require "tide.dsl"

-- `db` is a tide.DB (lua/tide/db.lua, the engine's): db:exec(sql) runs statements without
-- parameters, db:query(sql, ...) runs one statement with $1..$n parameters and returns rows,
-- db:one(sql, ...) the first row or nil, db.null is NULL. The DSL only ever calls db:exec.

local schema = {}
local build = {}
schema.sql = build

--------------------------------------------------------------------------------------------------
-- Column types
--------------------------------------------------------------------------------------------------

-- PostgreSQL types a column may have, with the largest number of modifiers each accepts.
-- A whitelist so that `intger` or `timestampz` fails while the revision is written, not after
-- half of it ran; anything else (enums, domains, extension types) goes through sql.raw.
-- Listed most common first: ties in the suggestion go to the earlier entry.
local TYPE_LIST = {
  { "text", 0 }, { "integer", 0 }, { "bigint", 0 }, { "boolean", 0 }, { "timestamptz", 1 },
  { "uuid", 0 }, { "jsonb", 0 }, { "varchar", 1 }, { "numeric", 2 }, { "smallint", 0 },
  { "date", 0 }, { "timestamp", 1 }, { "bytea", 0 }, { "json", 0 }, { "inet", 0 },
  { "real", 0 }, { "double precision", 0 }, { "interval", 1 }, { "time", 1 }, { "timetz", 1 },
  { "char", 1 }, { "character", 1 }, { "character varying", 1 }, { "decimal", 2 },
  { "int", 0 }, { "int2", 0 }, { "int4", 0 }, { "int8", 0 }, { "float4", 0 }, { "float8", 0 },
  { "float", 1 }, { "bool", 0 }, { "serial", 0 }, { "bigserial", 0 }, { "smallserial", 0 },
  { "money", 0 }, { "timestamp with time zone", 1 }, { "timestamp without time zone", 1 },
  { "time with time zone", 1 }, { "time without time zone", 1 }, { "cidr", 0 },
  { "macaddr", 0 }, { "macaddr8", 0 }, { "bit", 1 }, { "bit varying", 1 }, { "varbit", 1 },
  { "xml", 0 }, { "tsvector", 0 }, { "tsquery", 0 }, { "point", 0 }, { "line", 0 },
  { "lseg", 0 }, { "box", 0 }, { "path", 0 }, { "polygon", 0 }, { "circle", 0 },
  { "int4range", 0 }, { "int8range", 0 }, { "numrange", 0 }, { "tsrange", 0 },
  { "tstzrange", 0 }, { "daterange", 0 }, { "oid", 0 }, { "regclass", 0 },
}
local TYPE_MODIFIERS, TYPE_NAMES = {}, {}
for i, entry in ipairs(TYPE_LIST) do
  TYPE_MODIFIERS[entry[1]] = entry[2]
  TYPE_NAMES[i] = entry[1]
end

---Checks a column type and returns its canonical spelling: lower case, single spaces, no
---spaces inside modifiers: "VARCHAR( 255 )" → "varchar(255)", "text []" → "text[]".
---@param type_name string|tide.sql.Raw
---@param context string for messages, e.g. "column `id` in create_table"
---@return string
local function column_type(type_name, context)
  if sql.is_raw(type_name) then
    return type_name.sql
  end
  if type(type_name) ~= "string" then
    dsl.fail("%s: the type must be a string or sql.raw(...), got %s", context, type(type_name))
  end
  local text = type_name:lower():gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  local function unknown(base)
    local best = errors.suggest(base, TYPE_NAMES)
    dsl.fail("unknown column type `%s` for %s: %s", type_name, context, best
      and ("did you mean `%s`?"):format(best)
      or "not a built-in type tide knows; write sql.raw(...) for enums, domains and extension types")
  end
  if text:find("[^a-z0-9 (),%[%]]") then
    unknown(text)
  end
  -- array dimensions: [] or [n], any number of them
  local dimensions = ""
  while true do
    local rest, dimension = text:match("^(.-) ?(%[%d*%])$")
    if rest == nil then
      break
    end
    text, dimensions = rest, dimension .. dimensions
  end
  -- modifiers: "numeric(10,2)", or in the middle for "timestamp(3) with time zone"
  local before, modifiers, after = text:match("^([^()]-) ?%(([^()]*)%) ?([^()]*)$")
  if before == nil then
    if text:find("[()]") then
      unknown(text)
    end
    before, after = text, ""
  end
  local base = after == "" and before or before .. " " .. after
  local allowed = TYPE_MODIFIERS[base]
  if allowed == nil then
    unknown(base)
  end
  local canonical = before
  if modifiers then
    local numbers = {}
    for part in (modifiers .. ","):gmatch("([^,]*),") do
      local number = part:match("^ ?(%d+) ?$")
      if number == nil then
        dsl.fail("bad type modifier in `%s` for %s: expected numbers like (10) or (10,2)",
          type_name, context)
      end
      numbers[#numbers + 1] = number
    end
    if #numbers > allowed then
      dsl.fail("type `%s` for %s takes %s", type_name, context,
        allowed == 0 and "no modifiers" or ("at most %d modifier%s"):format(allowed,
          allowed == 1 and "" or "s"))
    end
    if after ~= "" and before ~= "time" and before ~= "timestamp" then
      unknown(base)
    end
    canonical = canonical .. "(" .. table.concat(numbers, ",") .. ")"
  end
  if after ~= "" then
    canonical = canonical .. " " .. after
  end
  return canonical .. dimensions
end

--------------------------------------------------------------------------------------------------
-- Columns and constraints
--------------------------------------------------------------------------------------------------

local REFERENTIAL_ACTIONS = { "cascade", "restrict", "set null", "set default", "no action" }

---@class tide.References
---@field table string|tide.QualifiedName the referenced table
---@field column string? the referenced column (default: its primary key)
---@field columns string[]? the referenced columns, for a multi-column foreign key

---" REFERENCES "t" ("c") ON DELETE CASCADE ON UPDATE ..."
local function references_clause(target, on_delete, on_update, context, columns_key)
  local table_name, columns
  if type(target) == "string" then
    table_name = target
  elseif type(target) == "table" then
    dsl.check_options("references of " .. context, target,
      { { "table", "string|table" }, { columns_key, "string|table" } })
    table_name, columns = target.table, target[columns_key]
    if table_name == nil then
      dsl.fail("references of %s: missing `table`", context)
    end
  else
    dsl.fail("references of %s must be a table name or {table = ..., %s = ...}, got %s",
      context, columns_key, type(target))
  end
  local clause = " REFERENCES " .. dsl.qualified(table_name)
  if columns ~= nil then
    clause = clause .. " (" .. dsl.ident_list("references of " .. context, columns) .. ")"
  end
  if on_delete ~= nil then
    clause = clause .. " ON DELETE " .. dsl.keyword("on_delete action", on_delete,
      REFERENTIAL_ACTIONS)
  end
  if on_update ~= nil then
    clause = clause .. " ON UPDATE " .. dsl.keyword("on_update action", on_update,
      REFERENTIAL_ACTIONS)
  end
  return clause
end

---A column: `{ name, type, option = value, ... }`.
---@class tide.Column
---@field [1] string the column name
---@field [2] string|tide.sql.Raw the type: "text", "varchar(255)", "numeric(10,2)", "text[]", ...
---@field not_null boolean? NOT NULL
---@field default (string|number|boolean|tide.sql.Raw)? a value (quoted), or sql.raw("now()")
---@field identity ("always"|"by default")? GENERATED ... AS IDENTITY
---@field primary_key boolean? PRIMARY KEY
---@field unique boolean? UNIQUE
---@field check string? CHECK (expression)
---@field references (string|tide.References)? REFERENCES table [(column)]
---@field on_delete ("cascade"|"restrict"|"set null"|"set default"|"no action")?
---@field on_update ("cascade"|"restrict"|"set null"|"set default"|"no action")?

local COLUMN_OPTIONS = {
  { "not_null", "boolean" }, { "default", "value" }, { "identity", "string" },
  { "primary_key", "boolean" }, { "unique", "boolean" }, { "check", "string" },
  { "references", "string|table" }, { "on_delete", "string" }, { "on_update", "string" },
}

---`"name" type [GENERATED ...] [DEFAULT ...] [NOT NULL] [PRIMARY KEY] [UNIQUE] [CHECK ...]
---[REFERENCES ...]`
---@param column tide.Column
---@param what string the calling function, for messages
---@return string
local function column_definition(column, what)
  if type(column) ~= "table" then
    dsl.fail("%s: a column must be a table {name, type, ...}, got %s", what, type(column))
  end
  local name = column[1]
  if type(name) ~= "string" then
    dsl.fail("%s: a column needs its name as the first entry, got %s", what, type(name))
  end
  local context = ("column `%s` in %s"):format(name, what)
  dsl.check_options(context, column, COLUMN_OPTIONS, 2)
  if column[2] == nil then
    dsl.fail("%s: missing type (the second entry)", context)
  end
  local parts = { dsl.ident(name), column_type(column[2], context) }
  if column.identity ~= nil then
    if column.default ~= nil then
      dsl.fail("%s: a column cannot have both `identity` and `default`", context)
    end
    parts[#parts + 1] = "GENERATED " .. dsl.keyword("identity of " .. context, column.identity,
      { "always", "by default" }) .. " AS IDENTITY"
  end
  if column.default ~= nil then
    parts[#parts + 1] = "DEFAULT " .. dsl.value(column.default)
  end
  if column.not_null then
    parts[#parts + 1] = "NOT NULL"
  end
  if column.primary_key then
    parts[#parts + 1] = "PRIMARY KEY"
  end
  if column.unique then
    parts[#parts + 1] = "UNIQUE"
  end
  if column.check ~= nil then
    parts[#parts + 1] = "CHECK (" .. column.check .. ")"
  end
  if column.references ~= nil then
    parts[#parts + 1] = references_clause(column.references, column.on_delete, column.on_update,
      context, "column"):sub(2)
  elseif column.on_delete ~= nil or column.on_update ~= nil then
    dsl.fail("%s: `on_delete`/`on_update` need `references`", context)
  end
  return table.concat(parts, " ")
end

---A table constraint: exactly one of primary_key, unique, check, foreign_key.
---@class tide.Constraint
---@field name string? CONSTRAINT name (default: PostgreSQL's, e.g. users_email_key)
---@field primary_key string[]? PRIMARY KEY (columns)
---@field unique string[]? UNIQUE (columns)
---@field check string? CHECK (expression)
---@field foreign_key string[]? FOREIGN KEY (columns), with `references`
---@field references (string|tide.References)? for foreign_key: {table = ..., columns = {...}}
---@field on_delete ("cascade"|"restrict"|"set null"|"set default"|"no action")?
---@field on_update ("cascade"|"restrict"|"set null"|"set default"|"no action")?

local CONSTRAINT_OPTIONS = {
  { "name", "string" }, { "primary_key", "string|table" }, { "unique", "string|table" },
  { "check", "string" }, { "foreign_key", "string|table" }, { "references", "string|table" },
  { "on_delete", "string" }, { "on_update", "string" },
}
local CONSTRAINT_KINDS = { "primary_key", "unique", "check", "foreign_key" }

---@param constraint tide.Constraint
---@param what string
---@return string
local function constraint_definition(constraint, what)
  local context = "a constraint in " .. what
  dsl.check_options(context, constraint, CONSTRAINT_OPTIONS)
  local kind
  for _, candidate in ipairs(CONSTRAINT_KINDS) do
    if constraint[candidate] ~= nil then
      if kind then
        dsl.fail("%s has both `%s` and `%s`: write one constraint per entry", context, kind,
          candidate)
      end
      kind = candidate
    end
  end
  if kind == nil then
    dsl.fail("%s needs one of `primary_key`, `unique`, `check`, `foreign_key`", context)
  end
  if kind ~= "foreign_key" and (constraint.references or constraint.on_delete
      or constraint.on_update) then
    dsl.fail("%s: `references`, `on_delete` and `on_update` belong to a `foreign_key`", context)
  end
  local text = constraint.name and ("CONSTRAINT " .. dsl.ident(constraint.name) .. " ") or ""
  if kind == "primary_key" then
    return text .. "PRIMARY KEY (" .. dsl.ident_list("primary_key", constraint.primary_key) .. ")"
  elseif kind == "unique" then
    return text .. "UNIQUE (" .. dsl.ident_list("unique", constraint.unique) .. ")"
  elseif kind == "check" then
    return text .. "CHECK (" .. constraint.check .. ")"
  end
  if constraint.references == nil then
    dsl.fail("%s: a `foreign_key` needs `references`", context)
  end
  return text .. "FOREIGN KEY (" .. dsl.ident_list("foreign_key", constraint.foreign_key) .. ")"
    .. references_clause(constraint.references, constraint.on_delete, constraint.on_update,
      context, "columns")
end

--------------------------------------------------------------------------------------------------
-- Tables
--------------------------------------------------------------------------------------------------

---@class tide.CreateTableSpec
---@field columns tide.Column[] the columns, in order
---@field constraints tide.Constraint[]? table constraints (multi-column keys, named checks ...)
---@field if_not_exists boolean? CREATE TABLE IF NOT EXISTS

---CREATE TABLE, one column or constraint per line.
---@param name string|tide.QualifiedName
---@param spec tide.CreateTableSpec
---@return string
function build.create_table(name, spec)
  dsl.check_options("create_table", spec, {
    { "columns", "table" }, { "constraints", "table" }, { "if_not_exists", "boolean" },
  })
  if spec == nil or spec.columns == nil or #spec.columns == 0 then
    dsl.fail("create_table: `columns` must list at least one column")
  end
  local lines = {}
  for _, column in ipairs(spec.columns) do
    lines[#lines + 1] = "  " .. column_definition(column, "create_table")
  end
  for _, constraint in ipairs(spec.constraints or {}) do
    lines[#lines + 1] = "  " .. constraint_definition(constraint, "create_table")
  end
  return ("CREATE TABLE %s%s (\n%s\n)"):format(spec.if_not_exists and "IF NOT EXISTS " or "",
    dsl.qualified(name), table.concat(lines, ",\n"))
end

---@class tide.DropOptions
---@field if_exists boolean?
---@field cascade boolean? also drop objects that depend on it

---DROP TABLE.
---@param name string|tide.QualifiedName
---@param options tide.DropOptions?
---@return string
function build.drop_table(name, options)
  options = dsl.check_options("drop_table", options,
    { { "if_exists", "boolean" }, { "cascade", "boolean" } })
  return ("DROP TABLE %s%s%s"):format(options.if_exists and "IF EXISTS " or "",
    dsl.qualified(name), options.cascade and " CASCADE" or "")
end

--------------------------------------------------------------------------------------------------
-- Columns of an existing table
--------------------------------------------------------------------------------------------------

---ALTER TABLE ... ADD COLUMN.
---@param table_name string|tide.QualifiedName
---@param column tide.Column
---@param options {if_not_exists: boolean?}?
---@return string
function build.add_column(table_name, column, options)
  options = dsl.check_options("add_column", options, { { "if_not_exists", "boolean" } })
  return ("ALTER TABLE %s ADD COLUMN %s%s"):format(dsl.qualified(table_name),
    options.if_not_exists and "IF NOT EXISTS " or "", column_definition(column, "add_column"))
end

---ALTER TABLE ... DROP COLUMN.
---@param table_name string|tide.QualifiedName
---@param column string
---@param options tide.DropOptions?
---@return string
function build.drop_column(table_name, column, options)
  options = dsl.check_options("drop_column", options,
    { { "if_exists", "boolean" }, { "cascade", "boolean" } })
  return ("ALTER TABLE %s DROP COLUMN %s%s%s"):format(dsl.qualified(table_name),
    options.if_exists and "IF EXISTS " or "", dsl.ident(column), options.cascade and " CASCADE" or "")
end

---ALTER TABLE ... RENAME COLUMN.
---@param table_name string|tide.QualifiedName
---@param from string
---@param to string
---@return string
function build.rename_column(table_name, from, to)
  return ("ALTER TABLE %s RENAME COLUMN %s TO %s"):format(dsl.qualified(table_name),
    dsl.ident(from), dsl.ident(to))
end

---@class tide.AlterColumnOptions
---@field type (string|tide.sql.Raw)? new type (ALTER COLUMN ... TYPE)
---@field using string? expression converting old values (USING)
---@field default (string|number|boolean|tide.sql.Raw)? new default (SET DEFAULT)
---@field drop_default boolean? DROP DEFAULT
---@field not_null boolean? true: SET NOT NULL, false: DROP NOT NULL

---ALTER TABLE ... ALTER COLUMN, all requested changes in one statement (one table rewrite at
---most, and all or nothing).
---@param table_name string|tide.QualifiedName
---@param column string
---@param options tide.AlterColumnOptions
---@return string
function build.alter_column(table_name, column, options)
  dsl.check_options("alter_column", options, {
    { "type", "sql" }, { "using", "string" }, { "default", "value" },
    { "drop_default", "boolean" }, { "not_null", "boolean" },
  })
  options = options or {}
  local target = "ALTER COLUMN " .. dsl.ident(column)
  local actions = {}
  if options.type ~= nil then
    local action = target .. " TYPE " .. column_type(options.type,
      ("column `%s` in alter_column"):format(column))
    if options.using ~= nil then
      action = action .. " USING (" .. options.using .. ")"
    end
    actions[#actions + 1] = action
  elseif options.using ~= nil then
    dsl.fail("alter_column: `using` needs `type`")
  end
  if options.default ~= nil and options.drop_default then
    dsl.fail("alter_column: `default` and `drop_default` contradict each other")
  elseif options.default ~= nil then
    actions[#actions + 1] = target .. " SET DEFAULT " .. dsl.value(options.default)
  elseif options.drop_default then
    actions[#actions + 1] = target .. " DROP DEFAULT"
  end
  if options.not_null ~= nil then
    actions[#actions + 1] = target .. (options.not_null and " SET NOT NULL" or " DROP NOT NULL")
  end
  if #actions == 0 then
    dsl.fail("alter_column: nothing to change (give `type`, `default`, `drop_default` or `not_null`)")
  end
  return ("ALTER TABLE %s %s"):format(dsl.qualified(table_name), table.concat(actions, ", "))
end

--------------------------------------------------------------------------------------------------
-- Indexes
--------------------------------------------------------------------------------------------------

local INDEX_METHODS = { "btree", "hash", "gin", "gist", "spgist", "brin" }

---The name create_index gives an index when none is passed: ix_<table>_<col1>_<col2>, the
---convention of the Alembic setup tide replaces, so existing databases keep their index names.
---@param table_name string|tide.QualifiedName
---@param columns string|string[]
---@return string
function schema.index_name(table_name, columns)
  if type(columns) == "string" then
    columns = { columns }
  end
  local parts = { "ix", dsl.base_name(table_name) }
  for _, column in ipairs(columns) do
    if type(column) ~= "string" then
      dsl.fail("create_index: an index on an expression needs an explicit `name`")
    end
    parts[#parts + 1] = column
  end
  return table.concat(parts, "_")
end

---@class tide.CreateIndexOptions
---@field name string? default: schema.index_name(table, columns)
---@field unique boolean? CREATE UNIQUE INDEX
---@field where string? partial index predicate (WHERE expression)
---@field using ("btree"|"hash"|"gin"|"gist"|"spgist"|"brin")? access method
---@field concurrently boolean? CONCURRENTLY: the revision needs `transaction = false`
---@field if_not_exists boolean?

---CREATE INDEX. `columns` is a column name, or a list of column names and sql.raw expressions.
---@param table_name string|tide.QualifiedName
---@param columns string|(string|tide.sql.Raw)[]
---@param options tide.CreateIndexOptions?
---@return string
function build.create_index(table_name, columns, options)
  options = dsl.check_options("create_index", options, {
    { "name", "string" }, { "unique", "boolean" }, { "where", "string" }, { "using", "string" },
    { "concurrently", "boolean" }, { "if_not_exists", "boolean" },
  })
  if type(columns) == "string" or sql.is_raw(columns) then
    columns = { columns }
  end
  if type(columns) ~= "table" or #columns == 0 then
    dsl.fail("create_index: columns must be a column name or a non-empty list")
  end
  local keys = {}
  for i, column in ipairs(columns) do
    keys[i] = sql.is_raw(column) and "(" .. column.sql .. ")" or dsl.ident(column)
  end
  local name = options.name or schema.index_name(table_name, columns)
  local text = ("CREATE %sINDEX %s%s%s ON %s"):format(options.unique and "UNIQUE " or "",
    options.concurrently and "CONCURRENTLY " or "", options.if_not_exists and "IF NOT EXISTS " or "",
    dsl.ident(name), dsl.qualified(table_name))
  if options.using ~= nil then
    text = text .. " USING " .. dsl.keyword("index method", options.using, INDEX_METHODS):lower()
  end
  text = text .. " (" .. table.concat(keys, ", ") .. ")"
  if options.where ~= nil then
    text = text .. " WHERE (" .. options.where .. ")"
  end
  return text
end

---@class tide.DropIndexOptions
---@field if_exists boolean?
---@field concurrently boolean? DROP INDEX CONCURRENTLY: the revision needs `transaction = false`
---@field cascade boolean?

---DROP INDEX. The name may be schema-qualified ({schema = ..., name = ...}).
---@param name string|tide.QualifiedName
---@param options tide.DropIndexOptions?
---@return string
function build.drop_index(name, options)
  options = dsl.check_options("drop_index", options, {
    { "if_exists", "boolean" }, { "concurrently", "boolean" }, { "cascade", "boolean" },
  })
  if options.concurrently and options.cascade then
    dsl.fail("drop_index: PostgreSQL does not allow `concurrently` with `cascade`")
  end
  return ("DROP INDEX %s%s%s%s"):format(options.concurrently and "CONCURRENTLY " or "",
    options.if_exists and "IF EXISTS " or "", dsl.qualified(name), options.cascade and " CASCADE" or "")
end

--------------------------------------------------------------------------------------------------
-- Privileges
--------------------------------------------------------------------------------------------------

-- What each kind of object can be granted, and how the ON clause spells it.
local OBJECT_KINDS = {
  { key = "table", clause = "TABLE",
    privileges = { "select", "insert", "update", "delete", "truncate", "references", "trigger", "all" } },
  { key = "sequence", clause = "SEQUENCE",
    privileges = { "usage", "select", "update", "all" } },
  { key = "schema", clause = "SCHEMA", privileges = { "usage", "create", "all" } },
  { key = "all_tables_in_schema", clause = "ALL TABLES IN SCHEMA",
    privileges = { "select", "insert", "update", "delete", "truncate", "references", "trigger", "all" } },
  { key = "all_sequences_in_schema", clause = "ALL SEQUENCES IN SCHEMA",
    privileges = { "usage", "select", "update", "all" } },
}
local COLUMN_PRIVILEGES = { SELECT = true, INSERT = true, UPDATE = true, REFERENCES = true }
local OBJECT_KEYS = {}
for i, kind in ipairs(OBJECT_KINDS) do
  OBJECT_KEYS[i] = { kind.key, "string|table" }
end

-- Role specifications PostgreSQL writes as keywords; any other role name is quoted.
local ROLE_KEYWORDS = { public = "PUBLIC", current_user = "CURRENT_USER",
  current_role = "CURRENT_ROLE", session_user = "SESSION_USER" }

---Quotes a role or a list of roles; "public", "current_user", "current_role" and
---"session_user" (lower case) are the SQL keywords, not roles of that name.
---@param what string
---@param roles string|string[]
---@return string
function schema.role_list(what, roles)
  if type(roles) == "string" then
    roles = { roles }
  end
  if type(roles) ~= "table" or #roles == 0 then
    dsl.fail("%s: roles must be a role name or a non-empty list of role names", what)
  end
  local quoted = {}
  for i, role in ipairs(roles) do
    quoted[i] = ROLE_KEYWORDS[role] or dsl.ident(role)
  end
  return table.concat(quoted, ", ")
end

---What grant/revoke act on: a table name, or a table with exactly one of these keys, each a
---name or a list of names.
---@class tide.GrantObjects
---@field table (string|tide.QualifiedName|(string|tide.QualifiedName)[])?
---@field sequence (string|tide.QualifiedName|(string|tide.QualifiedName)[])?
---@field schema (string|string[])?
---@field all_tables_in_schema (string|string[])?
---@field all_sequences_in_schema (string|string[])?

---@alias tide.GrantTarget string|tide.QualifiedName|tide.GrantObjects

---The privileges and ON clause shared by GRANT and REVOKE: "SELECT, INSERT ON TABLE "t"".
local function privileges_on(what, privileges, on)
  if type(on) == "string" or (type(on) == "table" and on.name ~= nil) then
    on = { table = on }
  end
  if type(on) ~= "table" then
    dsl.fail("%s: `on` must be a table name or {table = ...}, {schema = ...}, ...", what)
  end
  dsl.check_options(what .. " target", on, OBJECT_KEYS)
  local kind
  for _, candidate in ipairs(OBJECT_KINDS) do
    if on[candidate.key] ~= nil then
      if kind then
        dsl.fail("%s: grant on one kind of object per call (got `%s` and `%s`)", what, kind.key,
          candidate.key)
      end
      kind = candidate
    end
  end
  if kind == nil then
    dsl.fail("%s: `on` names no object", what)
  end
  local objects = on[kind.key]
  if type(objects) == "string" or (type(objects) == "table" and objects.name ~= nil) then
    objects = { objects }
  end
  local quoted = {}
  for i, object in ipairs(objects) do
    quoted[i] = dsl.qualified(object)
  end
  if #quoted == 0 then
    dsl.fail("%s: `%s` is an empty list", what, kind.key)
  end
  if type(privileges) == "string" then
    privileges = { privileges }
  end
  if type(privileges) ~= "table" or #privileges == 0 then
    dsl.fail("%s: privileges must be a privilege or a non-empty list of privileges", what)
  end
  local words = {}
  for i, privilege in ipairs(privileges) do
    -- {"insert", columns = {...}}: a column privilege, PostgreSQL's INSERT ("a", "b")
    local columns
    if type(privilege) == "table" then
      dsl.check_options(what .. " privilege", privilege, { { "columns", "string|table" } }, 1)
      privilege, columns = privilege[1], privilege.columns
      if kind.key ~= "table" or columns == nil then
        dsl.fail("%s: {privilege, columns = {...}} is for column privileges on a table", what)
      end
    end
    words[i] = dsl.keyword(("privilege on %s"):format(kind.clause:lower()), privilege,
      kind.privileges)
    if columns then
      if not COLUMN_PRIVILEGES[words[i]] then
        dsl.fail("%s: %s cannot be granted on columns (only SELECT, INSERT, UPDATE, REFERENCES)", what, words[i])
      end
      words[i] = words[i] .. " (" .. dsl.ident_list(what .. " columns", columns) .. ")"
    end
  end
  return ("%s ON %s %s"):format(table.concat(words, ", "), kind.clause, table.concat(quoted, ", "))
end

---GRANT privileges ON objects TO roles.
---`on`: a table name, or exactly one of {table = ...}, {sequence = ...}, {schema = ...},
---{all_tables_in_schema = ...}, {all_sequences_in_schema = ...} (a name or a list).
---@param privileges string|string[] "select", {"select", "insert"}, "all", ...
---@param on tide.GrantTarget
---@param to string|string[] roles; "public" is PUBLIC
---@param options {with_grant_option: boolean?}?
---@return string
function build.grant(privileges, on, to, options)
  options = dsl.check_options("grant", options, { { "with_grant_option", "boolean" } })
  return ("GRANT %s TO %s%s"):format(privileges_on("grant", privileges, on),
    schema.role_list("grant", to), options.with_grant_option and " WITH GRANT OPTION" or "")
end

---REVOKE privileges ON objects FROM roles.
---@param privileges string|string[]
---@param on tide.GrantTarget
---@param from string|string[]
---@param options {cascade: boolean?}?
---@return string
function build.revoke(privileges, on, from, options)
  options = dsl.check_options("revoke", options, { { "cascade", "boolean" } })
  return ("REVOKE %s FROM %s%s"):format(privileges_on("revoke", privileges, on),
    schema.role_list("revoke", from), options.cascade and " CASCADE" or "")
end

--------------------------------------------------------------------------------------------------
-- Running
--------------------------------------------------------------------------------------------------

---Runs raw SQL: without parameters through db:exec (one or more statements), with parameters
---through db:query (ONE statement, `$1..$n`), returning its rows. The escape hatch for what the
---DSL does not cover (functions, views, data changes); prefer one statement per call so a
---failure names its statement.
---@param db tide.DB
---@param statement string
---@param ... any parameters for $1..$n
---@return table[]? rows only when parameters were given
function schema.execute(db, statement, ...)
  dsl.check_db("execute", db)
  if type(statement) ~= "string" or statement == "" then
    dsl.fail("execute: expected a non-empty SQL string, got %s", type(statement))
  end
  if select("#", ...) > 0 then
    return db:query(statement, ...)
  end
  db:exec(statement)
  return nil
end

-- What revision files call: check db first (a forgotten db would otherwise shift every
-- argument and produce a confusing message), build the statement (a bad call raises before
-- anything reaches the database), then run it.

---Creates a table; see schema.sql.create_table for the SQL.
---@param db tide.DB
---@param name string|tide.QualifiedName
---@param spec tide.CreateTableSpec
function schema.create_table(db, name, spec)
  dsl.check_db("create_table", db)
  db:exec(build.create_table(name, spec))
end

---Drops a table.
---@param db tide.DB
---@param name string|tide.QualifiedName
---@param options tide.DropOptions?
function schema.drop_table(db, name, options)
  dsl.check_db("drop_table", db)
  db:exec(build.drop_table(name, options))
end

---Adds a column to a table.
---@param db tide.DB
---@param table_name string|tide.QualifiedName
---@param column tide.Column
---@param options {if_not_exists: boolean?}?
function schema.add_column(db, table_name, column, options)
  dsl.check_db("add_column", db)
  db:exec(build.add_column(table_name, column, options))
end

---Drops a column.
---@param db tide.DB
---@param table_name string|tide.QualifiedName
---@param column string
---@param options tide.DropOptions?
function schema.drop_column(db, table_name, column, options)
  dsl.check_db("drop_column", db)
  db:exec(build.drop_column(table_name, column, options))
end

---Renames a column.
---@param db tide.DB
---@param table_name string|tide.QualifiedName
---@param from string
---@param to string
function schema.rename_column(db, table_name, from, to)
  dsl.check_db("rename_column", db)
  db:exec(build.rename_column(table_name, from, to))
end

---Changes a column's type, default and/or nullability in one statement.
---@param db tide.DB
---@param table_name string|tide.QualifiedName
---@param column string
---@param options tide.AlterColumnOptions
function schema.alter_column(db, table_name, column, options)
  dsl.check_db("alter_column", db)
  db:exec(build.alter_column(table_name, column, options))
end

---Creates an index (named ix_<table>_<columns> unless `name` is given).
---@param db tide.DB
---@param table_name string|tide.QualifiedName
---@param columns string|(string|tide.sql.Raw)[]
---@param options tide.CreateIndexOptions?
function schema.create_index(db, table_name, columns, options)
  dsl.check_db("create_index", db)
  db:exec(build.create_index(table_name, columns, options))
end

---Drops an index.
---@param db tide.DB
---@param name string|tide.QualifiedName
---@param options tide.DropIndexOptions?
function schema.drop_index(db, name, options)
  dsl.check_db("drop_index", db)
  db:exec(build.drop_index(name, options))
end

---Grants privileges.
---@param db tide.DB
---@param privileges string|string[]
---@param on tide.GrantTarget
---@param to string|string[]
---@param options {with_grant_option: boolean?}?
function schema.grant(db, privileges, on, to, options)
  dsl.check_db("grant", db)
  db:exec(build.grant(privileges, on, to, options))
end

---Revokes privileges.
---@param db tide.DB
---@param privileges string|string[]
---@param on tide.GrantTarget
---@param from string|string[]
---@param options {cascade: boolean?}?
function schema.revoke(db, privileges, on, from, options)
  dsl.check_db("revoke", db)
  db:exec(build.revoke(privileges, on, from, options))
end

dsl.strict(build, "schema.sql")
return dsl.strict(schema, "schema")
