-- tide.catalog: one database's schema as a plain Lua model, for `tide diff`, `tide dump`,
-- `tide new --autogenerate` and `tide check --schema`.
--
--   local catalog = require "tide.catalog"
--   local model = catalog.read(conn, { exclude_schema = "tide", search_path = "public" })
--   catalog.lines(model)        -- the model as sorted lines of text: equal models, equal lines
--
-- One read-only REPEATABLE READ transaction (one snapshot), a dozen catalog queries whatever
-- the number of objects. Names and expressions come from PostgreSQL's own deparsers
-- (pg_get_*def, pg_get_expr, format_type) run with the same search_path on both sides, so two
-- databases holding the same schema give equal models. Objects that belong to an extension are
-- the extension's; tide's own tracking schema is left out. What the model does not cover is
-- listed in model.not_compared, never dropped silently.
local core = require "tide.core"
local json = require "tide.json"

local M = {}

-- Words quote_ident() quotes: every PostgreSQL 15 keyword that is not unreserved.
local KEYWORDS = {}
for word in ([[all analyse analyze and any array as asc asymmetric authorization between bigint binary bit
boolean both case cast char character check coalesce collate collation column concurrently constraint create
cross current_catalog current_date current_role current_schema current_time current_timestamp current_user dec
decimal default deferrable desc distinct do else end except exists extract false fetch float for foreign
freeze from full grant greatest group grouping having ilike in initially inner inout int integer intersect
interval into is isnull join lateral leading least left like limit localtime localtimestamp national natural
nchar none normalize not notnull null nullif numeric offset on only or order out outer overlaps overlay
placing position precision primary real references returning right row select session_user setof similar
smallint some substring symmetric table tablesample then time timestamp to trailing treat trim true union
unique user using values varchar variadic verbose when where window with xmlattributes xmlconcat xmlelement
xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable]]):gmatch("%S+") do
  KEYWORDS[word] = true
end

--- An identifier as PostgreSQL's quote_ident writes it: bare when it can be, else in quotes.
---@param name string
---@return string
function M.ident(name)
  if name:match("^[a-z_][a-z0-9_$]*$") and not KEYWORDS[name] then
    return name
  end
  return '"' .. name:gsub('"', '""') .. '"'
end

--- schema.name, each part quoted as needed.
function M.qualified(schema, name)
  return M.ident(schema) .. "." .. M.ident(name)
end

-- The owner's own privileges are implied; PUBLIC is grantee 0. One "grantee=PRIV[*]" per
-- privilege, sorted, comma-separated: two equal ACLs give equal text whoever granted them.
local function acl(column, default_kind, owner)
  local source = default_kind and string.format("COALESCE(%s, pg_catalog.acldefault('%s', %s))", column,
    default_kind, owner) or column
  return string.format([[(SELECT pg_catalog.string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC'
    ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END || '=' || a.privilege_type
    || CASE WHEN a.is_grantable THEN '*' ELSE '' END, ',' ORDER BY 1)
    FROM pg_catalog.aclexplode(%s) a WHERE a.grantee <> %s)]], source, owner)
end

-- Schemas the model covers: not the system's, not tide's, not an extension's.
local USER_NAMESPACES = [[
nsp AS (
  SELECT n.oid, n.nspname FROM pg_catalog.pg_namespace n
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', $1)
    AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_namespace'::regclass
      AND d.objid = n.oid AND d.deptype = 'e')
)]]

local function member_of_extension(catalog_name, oid)
  return string.format("EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid = '%s'::regclass "
    .. "AND e.objid = %s AND e.deptype = 'e')", catalog_name, oid)
end

local QUERIES = {}

QUERIES.schemas = "WITH " .. USER_NAMESPACES .. [[
SELECT n.oid, n.nspname AS name, pg_catalog.obj_description(n.oid, 'pg_namespace') AS comment,
  ]] .. acl("s.nspacl", "n", "s.nspowner") .. [[ AS acl
FROM nsp n JOIN pg_catalog.pg_namespace s ON s.oid = n.oid]]

QUERIES.extensions = [[
SELECT e.oid, e.extname AS name, n.nspname AS schema, e.extversion AS version
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname <> 'plpgsql']]

QUERIES.types = "WITH " .. USER_NAMESPACES .. [[
SELECT t.oid, t.typarray, n.nspname AS schema, t.typname AS name, t.typtype AS kind,
  CASE WHEN t.typtype = 'e' THEN (SELECT pg_catalog.json_agg(e.enumlabel ORDER BY e.enumsortorder)::text
    FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid) END AS labels,
  CASE WHEN t.typtype = 'd' THEN pg_catalog.format_type(t.typbasetype, t.typtypmod) END AS base,
  t.typnotnull AS not_null, t.typdefault AS "default",
  CASE WHEN t.typtype = 'd' THEN (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(c.conname,
    pg_catalog.pg_get_constraintdef(c.oid)) ORDER BY c.conname)::text
    FROM pg_catalog.pg_constraint c WHERE c.contypid = t.oid) END AS checks,
  pg_catalog.obj_description(t.oid, 'pg_type') AS comment,
  ]] .. acl("t.typacl", "T", "t.typowner") .. [[ AS acl
FROM pg_catalog.pg_type t JOIN nsp n ON n.oid = t.typnamespace
WHERE t.typtype IN ('e', 'd') AND NOT ]] .. member_of_extension("pg_catalog.pg_type", "t.oid")

QUERIES.sequences = "WITH " .. USER_NAMESPACES .. [[
SELECT c.oid, n.nspname AS schema, c.relname AS name, pg_catalog.format_type(s.seqtypid, NULL) AS type,
  s.seqstart::text AS start, s.seqincrement::text AS increment, s.seqmin::text AS min, s.seqmax::text AS max,
  s.seqcache::text AS cache, s.seqcycle AS cycle,
  o.refobjid AS owned_by_table, a.attname AS owned_by_column,
  pg_catalog.obj_description(c.oid, 'pg_class') AS comment,
  ]] .. acl("c.relacl", "s", "c.relowner") .. [[ AS acl
FROM pg_catalog.pg_class c JOIN nsp n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
LEFT JOIN pg_catalog.pg_depend o ON o.classid = 'pg_catalog.pg_class'::regclass AND o.objid = c.oid
  AND o.refclassid = 'pg_catalog.pg_class'::regclass AND o.deptype = 'a' AND o.refobjsubid > 0
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = o.refobjid AND a.attnum = o.refobjsubid
WHERE c.relkind = 'S' AND NOT ]] .. member_of_extension("pg_catalog.pg_class", "c.oid") .. [[
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend i WHERE i.classid = 'pg_catalog.pg_class'::regclass
    AND i.objid = c.oid AND i.deptype = 'i')]]

-- Relations: tables, partitioned tables, views, materialized views.
local RELATIONS = "WITH " .. USER_NAMESPACES .. [[,
rel AS (
  SELECT c.* FROM pg_catalog.pg_class c JOIN nsp n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm') AND NOT ]] .. member_of_extension("pg_catalog.pg_class", "c.oid") .. [[
)
]]

QUERIES.relations = RELATIONS .. [[
SELECT c.oid, c.reltype, n.nspname AS schema, c.relname AS name, c.relkind AS kind,
  c.relpersistence = 'u' AS unlogged, c.relrowsecurity AS rls, c.relforcerowsecurity AS force_rls,
  pg_catalog.array_to_string(c.reloptions, ', ') AS options,
  CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS partition_key,
  CASE WHEN c.relispartition THEN pg_catalog.pg_get_expr(c.relpartbound, c.oid) END AS bound,
  (SELECT i.inhparent FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid AND c.relispartition) AS parent,
  EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid AND NOT c.relispartition) AS inherits,
  CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid, true) END AS definition,
  (SELECT r.oid FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename = '_RETURN') AS rule,
  pg_catalog.obj_description(c.oid, 'pg_class') AS comment,
  ]] .. acl("c.relacl", "r", "c.relowner") .. [[ AS acl
FROM rel c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace]]

QUERIES.columns = RELATIONS .. [[
SELECT a.attrelid AS rel, a.attnum AS num, a.attname AS name,
  pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.atttypid AS type_oid, a.attnotnull AS not_null,
  pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS "default", d.oid AS default_oid,
  a.attidentity AS identity, a.attgenerated AS generated, a.attislocal AS local,
  CASE WHEN a.attcollation <> t.typcollation THEN pg_catalog.quote_ident(co.collname) END AS collation,
  pg_catalog.col_description(a.attrelid, a.attnum) AS comment,
  ]] .. acl("a.attacl", nil, "c.relowner") .. [[ AS acl
FROM pg_catalog.pg_attribute a JOIN rel c ON c.oid = a.attrelid
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
WHERE a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum]]

-- Constraints a partition inherits from its parent are the parent's.
QUERIES.constraints = RELATIONS .. [[
SELECT co.oid, co.conrelid AS rel, co.conname AS name, co.contype AS type,
  pg_catalog.pg_get_constraintdef(co.oid) AS definition, co.conindid AS index, co.confrelid AS references,
  pg_catalog.obj_description(co.oid, 'pg_constraint') AS comment
FROM pg_catalog.pg_constraint co JOIN rel c ON c.oid = co.conrelid
WHERE co.conparentid = 0 AND co.conislocal]]

-- Indexes that no constraint owns, and that are not a partition's copy of its parent's index.
QUERIES.indexes = RELATIONS .. [[
SELECT i.indexrelid AS oid, i.indrelid AS rel, ic.relname AS name,
  pg_catalog.pg_get_indexdef(i.indexrelid) AS definition,
  pg_catalog.obj_description(i.indexrelid, 'pg_class') AS comment
FROM pg_catalog.pg_index i JOIN rel c ON c.oid = i.indrelid
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint co WHERE co.conindid = i.indexrelid
    AND co.conrelid = i.indrelid AND co.contype IN ('p', 'u', 'x'))
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE h.inhrelid = i.indexrelid)]]

QUERIES.functions = "WITH " .. USER_NAMESPACES .. [[
SELECT p.oid, n.nspname AS schema, p.proname AS name, p.prokind AS kind,
  pg_catalog.pg_get_function_identity_arguments(p.oid) AS args,
  pg_catalog.pg_get_function_arguments(p.oid) AS arguments,
  pg_catalog.pg_get_function_result(p.oid) AS result,
  CASE WHEN p.prokind IN ('f', 'p') THEN pg_catalog.pg_get_functiondef(p.oid) END AS definition,
  pg_catalog.obj_description(p.oid, 'pg_proc') AS comment,
  ]] .. acl("p.proacl", "f", "p.proowner") .. [[ AS acl
FROM pg_catalog.pg_proc p JOIN nsp n ON n.oid = p.pronamespace
WHERE NOT ]] .. member_of_extension("pg_catalog.pg_proc", "p.oid")

QUERIES.triggers = RELATIONS .. [[
SELECT t.oid, t.tgrelid AS rel, t.tgname AS name, pg_catalog.pg_get_triggerdef(t.oid) AS definition,
  t.tgenabled AS enabled, pg_catalog.obj_description(t.oid, 'pg_trigger') AS comment
FROM pg_catalog.pg_trigger t JOIN rel c ON c.oid = t.tgrelid
WHERE NOT t.tgisinternal AND t.tgparentid = 0]]

QUERIES.policies = RELATIONS .. [[
SELECT p.oid, p.polrelid AS rel, p.polname AS name, p.polpermissive AS permissive, p.polcmd AS command,
  (SELECT pg_catalog.string_agg(CASE WHEN r = 0 THEN 'public'
     ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r)) END, ', ' ORDER BY 1)
   FROM pg_catalog.unnest(p.polroles) r) AS roles,
  pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using,
  pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS with_check,
  pg_catalog.obj_description(p.oid, 'pg_policy') AS comment
FROM pg_catalog.pg_policy p JOIN rel c ON c.oid = p.polrelid]]

-- What depends on what, between objects of the database's own (user oids): ordering the
-- changes of a diff needs it in both directions.
QUERIES.depends = [[
SELECT d.classid::regclass::text AS class, d.objid AS oid, d.objsubid AS sub,
  d.refclassid::regclass::text AS ref_class, d.refobjid AS ref_oid, d.refobjsubid AS ref_sub
FROM pg_catalog.pg_depend d
WHERE d.deptype IN ('n', 'a') AND d.objid >= 16384 AND d.refobjid >= 16384]]

-- Kinds of object the model does not compare, so that `tide diff` can say so.
QUERIES.not_compared = "WITH " .. USER_NAMESPACES .. [[
SELECT kind, name FROM (
  SELECT 'composite type' AS kind, pg_catalog.format('%I.%I', n.nspname, t.typname) AS name
  FROM pg_catalog.pg_type t JOIN nsp n ON n.oid = t.typnamespace JOIN pg_catalog.pg_class c ON c.oid = t.typrelid
  WHERE t.typtype = 'c' AND c.relkind = 'c'
  UNION ALL
  SELECT CASE t.typtype WHEN 'r' THEN 'range type' WHEN 'm' THEN 'multirange type' ELSE 'base type' END,
    pg_catalog.format('%I.%I', n.nspname, t.typname)
  FROM pg_catalog.pg_type t JOIN nsp n ON n.oid = t.typnamespace
  WHERE t.typtype IN ('r', 'b') AND t.typelem = 0 AND NOT ]] .. member_of_extension("pg_catalog.pg_type", "t.oid") .. [[
  UNION ALL
  SELECT CASE c.relkind WHEN 'f' THEN 'foreign table' ELSE 'relation kind ' || c.relkind::text END,
    pg_catalog.format('%I.%I', n.nspname, c.relname)
  FROM pg_catalog.pg_class c JOIN nsp n ON n.oid = c.relnamespace
  WHERE c.relkind = 'f' AND NOT ]] .. member_of_extension("pg_catalog.pg_class", "c.oid") .. [[
  UNION ALL
  SELECT 'aggregate', pg_catalog.format('%I.%I', n.nspname, p.proname)
  FROM pg_catalog.pg_proc p JOIN nsp n ON n.oid = p.pronamespace
  WHERE p.prokind = 'a' AND NOT ]] .. member_of_extension("pg_catalog.pg_proc", "p.oid") .. [[
  UNION ALL
  SELECT 'operator', pg_catalog.format('%I.%s', n.nspname, o.oprname)
  FROM pg_catalog.pg_operator o JOIN nsp n ON n.oid = o.oprnamespace
  WHERE NOT ]] .. member_of_extension("pg_catalog.pg_operator", "o.oid") .. [[
  UNION ALL
  SELECT 'collation', pg_catalog.format('%I.%I', n.nspname, c.collname)
  FROM pg_catalog.pg_collation c JOIN nsp n ON n.oid = c.collnamespace
  WHERE NOT ]] .. member_of_extension("pg_catalog.pg_collation", "c.oid") .. [[
  UNION ALL
  SELECT 'rule', pg_catalog.format('%I on %s', r.rulename, r.ev_class::regclass)
  FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class JOIN nsp n ON n.oid = c.relnamespace
  WHERE r.rulename <> '_RETURN'
  UNION ALL
  SELECT 'table inheritance', pg_catalog.format('%s inherits %s', i.inhrelid::regclass, i.inhparent::regclass)
  FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid JOIN nsp n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  UNION ALL
  SELECT 'trigger on a view', pg_catalog.format('%I on %s', t.tgname, t.tgrelid::regclass)
  FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN nsp n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('v', 'm') AND NOT t.tgisinternal
  UNION ALL
  SELECT 'statistics object', pg_catalog.format('%I.%I', n.nspname, s.stxname)
  FROM pg_catalog.pg_statistic_ext s JOIN nsp n ON n.oid = s.stxnamespace
  UNION ALL
  SELECT 'text search configuration', pg_catalog.format('%I.%I', n.nspname, c.cfgname)
  FROM pg_catalog.pg_ts_config c JOIN nsp n ON n.oid = c.cfgnamespace
  WHERE NOT ]] .. member_of_extension("pg_catalog.pg_ts_config", "c.oid") .. [[
  UNION ALL
  SELECT 'event trigger', pg_catalog.quote_ident(evtname) FROM pg_catalog.pg_event_trigger
  UNION ALL
  SELECT 'publication', pg_catalog.quote_ident(pubname) FROM pg_catalog.pg_publication
  UNION ALL
  SELECT 'default privileges', pg_catalog.format('for role %s', pg_catalog.pg_get_userbyid(defaclrole))
  FROM pg_catalog.pg_default_acl
  UNION ALL
  SELECT 'column statistics target', pg_catalog.format('%s.%I', a.attrelid::regclass, a.attname)
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN nsp n ON n.oid = c.relnamespace WHERE a.attnum > 0 AND a.attstattarget >= 0 AND c.relkind IN ('r', 'p')
) s ORDER BY kind, name]]

local ORDER = { "schemas", "extensions", "types", "sequences", "relations", "columns", "constraints", "indexes",
  "functions", "triggers", "policies", "depends", "not_compared" }

local function value(v)
  if v == core.null then
    return nil
  end
  return v
end

-- A row with SQL NULLs as nil.
local function clean(row)
  for k, v in pairs(row) do
    if v == core.null then
      row[k] = nil
    end
  end
  return row
end

local function acl_list(text)
  local list = {}
  for item in (value(text) or ""):gmatch("[^,]+") do
    list[#list + 1] = item
  end
  return list
end

local POLICY_COMMANDS = { r = "select", a = "insert", w = "update", d = "delete", ["*"] = "all" }
local CONSTRAINT_TYPES = { p = "primary key", u = "unique", f = "foreign key", c = "check", x = "exclusion",
  t = "trigger" }

--- An empty model (what an empty database reads as, less its public schema).
function M.empty()
  return { schemas = {}, extensions = {}, types = {}, sequences = {}, tables = {}, views = {}, functions = {},
    deps = {}, not_compared = {} }
end

--- Reads the schema of the database conn is connected to.
---@param conn userdata tide.Conn (no transaction open)
---@param opts table {exclude_schema = tracking schema, search_path = what deparsed names are relative to}
---@return table model
function M.read(conn, opts)
  opts = opts or {}
  local rows = {}
  -- opts.in_transaction: the caller's open transaction is the snapshot (a spec reading what it
  -- has not committed)
  if not opts.in_transaction then
    conn:exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
  end
  local ok, err = pcall(function()
    conn:query("SELECT pg_catalog.set_config('search_path', $1, true)", opts.search_path or "public")
    for _, name in ipairs(ORDER) do
      local needs_schema = QUERIES[name]:find("$1", 1, true)
      if needs_schema then
        rows[name] = conn:query(QUERIES[name], opts.exclude_schema or "tide")
      else
        rows[name] = conn:query(QUERIES[name])
      end
    end
  end)
  if not opts.in_transaction then
    pcall(conn.exec, conn, "COMMIT")
  end
  if not ok then
    error(err, 0)
  end
  return M.build(rows, opts)
end

-- The model from the rows of the queries above.
function M.build(rows, opts)
  local model = M.empty()
  model.search_path = opts.search_path or "public"
  -- oid -> dependency key, per catalog: what pg_depend rows are turned into
  local keys = { pg_class = {}, pg_proc = {}, pg_type = {}, pg_constraint = {}, pg_policy = {}, pg_trigger = {},
    pg_rewrite = {}, pg_attrdef = {}, pg_namespace = {}, pg_extension = {} }
  local columns_of = {} -- rel oid -> attnum -> column key
  local column_owner = {} -- column key -> its relation's key
  model.keys = keys

  for _, r in ipairs(rows.schemas) do
    clean(r)
    model.schemas[r.name] = { name = r.name, comment = r.comment, acl = acl_list(r.acl) }
    keys.pg_namespace[r.oid] = "schema " .. M.ident(r.name)
  end
  for _, r in ipairs(rows.extensions) do
    clean(r)
    model.extensions[r.name] = { name = r.name, schema = r.schema, version = r.version }
    keys.pg_extension[r.oid] = "extension " .. M.ident(r.name)
  end
  for _, r in ipairs(rows.types) do
    clean(r)
    local q = M.qualified(r.schema, r.name)
    local t = { schema = r.schema, name = r.name, qname = q, comment = r.comment, acl = acl_list(r.acl) }
    if r.kind == "e" then
      t.kind = "enum"
      t.labels = json.decode(r.labels or "[]")
    else
      t.kind = "domain"
      t.base, t.not_null, t.default = r.base, r.not_null, r.default
      t.checks = {}
      for _, pair in ipairs(r.checks and json.decode(r.checks) or {}) do
        t.checks[#t.checks + 1] = { name = pair[1], definition = pair[2] }
      end
    end
    model.types[q] = t
    keys.pg_type[r.oid] = "type " .. q
    keys.pg_type[r.typarray] = "type " .. q
  end
  local relations = {} -- oid -> table or view
  for _, r in ipairs(rows.relations) do
    clean(r)
    local q = M.qualified(r.schema, r.name)
    local rel = { schema = r.schema, name = r.name, qname = q, comment = r.comment, acl = acl_list(r.acl),
      options = r.options, columns = {}, column = {} }
    if r.kind == "v" or r.kind == "m" then
      rel.materialized = r.kind == "m"
      rel.definition = r.definition
      rel.indexes = {}
      model.views[q] = rel
      rel.key = "view " .. q
      keys.pg_rewrite[r.rule] = rel.key
    else
      rel.partitioned = r.kind == "p"
      rel.unlogged = r.unlogged
      rel.rls, rel.force_rls = r.rls, r.force_rls
      rel.partition_key, rel.bound, rel.parent_oid = r.partition_key, r.bound, r.parent
      rel.constraints, rel.indexes, rel.triggers, rel.policies = {}, {}, {}, {}
      model.tables[q] = rel
      rel.key = "table " .. q
    end
    relations[r.oid] = rel
    keys.pg_class[r.oid] = rel.key
    keys.pg_type[r.reltype] = rel.key
    columns_of[r.oid] = {}
  end
  for _, rel in pairs(relations) do
    if rel.parent_oid then
      local parent = relations[rel.parent_oid]
      rel.partition_of = parent and parent.qname
      rel.parent_oid = nil
    end
  end
  for _, r in ipairs(rows.columns) do
    clean(r)
    local rel = relations[r.rel]
    local col = { name = r.name, type = r.type, not_null = r.not_null, default = r.default, collation = r.collation,
      comment = r.comment, acl = acl_list(r.acl) }
    if r.identity and r.identity ~= "" then
      col.identity = r.identity == "a" and "always" or "by default"
    end
    if r.generated and r.generated ~= "" then
      col.generated, col.default = col.default, nil
    end
    if rel.partition_of and not r["local"] then
      col.inherited = true
    end
    rel.columns[#rel.columns + 1] = col
    rel.column[r.name] = col
    local key = "column " .. rel.qname .. "." .. M.ident(r.name)
    columns_of[r.rel][r.num] = key
    column_owner[key] = rel.key
    if r.default_oid then
      keys.pg_attrdef[r.default_oid] = key
    end
  end
  for _, r in ipairs(rows.constraints) do
    clean(r)
    local rel = relations[r.rel]
    if rel and rel.constraints then
      local c = { name = r.name, type = CONSTRAINT_TYPES[r.type] or r.type, definition = r.definition,
        comment = r.comment }
      if r.references and r.references ~= 0 and relations[r.references] then
        c.references = relations[r.references].qname
      end
      rel.constraints[r.name] = c
      c.key = "constraint " .. rel.qname .. "." .. M.ident(r.name)
      keys.pg_constraint[r.oid] = c.key
      if r.index and r.index ~= 0 and r.type ~= "f" then
        keys.pg_class[r.index] = c.key
      end
    end
  end
  for _, r in ipairs(rows.indexes) do
    clean(r)
    local rel = relations[r.rel]
    local q = M.qualified(rel.schema, r.name)
    rel.indexes[r.name] = { name = r.name, qname = q, definition = r.definition, comment = r.comment }
    keys.pg_class[r.oid] = "index " .. q
  end
  for _, r in ipairs(rows.functions) do
    clean(r)
    if r.kind == "f" or r.kind == "p" then
      local q = M.qualified(r.schema, r.name) .. "(" .. r.args .. ")"
      model.functions[q] = { schema = r.schema, name = r.name, qname = q, args = r.args, arguments = r.arguments,
        result = r.result, kind = r.kind == "p" and "procedure" or "function", definition = r.definition,
        comment = r.comment, acl = acl_list(r.acl) }
      keys.pg_proc[r.oid] = "function " .. q
    end
  end
  for _, r in ipairs(rows.triggers) do
    clean(r)
    local rel = relations[r.rel]
    if rel.triggers then
      rel.triggers[r.name] = { name = r.name, definition = r.definition, enabled = r.enabled, comment = r.comment }
      keys.pg_trigger[r.oid] = "trigger " .. rel.qname .. "." .. M.ident(r.name)
    end
  end
  for _, r in ipairs(rows.policies) do
    clean(r)
    local rel = relations[r.rel]
    rel.policies[r.name] = { name = r.name, permissive = r.permissive, command = POLICY_COMMANDS[r.command],
      roles = r.roles or "public", using = r.using, with_check = r.with_check, comment = r.comment }
    keys.pg_policy[r.oid] = "policy " .. rel.qname .. "." .. M.ident(r.name)
  end
  for _, r in ipairs(rows.sequences) do
    clean(r)
    local q = M.qualified(r.schema, r.name)
    local s = { schema = r.schema, name = r.name, qname = q, type = r.type, start = r.start,
      increment = r.increment, min = r.min, max = r.max, cache = r.cache, cycle = r.cycle, comment = r.comment,
      acl = acl_list(r.acl) }
    if r.owned_by_table and relations[r.owned_by_table] then
      s.owned_by = { table = relations[r.owned_by_table].qname, column = r.owned_by_column }
    end
    model.sequences[q] = s
    keys.pg_class[r.oid] = "sequence " .. q
  end
  -- pg_depend rows between modelled objects, as key -> set of keys it needs
  local function key_of(class, oid, sub)
    local cls = class:gsub("^pg_catalog%.", "")
    if cls == "pg_class" and sub and sub > 0 and columns_of[oid] then
      return columns_of[oid][sub]
    end
    local map = keys[cls]
    return map and map[oid]
  end
  for _, r in ipairs(rows.depends) do
    local from = key_of(r.class, r.oid, r.sub)
    local to = key_of(r.ref_class, r.ref_oid, r.ref_sub)
    -- a sequence's OWNED BY is its own change, not something the sequence needs to exist
    if from and to and from ~= to and not (from:match("^sequence ") and to:match("^column ")) then
      local set = model.deps[from]
      if not set then
        set = {}
        model.deps[from] = set
      end
      set[to] = true
      -- a column's owner table: what needs a column needs its table
      if column_owner[to] and column_owner[to] ~= from then
        set[column_owner[to]] = true
      end
    end
  end
  for _, r in ipairs(rows.not_compared) do
    model.not_compared[#model.not_compared + 1] = { kind = r.kind, name = r.name }
  end
  model.keys = nil
  return model
end

-- Lines --------------------------------------------------------------------------------------

local function field(v)
  if v == nil then
    return "-"
  elseif type(v) == "table" then
    return table.concat(v, ",")
  end
  return tostring(v)
end

local function sorted_keys(t)
  local list = {}
  for k in pairs(t) do
    list[#list + 1] = k
  end
  table.sort(list)
  return list
end
M.sorted_keys = sorted_keys

--- The model as sorted lines, one fact per line: two models are equal when their lines are.
---@param model table
---@return string[]
function M.lines(model)
  local out = {}
  local function add(...)
    local parts = table.pack(...)
    for i = 1, parts.n do
      parts[i] = field(parts[i])
    end
    out[#out + 1] = table.concat(parts, " | ")
  end
  for _, name in ipairs(sorted_keys(model.schemas)) do
    local s = model.schemas[name]
    add("schema", name, "comment", s.comment, "acl", s.acl)
  end
  for _, name in ipairs(sorted_keys(model.extensions)) do
    local e = model.extensions[name]
    add("extension", name, "schema", e.schema)
  end
  for _, q in ipairs(sorted_keys(model.types)) do
    local t = model.types[q]
    if t.kind == "enum" then
      add("enum", q, "labels", json.encode(t.labels), "comment", t.comment, "acl", t.acl)
    else
      local checks = {}
      for i, c in ipairs(t.checks) do
        checks[i] = c.name .. " " .. c.definition
      end
      add("domain", q, t.base, "not null", t.not_null, "default", t.default, "checks", table.concat(checks, "; "),
        "comment", t.comment, "acl", t.acl)
    end
  end
  for _, q in ipairs(sorted_keys(model.sequences)) do
    local s = model.sequences[q]
    add("sequence", q, s.type, s.start, s.increment, s.min, s.max, s.cache, s.cycle, "owned by",
      s.owned_by and (s.owned_by.table .. "." .. s.owned_by.column), "comment", s.comment, "acl", s.acl)
  end
  for _, q in ipairs(sorted_keys(model.tables)) do
    local t = model.tables[q]
    add("table", q, t.partitioned and "partitioned by " .. t.partition_key, "partition of", t.partition_of,
      t.bound, "unlogged", t.unlogged, "rls", t.rls, "force", t.force_rls, "options", t.options, "comment",
      t.comment, "acl", t.acl)
    -- by name, not position: a column added back by a downgrade comes last, and moving it would
    -- take rebuilding the table (column order is not compared)
    for _, c in ipairs(t.columns) do
      add("column", q, c.name, c.type, "not null", c.not_null, "default", c.default, "identity", c.identity,
        "generated", c.generated, "collate", c.collation, "comment", c.comment, "acl", c.acl)
    end
    for _, n in ipairs(sorted_keys(t.constraints)) do
      local c = t.constraints[n]
      add("constraint", q, n, c.definition, "comment", c.comment)
    end
    for _, n in ipairs(sorted_keys(t.indexes)) do
      local x = t.indexes[n]
      add("index", q, n, x.definition, "comment", x.comment)
    end
    for _, n in ipairs(sorted_keys(t.triggers)) do
      local x = t.triggers[n]
      add("trigger", q, n, x.definition, x.enabled, "comment", x.comment)
    end
    for _, n in ipairs(sorted_keys(t.policies)) do
      local p = t.policies[n]
      add("policy", q, n, p.permissive and "permissive" or "restrictive", p.command, "to", p.roles, "using", p.using,
        "with check", p.with_check, "comment", p.comment)
    end
  end
  for _, q in ipairs(sorted_keys(model.views)) do
    local v = model.views[q]
    add(v.materialized and "materialized view" or "view", q, v.definition, "options", v.options, "comment",
      v.comment, "acl", v.acl)
    for i, c in ipairs(v.columns) do
      add("view column", q, i, c.name, c.type, "comment", c.comment)
    end
    for _, n in ipairs(sorted_keys(v.indexes)) do
      add("index", q, n, v.indexes[n].definition, "comment", v.indexes[n].comment)
    end
  end
  for _, q in ipairs(sorted_keys(model.functions)) do
    local f = model.functions[q]
    add(f.kind, q, f.definition, "comment", f.comment, "acl", f.acl)
  end
  table.sort(out)
  return out
end

return M
