-- tide.snapshot: a database's schema as sorted lines of text (one catalog query), and what
-- differs between two such snapshots: how `tide test` proves a downgrade restores the schema.
local M = {}

-- The schema as sorted lines of text: every object outside the system schemas and tide's own.
local SNAPSHOT = [[
WITH ns AS (
  SELECT oid, nspname FROM pg_catalog.pg_namespace
  WHERE nspname NOT IN ('pg_catalog', 'information_schema', $1) AND nspname NOT LIKE 'pg\_%'
), rel AS (
  SELECT c.oid, c.relkind, pg_catalog.format('%I.%I', ns.nspname, c.relname) AS name
  FROM pg_catalog.pg_class c JOIN ns ON ns.oid = c.relnamespace
)
SELECT line FROM (
  SELECT 'schema ' || pg_catalog.quote_ident(nspname) AS line FROM ns
  UNION ALL
  SELECT 'relation ' || name || ' kind ' || relkind::text FROM rel WHERE relkind <> 'i'
  UNION ALL
  SELECT 'column ' || rel.name || '.' || pg_catalog.quote_ident(a.attname) || ' '
    || pg_catalog.format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
    || COALESCE(' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_catalog.pg_attribute a JOIN rel ON rel.oid = a.attrelid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE a.attnum > 0 AND NOT a.attisdropped AND rel.relkind IN ('r', 'p', 'v', 'm', 'f')
  UNION ALL
  SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
  JOIN rel ON rel.oid = i.indrelid
  UNION ALL
  SELECT 'constraint ' || rel.name || ' ' || pg_catalog.quote_ident(co.conname) || ' '
    || pg_catalog.pg_get_constraintdef(co.oid)
  FROM pg_catalog.pg_constraint co JOIN rel ON rel.oid = co.conrelid
  UNION ALL
  SELECT 'view ' || rel.name || ' ' || pg_catalog.pg_get_viewdef(rel.oid) FROM rel WHERE relkind IN ('v', 'm')
  UNION ALL
  SELECT 'function ' || ns.nspname || '.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid)
    || ') ' || pg_catalog.md5(CASE p.prokind WHEN 'a' THEN p.prosrc ELSE pg_catalog.pg_get_functiondef(p.oid) END)
  FROM pg_catalog.pg_proc p JOIN ns ON ns.oid = p.pronamespace
  UNION ALL
  SELECT 'type ' || ns.nspname || '.' || t.typname || ' ' || t.typtype::text || COALESCE(' (' || (
    SELECT pg_catalog.string_agg(e.enumlabel, ', ' ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e
    WHERE e.enumtypid = t.oid) || ')', '')
  FROM pg_catalog.pg_type t JOIN ns ON ns.oid = t.typnamespace
  WHERE t.typtype IN ('e', 'd', 'c', 'r') AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
    WHERE c.oid = t.typrelid AND c.relkind <> 'c')
  UNION ALL
  SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(tg.oid) FROM pg_catalog.pg_trigger tg
  JOIN rel ON rel.oid = tg.tgrelid WHERE NOT tg.tgisinternal
  UNION ALL
  SELECT 'policy ' || rel.name || ' ' || pg_catalog.quote_ident(po.polname) || ' ' || po.polcmd::text || ' '
    || COALESCE(pg_catalog.pg_get_expr(po.polqual, po.polrelid), '') || ' '
    || COALESCE(pg_catalog.pg_get_expr(po.polwithcheck, po.polrelid), '')
  FROM pg_catalog.pg_policy po JOIN rel ON rel.oid = po.polrelid
  UNION ALL
  SELECT 'row security ' || rel.name FROM rel JOIN pg_catalog.pg_class c ON c.oid = rel.oid
  WHERE c.relrowsecurity
  UNION ALL
  SELECT 'extension ' || extname FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql'
) s ORDER BY line]]

--- The schema of the database conn is connected to, as a sorted list of lines.
function M.read(conn, schema)
  local lines = {}
  for _, row in ipairs(conn:query(SNAPSHOT, schema)) do
    lines[#lines + 1] = row.line
  end
  return lines
end

--- What differs between two snapshots: lines only in a ("-") and only in b ("+").
function M.diff(a, b)
  local in_a, in_b, d = {}, {}, {}
  for _, l in ipairs(a) do
    in_a[l] = true
  end
  for _, l in ipairs(b) do
    in_b[l] = true
  end
  for _, l in ipairs(a) do
    if not in_b[l] then
      d[#d + 1] = "- " .. l
    end
  end
  for _, l in ipairs(b) do
    if not in_a[l] then
      d[#d + 1] = "+ " .. l
    end
  end
  return d
end

return M
