-- tide.diff: two catalog models (tide.catalog) -> the ordered list of changes that turns the first
-- into the second.
--
--   local changes = require("tide.diff").diff(from, to, { renames = { {old = "users", new = "people"} } })
--   -- changes[i] = {action, kind, name, statements = {{sql, lua}...}, destructive, alt, ...}
--   -- (alt: the statements with CONCURRENTLY, for a revision that runs outside a transaction)
--
-- A downgrade is the diff the other way round. Order comes from dependencies, read from each
-- side's pg_depend: a change that creates an object comes after the changes creating what it
-- needs (in the target model), a change that removes one comes after the changes removing what
-- needed it (in the source model); renames go first and, where nothing else decides, drops
-- before creates. An object whose definition cannot be altered in place (a view whose columns
-- change, a function whose result type changes, a policy whose command changes) is dropped and
-- created again, and so is everything that depends on it or on a column whose type changes:
-- PostgreSQL refuses those changes while dependents exist. Renames are never guessed: without a
-- hint a renamed object is a drop and a create.
local catalog = require "tide.catalog"
local ddl = require "tide.ddl"
local order = require "tide.order"
local renames = require "tide.renames"

local M = {}

local ident, qualified = catalog.ident, catalog.qualified
local sorted_keys = catalog.sorted_keys

local function same_list(a, b)
  if #a ~= #b then
    return false
  end
  for i = 1, #a do
    if a[i] ~= b[i] then
      return false
    end
  end
  return true
end

-- serial columns: a default nextval('t_c_seq'::regclass) of a sequence the column owns, with
-- the options `serial` gives it, is written as the column type serial/bigserial/smallserial.
local MAX = { integer = "2147483647", bigint = "9223372036854775807", smallint = "32767" }
local function mark_serials(model)
  for _, s in pairs(model.sequences) do
    local o = s.owned_by
    local t = o and model.tables[o.table]
    local col = t and t.column[o.column]
    if col and col.type == s.type and MAX[s.type] and s.start == "1" and s.increment == "1" and s.min == "1"
      and s.max == MAX[s.type] and s.cache == "1" and not s.cycle and s.name == (t.name .. "_" .. col.name .. "_seq")
      and s.schema == t.schema and col.default then
      local reg = s.schema == ddl.default_schema and ident(s.name) or qualified(s.schema, s.name)
      if col.default == "nextval('" .. reg:gsub("'", "''") .. "'::regclass)" then
        col.serial, s.serial = true, true
      end
    end
  end
end

local function column_key(t, name)
  return "column " .. t.qname .. "." .. ident(name)
end

local function default_acl(kind)
  if kind == "function" then
    return { "PUBLIC=EXECUTE" }
  elseif kind == "type" then
    return { "PUBLIC=USAGE" }
  end
  return {}
end

--- The changes turning model `from` into model `to`, in the order to apply them.
---@param from table catalog model
---@param to table catalog model
---@param opts table|nil {renames = {{old, new}...}}
---@return table[] changes
function M.diff(from, to, opts)
  opts = opts or {}
  local changes = {}
  local function push(change)
    changes[#changes + 1] = change
    change.adds = change.adds or {}
    change.removes = change.removes or {}
    return change
  end
  from = renames.apply(from, to, opts.renames, push)
  mark_serials(from)
  mark_serials(to)

  -- What must be dropped and created again because it cannot change in place, or because
  -- something it depends on does (see the header). key -> "replace" | "retype" (a column).
  local replaced = {}
  local retyped = {}
  for _, q in ipairs(sorted_keys(to.functions)) do
    local f, o = to.functions[q], from.functions[q]
    if o and o.definition ~= f.definition and (o.result ~= f.result or o.arguments ~= f.arguments
        or o.kind ~= f.kind) then
      replaced["function " .. q] = true
    end
  end
  local function view_columns_extend(o, v)
    if #v.columns < #o.columns then
      return false
    end
    for i, c in ipairs(o.columns) do
      if v.columns[i].name ~= c.name or v.columns[i].type ~= c.type then
        return false
      end
    end
    return true
  end
  for _, q in ipairs(sorted_keys(to.views)) do
    local v, o = to.views[q], from.views[q]
    if o and (o.definition ~= v.definition or o.materialized ~= v.materialized) and
        (v.materialized or o.materialized or not view_columns_extend(o, v)) then
      replaced["view " .. q] = true
    end
  end
  -- enums that lose or reorder labels are created again; their columns change type
  local recreated_enums = {}
  for _, q in ipairs(sorted_keys(to.types)) do
    local t, o = to.types[q], from.types[q]
    if o and t.kind == "enum" and o.kind == "enum" and not same_list(t.labels, o.labels) then
      local i = 1
      for _, l in ipairs(t.labels) do
        if o.labels[i] == l then
          i = i + 1
        end
      end
      if i <= #o.labels then
        recreated_enums[q] = true
      end
    end
  end
  local function type_base(type_text)
    return (type_text:gsub("%[%]$", ""))
  end
  local enum_sql_names = {}
  for q in pairs(recreated_enums) do
    enum_sql_names[ddl.qname_sql(q)] = q
  end
  for _, q in ipairs(sorted_keys(to.tables)) do
    local t, o = to.tables[q], from.tables[q]
    if o then
      for _, col in ipairs(t.columns) do
        local oc = o.column[col.name]
        if oc and (oc.type ~= col.type or oc.collation ~= col.collation or enum_sql_names[type_base(col.type)]) then
          retyped[column_key(t, col.name)] = true
        end
      end
      for name, c in pairs(t.constraints) do
        local oc = o.constraints[name]
        if oc and oc.definition ~= c.definition and oc.definition ~= c.definition .. " NOT VALID" then
          replaced[c.key] = true
        end
      end
    end
  end
  -- dependents of what is replaced are replaced too (until nothing changes)
  local function kind_of(key)
    return key:match("^(%a+)")
  end
  local function exists_both(key)
    local kind, rest = key:match("^(%a+) (.*)$")
    if kind == "view" then
      return from.views[rest] and to.views[rest]
    elseif kind == "function" then
      return from.functions[rest] and to.functions[rest]
    end
    if kind == "index" then
      for q, t in pairs(from.tables) do
        for n, x in pairs(t.indexes) do
          if x.qname == rest then
            return to.tables[q] and to.tables[q].indexes[n] ~= nil
          end
        end
      end
      return false
    end
    -- sub-objects of tables: find by prefix
    for q, t in pairs(from.tables) do
      local prefix = q .. "."
      if rest:sub(1, #prefix) == prefix then
        local name = rest:sub(#prefix + 1)
        local tt = to.tables[q]
        if not tt then
          return false
        end
        for _, field in ipairs { "constraints", "indexes", "policies", "triggers" } do
          for n in pairs(t[field]) do
            if ident(n) == name then
              return tt[field][n] ~= nil
            end
          end
        end
      end
    end
    return false
  end
  local changed = true
  while changed do
    changed = false
    for key, needs in pairs(from.deps) do
      if not replaced[key] then
        local kind = kind_of(key)
        for needed in pairs(needs) do
          local because = replaced[needed] and "replace" or retyped[needed] and "retype"
          local follows = because == "replace" and (kind == "view" or kind == "policy" or kind == "trigger"
              or kind == "function" or kind == "constraint" or kind == "index")
            or because == "retype" and (kind == "view" or kind == "policy" or kind == "trigger" or kind == "function")
          if follows and exists_both(key) then
            replaced[key] = true
            changed = true
            break
          end
        end
      end
    end
  end

  -- A column default that calls a function being dropped and created again is dropped before
  -- and set again after (PostgreSQL refuses to drop a function a default uses).
  local redefaulted = {}
  for _, q in ipairs(sorted_keys(from.tables)) do
    local ft, tt = from.tables[q], to.tables[q]
    for _, oc in ipairs(tt and ft.columns or {}) do
      local key = column_key(ft, oc.name)
      local col = tt.column[oc.name]
      for needed in pairs(from.deps[key] or {}) do
        if replaced[needed] and kind_of(needed) == "function" and col and oc.default and col.default
            and not redefaulted[key] then
          redefaulted[key] = true
          push { action = "drop", kind = "column default", name = q .. "." .. oc.name,
            statements = ddl.set_default(tt, { name = oc.name }), removes = { key } }
          push { action = "create", kind = "column default", name = q .. "." .. oc.name,
            statements = ddl.set_default(tt, col), adds = { key } }
        end
      end
    end
  end

  -- Extensions and schemas -------------------------------------------------------------------
  for _, name in ipairs(sorted_keys(to.extensions)) do
    if not from.extensions[name] then
      push { action = "create", kind = "extension", name = name, statements = ddl.create_extension(to.extensions[name]),
        adds = { "extension " .. ident(name) } }
    end
  end
  for _, name in ipairs(sorted_keys(from.extensions)) do
    if not to.extensions[name] then
      push { action = "drop", kind = "extension", name = name, statements = ddl.drop_extension(from.extensions[name]),
        removes = { "extension " .. ident(name) }, destructive = true }
    end
  end
  local function comment_change(key, what, old, new, display)
    if (old or nil) ~= (new or nil) then
      push { action = "alter", kind = "comment", name = display, statements = ddl.comment(what, new),
        requires = { key } }
    end
  end
  local function acl_change(key, on, old, new, display, dsl_on, columns)
    if not same_list(old, new) then
      push { action = "alter", kind = "privileges", name = display,
        statements = ddl.privileges(on, old, new, dsl_on, columns), requires = { key } }
    end
  end
  for _, name in ipairs(sorted_keys(to.schemas)) do
    local s, o = to.schemas[name], from.schemas[name]
    local key = "schema " .. ident(name)
    if not o then
      push { action = "create", kind = "schema", name = name, statements = ddl.create_schema(s), adds = { key } }
    end
    comment_change(key, "SCHEMA " .. ident(name), o and o.comment, s.comment, name)
    acl_change(key, "SCHEMA " .. ident(name), o and o.acl or {}, s.acl, name,
      string.format("{ schema = %s }", ddl.lua_string(name)))
  end
  for _, name in ipairs(sorted_keys(from.schemas)) do
    if not to.schemas[name] then
      push { action = "drop", kind = "schema", name = name, statements = ddl.drop_schema(from.schemas[name]),
        removes = { "schema " .. ident(name) }, destructive = true }
    end
  end

  -- Types --------------------------------------------------------------------------------------
  -- columns (in `to`) whose type is enum q, as {table, column}
  local function columns_of_type(model, q)
    local list = {}
    local name = ddl.qname_sql(q)
    for _, tq in ipairs(sorted_keys(model.tables)) do
      local t = model.tables[tq]
      for _, col in ipairs(t.columns) do
        if type_base(col.type) == name and not col.inherited then
          list[#list + 1] = { t = t, col = col }
        end
      end
    end
    return list
  end
  for _, q in ipairs(sorted_keys(to.types)) do
    local t, o = to.types[q], from.types[q]
    local key = "type " .. q
    local what = (t.kind == "domain" and "DOMAIN " or "TYPE ") .. ddl.qname_sql(q)
    if not o or o.kind ~= t.kind then
      if o then
        push { action = "drop", kind = "type", name = q, statements = ddl.drop_type(o), removes = { key } }
      end
      push { action = "create", kind = "type", name = q, adds = { key },
        statements = t.kind == "enum" and ddl.create_enum(t) or ddl.create_domain(t) }
    elseif t.kind == "enum" and recreated_enums[q] then
      -- rename the old type away, create the new one, move every column over, drop the old
      local old_name = o.name .. "__old"
      local statements = ddl.rename_type(o, old_name)
      for _, s in ipairs(ddl.create_enum(t)) do
        statements[#statements + 1] = s
      end
      local adds, removes = { key }, { key }
      for _, use in ipairs(columns_of_type(to, q)) do
        local ft = from.tables[use.t.qname]
        local had = ft and ft.column[use.col.name]
        if had then
          local cast = use.col.type:find("%[%]$") and "::text[]::" or "::text::"
          if had.default then
            statements[#statements + 1] = ddl.set_default(use.t, { name = use.col.name })[1]
          end
          statements[#statements + 1] = ddl.set_type(use.t, use.col, ident(use.col.name) .. cast .. use.col.type)[1]
          if use.col.default then
            statements[#statements + 1] = ddl.set_default(use.t, use.col)[1]
          end
          adds[#adds + 1] = column_key(use.t, use.col.name)
          removes[#removes + 1] = column_key(use.t, use.col.name)
          use.col.enum_moved = true
        end
      end
      statements[#statements + 1] = { sql = "DROP TYPE " .. ddl.rel_sql { schema = o.schema, name = old_name } }
      push { action = "alter", kind = "type", name = q, statements = statements, adds = adds, removes = removes }
    elseif t.kind == "enum" and not same_list(t.labels, o.labels) then
      local present = {}
      for _, l in ipairs(o.labels) do
        present[l] = true
      end
      local statements = {}
      for i, l in ipairs(t.labels) do
        if not present[l] then
          local before
          for j = i + 1, #t.labels do
            if present[t.labels[j]] then
              before = t.labels[j]
              break
            end
          end
          statements[#statements + 1] = ddl.add_enum_value(t, l, before, not before and t.labels[i - 1])[1]
          present[l] = true
        end
      end
      push { action = "alter", kind = "type", name = q, statements = statements, adds = { key }, removes = {},
        enum_values = true, type_sql = ddl.qname_sql(q) }
    elseif t.kind == "domain" and (t.base ~= o.base) then
      push { action = "drop", kind = "type", name = q, statements = ddl.drop_type(o), removes = { key } }
      push { action = "create", kind = "type", name = q, statements = ddl.create_domain(t), adds = { key } }
    elseif t.kind == "domain" then
      local statements = {}
      local name = ddl.rel_sql(t)
      if t.default ~= o.default then
        statements[#statements + 1] = { sql = "ALTER DOMAIN " .. name .. (t.default and (" SET DEFAULT " .. t.default)
          or " DROP DEFAULT") }
      end
      if t.not_null ~= o.not_null then
        statements[#statements + 1] = { sql = "ALTER DOMAIN " .. name .. (t.not_null and " SET" or " DROP")
          .. " NOT NULL" }
      end
      local had = {}
      for _, c in ipairs(o.checks) do
        had[c.name] = c.definition
      end
      local has = {}
      for _, c in ipairs(t.checks) do
        has[c.name] = c.definition
      end
      for _, c in ipairs(o.checks) do
        if has[c.name] ~= c.definition and not c.definition:match("^NOT NULL") then
          statements[#statements + 1] = { sql = "ALTER DOMAIN " .. name .. " DROP CONSTRAINT " .. ident(c.name) }
        end
      end
      for _, c in ipairs(t.checks) do
        if had[c.name] ~= c.definition and not c.definition:match("^NOT NULL") then
          statements[#statements + 1] = { sql = "ALTER DOMAIN " .. name .. " ADD CONSTRAINT " .. ident(c.name) .. " "
            .. c.definition }
        end
      end
      if #statements > 0 then
        push { action = "alter", kind = "type", name = q, statements = statements, adds = { key }, removes = { key } }
      end
    end
    comment_change(key, what, o and o.comment, t.comment, q)
    acl_change(key, "TYPE " .. ddl.qname_sql(q), o and o.acl or default_acl("type"), t.acl, q)
  end
  for _, q in ipairs(sorted_keys(from.types)) do
    if not to.types[q] then
      push { action = "drop", kind = "type", name = q, statements = ddl.drop_type(from.types[q]),
        removes = { "type " .. q }, destructive = true }
    end
  end

  -- Sequences ------------------------------------------------------------------------------------
  local function sequence_goes_with_table(s, model, other)
    -- an owned sequence is created with its serial column, dropped with its table or column
    local o = s.owned_by
    if not o then
      return false
    end
    local t = other.tables[o.table]
    if s.serial and model.tables[o.table] and (not t or not t.column[o.column]) then
      return true
    end
    return false
  end
  for _, q in ipairs(sorted_keys(to.sequences)) do
    local s, o = to.sequences[q], from.sequences[q]
    local key = "sequence " .. q
    if not o then
      if not sequence_goes_with_table(s, to, from) then
        push { action = "create", kind = "sequence", name = q, statements = ddl.create_sequence(s), adds = { key } }
        if s.owned_by then
          push { action = "alter", kind = "sequence owner", name = q, statements = ddl.sequence_owner(s),
            requires = { key, column_key(to.tables[s.owned_by.table], s.owned_by.column) } }
        end
      end
    else
      if s.type ~= o.type or s.start ~= o.start or s.increment ~= o.increment or s.min ~= o.min or s.max ~= o.max
          or s.cache ~= o.cache or s.cycle ~= o.cycle then
        push { action = "alter", kind = "sequence", name = q, statements = ddl.alter_sequence(s, o), adds = { key } }
      end
      local owner = s.owned_by and (s.owned_by.table .. "." .. s.owned_by.column)
      local old_owner = o.owned_by and (o.owned_by.table .. "." .. o.owned_by.column)
      if owner ~= old_owner then
        push { action = "alter", kind = "sequence owner", name = q, statements = ddl.sequence_owner(s),
          requires = { key, s.owned_by and column_key(to.tables[s.owned_by.table], s.owned_by.column) },
          removes = old_owner and { "sequence owner " .. q } or nil }
      end
    end
    comment_change(key, "SEQUENCE " .. ddl.qname_sql(q), o and o.comment, s.comment, q)
    acl_change(key, "SEQUENCE " .. ddl.qname_sql(q), o and o.acl or {}, s.acl, q,
      string.format("{ sequence = %s }", s.schema == ddl.default_schema and ddl.lua_string(s.name)
        or string.format("{ schema = %s, name = %s }", ddl.lua_string(s.schema), ddl.lua_string(s.name))))
  end
  for _, q in ipairs(sorted_keys(from.sequences)) do
    local s = from.sequences[q]
    if not to.sequences[q] and not sequence_goes_with_table(s, from, to) then
      -- a sequence owned by a column goes with the column or its table
      local o = s.owned_by
      local t = o and to.tables[o.table]
      local gone_with_owner = o and (not t or not t.column[o.column])
      if not gone_with_owner then
        push { action = "drop", kind = "sequence", name = q, statements = ddl.drop_sequence(s),
          removes = { "sequence " .. q }, destructive = true }
      end
    end
  end

  -- Functions --------------------------------------------------------------------------------------
  for _, q in ipairs(sorted_keys(to.functions)) do
    local f, o = to.functions[q], from.functions[q]
    local key = "function " .. q
    if not o then
      push { action = "create", kind = "function", name = q, statements = ddl.create_function(f), adds = { key } }
    elseif replaced[key] then
      push { action = "drop", kind = "function", name = q, statements = ddl.drop_function(o), removes = { key } }
      push { action = "create", kind = "function", name = q, statements = ddl.create_function(f), adds = { key } }
    elseif o.definition ~= f.definition then
      push { action = "alter", kind = "function", name = q, statements = ddl.create_function(f, true), adds = { key },
        removes = { key } }
    end
    local what = f.kind:upper() .. " " .. ddl.qname_sql(q:match("^(.-)%(")) .. "(" .. f.args .. ")"
    comment_change(key, what, not replaced[key] and o and o.comment, f.comment, q)
    acl_change(key, what, (not replaced[key] and o) and o.acl or default_acl("function"), f.acl, q)
  end
  for _, q in ipairs(sorted_keys(from.functions)) do
    if not to.functions[q] then
      push { action = "drop", kind = "function", name = q, statements = ddl.drop_function(from.functions[q]),
        removes = { "function " .. q } }
    end
  end

  -- Tables -------------------------------------------------------------------------------------
  -- Foreign keys of a new table go inline when what they reference exists before it; across
  -- tables created in one change set they are added afterwards (two tables may reference
  -- each other).
  local function table_removes(t)
    local keys = { "table " .. t.qname }
    for _, col in ipairs(t.columns) do
      keys[#keys + 1] = column_key(t, col.name)
    end
    for _, c in pairs(t.constraints) do
      keys[#keys + 1] = c.key
    end
    for _, x in pairs(t.indexes) do
      keys[#keys + 1] = "index " .. x.qname
    end
    for name in pairs(t.policies) do
      keys[#keys + 1] = "policy " .. t.qname .. "." .. ident(name)
    end
    for name in pairs(t.triggers) do
      keys[#keys + 1] = "trigger " .. t.qname .. "." .. ident(name)
    end
    return keys
  end
  -- A dropped table takes its indexes, constraints, policies and triggers along; M.order splits
  -- some out as changes of their own when tables and functions being dropped need each other.
  for _, q in ipairs(sorted_keys(from.tables)) do
    local t = from.tables[q]
    if not to.tables[q] then
      push { action = "drop", kind = "table", name = q, statements = ddl.drop_table(t), removes = table_removes(t),
        destructive = true, dropped_table = t }
    end
  end
  local function rel_clause(t)
    return ddl.rel_sql(t)
  end
  for _, q in ipairs(sorted_keys(to.tables)) do
    local t, o = to.tables[q], from.tables[q]
    local tkey = "table " .. q
    local name_lua = ddl.rel_lua(t)
    if not o then
      local inline, requires = {}, {}
      for _, n in ipairs(sorted_keys(t.constraints)) do
        local c = t.constraints[n]
        if c.type ~= "foreign key" or c.references == q or (c.references and to.tables[c.references]) then
          inline[#inline + 1] = c
          if c.type == "foreign key" and c.references ~= q and not from.tables[c.references] then
            requires[#requires + 1] = "table " .. c.references
          end
        end
      end
      if t.partition_of then
        requires[#requires + 1] = "table " .. t.partition_of
      end
      local adds = { tkey }
      for _, col in ipairs(t.columns) do
        adds[#adds + 1] = column_key(t, col.name)
      end
      for _, c in ipairs(inline) do
        adds[#adds + 1] = c.key
      end
      push { action = "create", kind = "table", name = q, statements = ddl.create_table(t, inline), adds = adds,
        requires = requires, created_table = t, inline = inline }
      for _, n in ipairs(sorted_keys(t.constraints)) do
        local c = t.constraints[n]
        local is_inline = false
        for _, i in ipairs(inline) do
          is_inline = is_inline or i == c
        end
        if not is_inline then
          push { action = "create", kind = "foreign key", name = q .. "." .. n, statements = ddl.add_constraint(t, c),
            adds = { c.key } }
        end
      end
    else
      -- columns
      for _, col in ipairs(o.columns) do
        if not t.column[col.name] and not col.inherited then
          push { action = "drop", kind = "column", name = q .. "." .. col.name, statements = ddl.drop_column(t, col),
            removes = { column_key(t, col.name) }, destructive = true }
        end
      end
      for _, col in ipairs(t.columns) do
        local oc = o.column[col.name]
        local ckey = column_key(t, col.name)
        if col.inherited then -- a partition's column is its parent's
          oc = nil
        elseif not oc or (oc.generated ~= col.generated) then
          if oc then
            push { action = "drop", kind = "column", name = q .. "." .. col.name, statements = ddl.drop_column(t, oc),
              removes = { ckey }, destructive = true }
          end
          push { action = "create", kind = "column", name = q .. "." .. col.name, statements = ddl.add_column(t, col),
            adds = { ckey } }
        else
          local statements = {}
          local retype = (oc.type ~= col.type or oc.collation ~= col.collation) and not col.enum_moved
          if retype then
            if oc.default then
              statements[#statements + 1] = ddl.set_default(t, { name = col.name })[1]
            end
            local using
            if col.type ~= oc.type then
              using = ident(col.name) .. "::" .. col.type
            end
            statements[#statements + 1] = ddl.set_type(t, col, using)[1]
            if col.default then
              statements[#statements + 1] = ddl.set_default(t, col)[1]
            end
          elseif (oc.default ~= col.default or oc.serial ~= col.serial) and not col.enum_moved
              and not redefaulted[ckey] then
            statements[#statements + 1] = ddl.set_default(t, col)[1]
          end
          if oc.identity ~= col.identity then
            statements[#statements + 1] = ddl.identity(t, col, oc.identity)[1]
          end
          if oc.not_null ~= col.not_null and not (col.identity and not oc.identity) then
            statements[#statements + 1] = ddl.set_not_null(t, col, col.not_null)[1]
          end
          if #statements > 0 then
            push { action = "alter", kind = "column", name = q .. "." .. col.name, statements = statements,
              adds = { ckey }, removes = { ckey }, rewrite = retype }
          end
        end
        -- (texts built only when something differs: a thousand tables have many columns)
        if (oc and oc.comment) ~= col.comment then
          comment_change(ckey, "COLUMN " .. ddl.qname_sql(q) .. "." .. ident(col.name), oc and oc.comment,
            col.comment, q .. "." .. col.name)
        end
        if #col.acl > 0 or (oc and #oc.acl > 0) then
          acl_change(ckey, "TABLE " .. rel_clause(t), oc and oc.acl or {}, col.acl, q .. "." .. col.name, nil,
            ident(col.name))
        end
      end
      -- constraints
      for _, n in ipairs(sorted_keys(o.constraints)) do
        local c, nc = o.constraints[n], t.constraints[n]
        if not nc or replaced[c.key] then
          push { action = "drop", kind = c.type == "foreign key" and "foreign key" or "constraint",
            name = q .. "." .. n, statements = ddl.drop_constraint(t, c),
            removes = { c.key } }
        end
      end
      for _, n in ipairs(sorted_keys(t.constraints)) do
        local c, oc = t.constraints[n], o.constraints[n]
        if not oc or replaced[c.key] then
          push { action = "create", kind = c.type == "foreign key" and "foreign key" or "constraint",
            name = q .. "." .. n, statements = ddl.add_constraint(t, c, true),
            adds = { c.key } }
        elseif oc.definition == c.definition .. " NOT VALID" then
          push { action = "alter", kind = "constraint", name = q .. "." .. n, adds = { c.key },
            statements = { { sql = "ALTER TABLE " .. ddl.rel_sql(t) .. " VALIDATE CONSTRAINT " .. ident(n) } } }
        end
      end
    end
    local old = o or { constraints = {}, indexes = {}, triggers = {}, policies = {}, rls = false, force_rls = false,
      acl = {} }
    for _, n in ipairs(sorted_keys(t.constraints)) do
      local c = t.constraints[n]
      comment_change(c.key, "CONSTRAINT " .. ident(n) .. " ON " .. rel_clause(t),
        not replaced[c.key] and old.constraints[n] and old.constraints[n].comment, c.comment, q .. "." .. n)
    end
    -- indexes
    for _, n in ipairs(sorted_keys(old.indexes)) do
      local x, nx = old.indexes[n], t.indexes[n]
      if not nx or nx.definition ~= x.definition or replaced["index " .. x.qname] then
        push { action = "drop", kind = "index", name = x.qname, statements = ddl.drop_index(t, x),
          alt = not t.partitioned and ddl.drop_index(t, x, true) or nil, removes = { "index " .. x.qname } }
      end
    end
    for _, n in ipairs(sorted_keys(t.indexes)) do
      local x, ox = t.indexes[n], old.indexes[n]
      local key = "index " .. x.qname
      if not ox or ox.definition ~= x.definition or replaced[key] then
        push { action = "create", kind = "index", name = x.qname, statements = ddl.create_index(t, x),
          alt = o and not t.partitioned and ddl.create_index(t, x, true) or nil, adds = { key }, existing = o ~= nil }
      end
      comment_change(key, "INDEX " .. ddl.qname_sql(x.qname), ox and not replaced[key] and ox.definition == x.definition
        and ox.comment, x.comment, x.qname)
    end
    -- triggers
    for _, n in ipairs(sorted_keys(old.triggers)) do
      local tg, ntg = old.triggers[n], t.triggers[n]
      local key = "trigger " .. q .. "." .. ident(n)
      if not ntg or ntg.definition ~= tg.definition or replaced[key] then
        push { action = "drop", kind = "trigger", name = q .. "." .. n, statements = ddl.drop_trigger(t, tg),
          removes = { key } }
      end
    end
    for _, n in ipairs(sorted_keys(t.triggers)) do
      local tg, otg = t.triggers[n], old.triggers[n]
      local key = "trigger " .. q .. "." .. ident(n)
      local fresh = not otg or otg.definition ~= tg.definition or replaced[key]
      if fresh then
        push { action = "create", kind = "trigger", name = q .. "." .. n, statements = ddl.create_trigger(t, tg),
          adds = { key } }
      elseif otg.enabled ~= tg.enabled then
        local words = { O = "ENABLE TRIGGER", D = "DISABLE TRIGGER", R = "ENABLE REPLICA TRIGGER",
          A = "ENABLE ALWAYS TRIGGER" }
        push { action = "alter", kind = "trigger", name = q .. "." .. n, adds = { key },
          statements = { { sql = "ALTER TABLE " .. ddl.rel_sql(t) .. " " .. words[tg.enabled] .. " " .. ident(n) } } }
      end
      comment_change(key, "TRIGGER " .. ident(n) .. " ON " .. rel_clause(t), not fresh and otg.comment, tg.comment,
        q .. "." .. n)
    end
    if o then
      if (t.unlogged or false) ~= (o.unlogged or false) then
        push { action = "alter", kind = "table", name = q, requires = { tkey },
          statements = { { sql = "ALTER TABLE " .. ddl.rel_sql(t) .. (t.unlogged and " SET UNLOGGED"
            or " SET LOGGED") } } }
      end
      if t.options ~= o.options then
        push { action = "alter", kind = "table", name = q, requires = { tkey },
          statements = ddl.view_options(t, o, "TABLE") }
      end
      if t.partition_of ~= o.partition_of or t.bound ~= o.bound then
        push { action = "alter", kind = "partition", name = q, statements = ddl.partition(t, o),
          requires = { tkey, t.partition_of and ("table " .. t.partition_of) } }
      end
    end
    -- row-level security, then policies
    if (t.rls or false) ~= (old.rls or false) or (t.force_rls or false) ~= (old.force_rls or false) then
      push { action = "alter", kind = "rls", name = q, statements = ddl.rls(t, old), requires = { tkey } }
    end
    for _, n in ipairs(sorted_keys(old.policies)) do
      local p, np = old.policies[n], t.policies[n]
      local key = "policy " .. q .. "." .. ident(n)
      if not np or replaced[key] or (np and not ddl.alter_policy(t, np, p)) then
        push { action = "drop", kind = "policy", name = q .. "." .. n, statements = ddl.drop_policy(t, p),
          removes = { key }, rls = true }
      end
    end
    for _, n in ipairs(sorted_keys(t.policies)) do
      local p, op = t.policies[n], old.policies[n]
      local key = "policy " .. q .. "." .. ident(n)
      local alter = op and not replaced[key] and ddl.alter_policy(t, p, op)
      local fresh = not op or not alter
      if fresh then
        push { action = "create", kind = "policy", name = q .. "." .. n, statements = ddl.create_policy(t, p),
          adds = { key }, rls = true }
      elseif op.using ~= p.using or op.with_check ~= p.with_check or op.roles ~= p.roles then
        push { action = "alter", kind = "policy", name = q .. "." .. n, statements = alter, adds = { key },
          removes = { key }, rls = true }
      end
      comment_change(key, "POLICY " .. ident(n) .. " ON " .. rel_clause(t), not fresh and op.comment, p.comment,
        q .. "." .. n)
    end
    comment_change(tkey, "TABLE " .. rel_clause(t), old.comment, t.comment, q)
    acl_change(tkey, "TABLE " .. rel_clause(t), old.acl, t.acl, q, name_lua)
  end

  -- Views ----------------------------------------------------------------------------------------
  for _, q in ipairs(sorted_keys(from.views)) do
    local v = from.views[q]
    if not to.views[q] or replaced["view " .. q] then
      push { action = "drop", kind = "view", name = q, statements = ddl.drop_view(v), removes = { "view " .. q },
        destructive = not to.views[q] and v.materialized or nil }
    end
  end
  for _, q in ipairs(sorted_keys(to.views)) do
    local v, o = to.views[q], from.views[q]
    local key = "view " .. q
    local fresh = not o or replaced[key]
    if fresh then
      push { action = "create", kind = "view", name = q, statements = ddl.create_view(v), adds = { key } }
    else
      if o.definition ~= v.definition then
        push { action = "alter", kind = "view", name = q, statements = ddl.create_view(v, true), adds = { key },
          removes = { key } }
      end
      if o.options ~= v.options then
        push { action = "alter", kind = "view", name = q, statements = ddl.view_options(v, o), adds = { key } }
      end
    end
    local what = (v.materialized and "MATERIALIZED VIEW " or "VIEW ") .. ddl.qname_sql(q)
    comment_change(key, what, not fresh and o.comment, v.comment, q)
    for _, col in ipairs(v.columns) do
      local oc = not fresh and o.column[col.name]
      comment_change(key, "COLUMN " .. ddl.qname_sql(q) .. "." .. ident(col.name), oc and oc.comment, col.comment,
        q .. "." .. col.name)
    end
    acl_change(key, "TABLE " .. ddl.rel_sql(v), not fresh and o.acl or {}, v.acl, q, ddl.rel_lua(v))
    for _, n in ipairs(sorted_keys(v.indexes)) do
      local x = v.indexes[n]
      local ox = not fresh and o.indexes[n]
      if not ox or ox.definition ~= x.definition then
        if ox then
          push { action = "drop", kind = "index", name = x.qname, statements = ddl.drop_index(v, ox),
            removes = { "index " .. x.qname } }
        end
        push { action = "create", kind = "index", name = x.qname, statements = ddl.create_index(v, x),
          adds = { "index " .. x.qname }, requires = { key } }
      end
    end
    if not fresh then
      for _, n in ipairs(sorted_keys(o.indexes)) do
        if not v.indexes[n] then
          push { action = "drop", kind = "index", name = o.indexes[n].qname,
            statements = ddl.drop_index(v, o.indexes[n]), removes = { "index " .. o.indexes[n].qname }
          }
        end
      end
    end
  end

  for _ = 1, 10 do
    local ordered, stuck = order.order(changes, from, to)
    if ordered then
      return ordered
    end
    if not order.split_cycles(changes, stuck, from) then
      return order.order(changes, from, to, true)
    end
  end
  return order.order(changes, from, to, true)
end

--- The change list as JSON-ready tables: {action, kind, name, sql, destructive}.
function M.plain(changes)
  local list = {}
  for i, c in ipairs(changes) do
    local sql = {}
    for j, s in ipairs(c.statements) do
      sql[j] = s.sql
    end
    list[i] = { action = c.action, kind = c.kind, name = c.name, sql = sql, destructive = c.destructive or false }
  end
  return list
end

return M
