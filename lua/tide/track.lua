-- tide.track: version tracking in the `tide` schema (the name is configurable).
--
--   <schema>.revision  current state: one row per applied revision, with the checksum of the
--                      file that ran (and its algorithm version) and the applied source text.
--                      A non-transactional revision that stopped half way keeps a row with
--                      state 'partial' (and the step it failed at) until it is resumed or
--                      resolved; only rows with state 'applied' count as applied.
--   <schema>.step      the finished db:step() checkpoints of a partial revision.
--   <schema>.history   append-only log of every upgrade, downgrade, stamp, accept, resolve and
--                      failure: who, where, when, how long, the outcome and the error. A trigger
--                      refuses UPDATE and DELETE, so the log cannot be rewritten by accident.
--
-- The layout's version (M.format) is in the schema's comment. A newer tide upgrades an older
-- layout in place, under the migration lock, with ADD COLUMN IF NOT EXISTS and friends; the
-- lock-free read before the lock works with every format.
--
-- Every statement here is one round trip with $n parameters; the runner sends the state and
-- history rows of a revision inside the revision's own transaction.
local core = require "tide.core"
local revisions = require "tide.revisions"
local sql = require "tide.sql"

local M = {}

M.format = 3 -- version of the tables' layout, stored in the schema's comment

-- Every direction and outcome a history row can have (format 2 added accept and resolve).
local DIRECTIONS = "'upgrade', 'downgrade', 'stamp', 'unstamp', 'accept', 'resolve'"
local OUTCOMES = "'applied', 'failed', 'reverted'"

local function ddl(schema)
  local s = sql.ident(schema)
  return ([[
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.revision (
  revision text PRIMARY KEY,
  message text NOT NULL,
  checksum text NOT NULL,
  checksum_algorithm integer NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  applied_by text NOT NULL,
  duration_ms double precision NOT NULL,
  source text NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.history (
  id bigserial PRIMARY KEY,
  run_id text NOT NULL,
  revision text,
  direction text NOT NULL CHECK (direction IN ('upgrade', 'downgrade', 'stamp', 'unstamp')),
  outcome text NOT NULL CHECK (outcome IN ('applied', 'failed')),
  started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  duration_ms double precision NOT NULL,
  checksum text,
  error text,
  sqlstate text,
  db_user text NOT NULL DEFAULT CURRENT_USER,
  os_user text NOT NULL,
  host text NOT NULL,
  tide_version text NOT NULL,
  backup text,
  note text
);
CREATE OR REPLACE FUNCTION {schema}.history_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION 'tide history is append-only' USING ERRCODE = 'insufficient_privilege';
END
$fn$;
DROP TRIGGER IF EXISTS history_append_only ON {schema}.history;
CREATE TRIGGER history_append_only BEFORE UPDATE OR DELETE ON {schema}.history
  FOR EACH STATEMENT EXECUTE FUNCTION {schema}.history_append_only();
-- format 2: partial (non-transactional) revisions, steps, accept and resolve
ALTER TABLE {schema}.revision ADD COLUMN IF NOT EXISTS state text NOT NULL DEFAULT 'applied';
ALTER TABLE {schema}.revision ADD COLUMN IF NOT EXISTS partial_direction text;
ALTER TABLE {schema}.revision ADD COLUMN IF NOT EXISTS steps_total integer;
ALTER TABLE {schema}.revision ADD COLUMN IF NOT EXISTS failed_step text;
ALTER TABLE {schema}.revision ADD COLUMN IF NOT EXISTS error text;
ALTER TABLE {schema}.revision DROP CONSTRAINT IF EXISTS revision_state_check;
ALTER TABLE {schema}.revision ADD CONSTRAINT revision_state_check CHECK (state IN ('applied', 'partial'));
CREATE TABLE IF NOT EXISTS {schema}.step (
  revision text NOT NULL,
  direction text NOT NULL,
  name text NOT NULL,
  ordinal integer NOT NULL,
  run_id text NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  PRIMARY KEY (revision, direction, name)
);
ALTER TABLE {schema}.history DROP CONSTRAINT IF EXISTS history_direction_check;
ALTER TABLE {schema}.history ADD CONSTRAINT history_direction_check CHECK (direction IN ({directions}));
ALTER TABLE {schema}.history DROP CONSTRAINT IF EXISTS history_outcome_check;
ALTER TABLE {schema}.history ADD CONSTRAINT history_outcome_check CHECK (outcome IN ({outcomes}));
-- format 3: the backup's SHA-256 and size, so that restore can check an archive against the
-- database's own record rather than the manifest beside it in the bucket
ALTER TABLE {schema}.history ADD COLUMN IF NOT EXISTS backup_sha256 text;
ALTER TABLE {schema}.history ADD COLUMN IF NOT EXISTS backup_size bigint;
COMMENT ON SCHEMA {schema} IS 'tide migration state (format {format})';
]]):gsub("{directions}", DIRECTIONS):gsub("{outcomes}", OUTCOMES)
    :gsub("{schema}", (s:gsub("%%", "%%%%"))):gsub("{format}", M.format)
end

--- Does the tracking schema exist yet? (A read that takes no lock.)
function M.exists(conn, schema)
  local rows = conn:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present", sql.ident(schema) .. ".revision")
  return rows[1].present
end

--- Is the tracking schema there, and in which format? One lock-free query.
---@return boolean present
---@return integer|nil format (1 for a schema written before formats were numbered)
function M.inspect(conn, schema)
  local row = conn:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present, "
    .. "pg_catalog.obj_description(pg_catalog.to_regnamespace($2), 'pg_namespace') AS comment",
    sql.ident(schema) .. ".revision", sql.ident(schema))[1]
  if not row.present then
    return false, nil
  end
  local comment = row.comment ~= core.null and row.comment or ""
  return true, tonumber(comment:match("%(format (%d+)%)")) or 1
end

--- The tracking tables' statements (without BEGIN/COMMIT), for --sql and --dry-run.
M.ddl = ddl

--- Creates the tracking tables, or upgrades an older layout in place, in a short transaction of
--- their own, so that even a failure of the very first revision finds a history table to be
--- written to. Call it with the migration lock held.
function M.ensure(conn, schema)
  local present, format = M.inspect(conn, schema)
  if present and format > M.format then
    require("tide.errors").raise("connect", string.format("the tracking schema %s has format %d, newer than "
      .. "this tide understands (%d): upgrade tide", schema, format, M.format))
  end
  if present and format == M.format then
    return
  end
  conn:exec("BEGIN;\nSET LOCAL client_min_messages = warning;\n" .. ddl(schema) .. "COMMIT;")
end

--- One row summing up the state table: n (rows), clean (every row applied, by checksum
--- algorithm `algorithm`) and hash: the SHA-256 (hex) of "id<TAB>checksum<LF>" for every row,
--- in byte order of id. revisions.fingerprint computes the same over the files.
function M.fingerprint(conn, schema, algorithm)
  return conn:query("SELECT pg_catalog.count(*)::integer AS n, "
    .. "pg_catalog.bool_and(state = 'applied' AND checksum_algorithm = $1) AS clean, "
    .. "pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.string_agg("
    .. "revision || E'\\t' || checksum || E'\\n', '' ORDER BY revision COLLATE \"C\"), 'UTF8')), 'hex') AS hash "
    .. "FROM " .. sql.ident(schema) .. ".revision", algorithm)[1]
end

-- The columns M.applied reads that can be NULL (they become nil in its rows).
local NULLABLE = { "applied_by", "partial_direction", "steps_total", "failed_step", "error", "steps_done" }

--- Revisions recorded in the state table: applied (id -> row) and partial (id -> row), the
--- second being non-transactional revisions that stopped half way. format is M.inspect's.
function M.applied(conn, schema, format)
  local extra = (format or M.format) >= 2
      and "state, partial_direction, steps_total, failed_step, error, "
        .. "CASE WHEN state = 'partial' THEN (SELECT pg_catalog.count(*) FROM " .. sql.ident(schema) .. ".step s "
        .. "WHERE s.revision = r.revision AND s.direction = r.partial_direction)::integer END AS steps_done"
    or "'applied' AS state"
  local rows = conn:query("SELECT revision, message, checksum, checksum_algorithm, "
    .. "pg_catalog.to_char(applied_at, 'YYYY-MM-DD HH24:MI:SSOF') AS applied_at, applied_by, duration_ms, "
    .. extra .. " FROM " .. sql.ident(schema) .. ".revision r")
  local applied, partial = {}, {}
  for _, row in ipairs(rows) do
    for _, k in ipairs(NULLABLE) do
      if row[k] == core.null then
        row[k] = nil
      end
    end
    if row.state == "partial" then
      partial[row.revision] = row
    else
      applied[row.revision] = row
    end
  end
  return applied, partial
end

--- The stored source text of applied revisions (only asked for when a checksum differs).
---@param ids string[]
---@return table id -> {source, checksum, applied_at}
function M.sources(conn, schema, ids)
  local out = {}
  local rows = conn:query("SELECT revision, source, checksum, "
    .. "pg_catalog.to_char(applied_at, 'YYYY-MM-DD HH24:MI:SSOF') AS applied_at FROM "
    .. sql.ident(schema) .. ".revision WHERE revision = ANY($1::text[])", "{" .. table.concat(ids, ",") .. "}")
  for _, row in ipairs(rows) do
    out[row.revision] = row
  end
  return out
end

--- Who runs this tide: fixed per process.
local whoami
function M.who()
  if not whoami then
    whoami = { os_user = core.username(), host = core.hostname(), version = core.version }
  end
  return whoami
end

local function history_columns()
  return "run_id, revision, direction, outcome, started_at, duration_ms, checksum, error, sqlstate, "
    .. "os_user, host, tide_version, backup, note, backup_sha256, backup_size"
end

-- $1 run_id $2 revision $3 direction $4 outcome $5 duration_ms $6 checksum $7 error $8 sqlstate
-- $9 os_user $10 host $11 tide_version $12 backup $13 note $14 backup_sha256 $15 backup_size
local history_values = "$1, $2, $3, $4, pg_catalog.clock_timestamp() - $5 * interval '1 millisecond', "
  .. "$5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::bigint"

-- The 15 history parameters, plus any that follow them in the statement.
local function history_args(run, rev_id, direction, outcome, ms, checksum, err, ...)
  local w = M.who()
  return table.pack(run.id, rev_id, direction, outcome, ms, checksum, err and err.text or nil,
    err and err.sqlstate or nil, w.os_user, w.host, w.version, run.backup, run.note, run.backup_sha256,
    run.backup_size, ...)
end

-- The bookkeeping statements run once per revision: prepared, the server parses and plans each
-- once per run instead of once per revision (measured: upgrade of 1000 revisions 1.15x -> 1.06x
-- the psql floor, tools/bench/results/experiment-2026-11-24-record.md).
local statement_names, statement_count = {}, 0

-- With `after` (the runner's COMMIT) the statement and `after` share one round trip: an
-- SQL-level EXECUTE of the prepared statement, its parameters written as SQL literals
-- (sql.literal: the shortest float that reads back the same, as tide.Conn sends one), then
-- `after`, in one simple query. An error in the first stops the second, as it would have.
local function query(conn, statement, args, after)
  local name = statement_names[statement]
  if not name then
    statement_count = statement_count + 1
    name = "tide_record_" .. statement_count
    statement_names[statement] = name
  end
  if not after then
    return conn:prepared(name, statement, table.unpack(args, 1, args.n))
  end
  local server_name = conn:prepare(name, statement)
  local values = {}
  for i = 1, args.n do
    local v = args[i]
    values[i] = v == core.null and "NULL" or sql.literal(v)
  end
  conn:exec("EXECUTE " .. server_name .. "(" .. table.concat(values, ", ") .. ");\n" .. after)
end

--- Records rev as applied: the state row and its history row in one statement. A partial row
--- left by an interrupted run of the same revision becomes applied, and its steps go.
--- opts: direction (history's word, default "upgrade"), after (SQL sent in the same round trip).
function M.record_upgrade(conn, schema, run, rev, ms, opts)
  opts = opts or {}
  local s = sql.ident(schema)
  query(conn, "WITH state AS (INSERT INTO " .. s .. ".revision "
    .. "(revision, message, checksum, checksum_algorithm, applied_by, duration_ms, source) "
    .. "VALUES ($2, $16, $6, $17, $9 || '@' || $10, $5, $18) ON CONFLICT (revision) DO UPDATE SET "
    .. "message = EXCLUDED.message, checksum = EXCLUDED.checksum, checksum_algorithm = EXCLUDED.checksum_algorithm, "
    .. "applied_at = EXCLUDED.applied_at, applied_by = EXCLUDED.applied_by, duration_ms = EXCLUDED.duration_ms, "
    .. "source = EXCLUDED.source, state = 'applied', partial_direction = NULL, steps_total = NULL, "
    .. "failed_step = NULL, error = NULL), "
    .. "steps AS (DELETE FROM " .. s .. ".step WHERE revision = $2) "
    .. "INSERT INTO " .. s .. ".history (" .. history_columns() .. ") VALUES (" .. history_values .. ")",
    history_args(run, rev.revision, opts.direction or "upgrade", "applied", ms, rev.checksum, nil,
      rev.message, revisions.checksum_algorithm, rev.source), opts.after)
end

--- Records rev as reverted: deletes the state row (and any steps) and writes the history row in
--- one statement. opts: direction (default "downgrade"), outcome (default "reverted"; earlier
--- tides wrote "applied"), after (SQL sent in the same round trip).
function M.record_downgrade(conn, schema, run, rev, ms, opts)
  opts = opts or {}
  local s = sql.ident(schema)
  query(conn, "WITH state AS (DELETE FROM " .. s .. ".revision WHERE revision = $2), "
    .. "steps AS (DELETE FROM " .. s .. ".step WHERE revision = $2) "
    .. "INSERT INTO " .. s .. ".history (" .. history_columns() .. ") VALUES (" .. history_values .. ")",
    history_args(run, rev.revision, opts.direction or "downgrade", opts.outcome or "reverted", ms, rev.checksum, nil),
    opts.after)
end

--- Marks a non-transactional revision as started (state 'partial') before its first statement,
--- so a kill at any point leaves a row that says so. Autocommit: it must survive a failure.
function M.begin_partial(conn, schema, rev, direction, steps_total)
  local s = sql.ident(schema)
  local w = M.who()
  if direction == "upgrade" then
    conn:query("INSERT INTO " .. s .. ".revision (revision, message, checksum, checksum_algorithm, applied_by, "
      .. "duration_ms, source, state, partial_direction, steps_total) VALUES ($1, $2, $3, $4, $5, 0, $6, 'partial', "
      .. "'upgrade', $7) ON CONFLICT (revision) DO UPDATE SET state = 'partial', partial_direction = 'upgrade', "
      .. "steps_total = EXCLUDED.steps_total, checksum = EXCLUDED.checksum, source = EXCLUDED.source, "
      .. "failed_step = NULL, error = NULL", rev.revision, rev.message, rev.checksum, revisions.checksum_algorithm,
      w.os_user .. "@" .. w.host, rev.source, steps_total)
  else
    conn:query("UPDATE " .. s .. ".revision SET state = 'partial', partial_direction = 'downgrade', "
      .. "steps_total = $2, failed_step = NULL, error = NULL WHERE revision = $1", rev.revision, steps_total)
  end
end

--- Records where a partial revision stopped (the step that failed and the error).
function M.fail_partial(conn, schema, rev, step, err_text)
  conn:query("UPDATE " .. sql.ident(schema) .. ".revision SET failed_step = $2, error = $3 "
    .. "WHERE revision = $1 AND state = 'partial'", rev.revision, step, err_text)
end

--- Finished steps of a partial revision: name -> ordinal.
function M.steps(conn, schema, revision, direction)
  local done = {}
  for _, row in ipairs(conn:query("SELECT name, ordinal FROM " .. sql.ident(schema) .. ".step "
    .. "WHERE revision = $1 AND direction = $2", revision, direction)) do
    done[row.name] = row.ordinal
  end
  return done
end

--- Records one finished step (autocommit, right after the step's statements).
function M.record_step(conn, schema, run, revision, direction, name, ordinal)
  conn:query("INSERT INTO " .. sql.ident(schema) .. ".step (revision, direction, name, ordinal, run_id) "
    .. "VALUES ($1, $2, $3, $4, $5)", revision, direction, name, ordinal, run.id)
end

--- `tide accept`: the file's current checksum and source become the applied ones.
function M.record_accept(conn, schema, run, rev, old_checksum)
  local s = sql.ident(schema)
  query(conn, "WITH state AS (UPDATE " .. s .. ".revision SET checksum = $6, checksum_algorithm = $16, "
    .. "source = $17, message = $18 WHERE revision = $2) "
    .. "INSERT INTO " .. s .. ".history (" .. history_columns() .. ") VALUES (" .. history_values .. ")",
    history_args(run, rev.revision, "accept", "applied", 0, rev.checksum,
      { text = "previous checksum " .. tostring(old_checksum) }, revisions.checksum_algorithm, rev.source, rev.message))
end

--- `tide resolve`: the operator settles a partial revision as applied or reverted.
function M.record_resolve(conn, schema, run, rev, outcome)
  local s = sql.ident(schema)
  if outcome == "reverted" then
    M.record_downgrade(conn, schema, run, rev, 0, { direction = "resolve", outcome = "reverted" })
    return
  end
  query(conn, "WITH state AS (UPDATE " .. s .. ".revision SET state = 'applied', partial_direction = NULL, "
    .. "steps_total = NULL, failed_step = NULL, error = NULL, checksum = $6, checksum_algorithm = $16, "
    .. "source = $17 WHERE revision = $2), "
    .. "steps AS (DELETE FROM " .. s .. ".step WHERE revision = $2) "
    .. "INSERT INTO " .. s .. ".history (" .. history_columns() .. ") VALUES (" .. history_values .. ")",
    history_args(run, rev.revision, "resolve", "applied", 0, rev.checksum, nil, revisions.checksum_algorithm,
      rev.source))
end

--- Records a failed attempt (outside the rolled-back transaction).
function M.record_failure(conn, schema, run, rev, direction, ms, err)
  local s = sql.ident(schema)
  query(conn, "INSERT INTO " .. s .. ".history (" .. history_columns() .. ") VALUES (" .. history_values .. ")",
    history_args(run, rev.revision, direction, "failed", ms, rev.checksum, err))
end

--- What the history says of backup `id` (the last path segment of a backup reference): the
--- newest {backup, sha256, size, run_id} recorded with a checksum, or nil when the tracking
--- tables are missing, older than format 3, or hold no such record. A lock-free read.
function M.backup_record(conn, schema, id)
  local present, format = M.inspect(conn, schema)
  if not present or format < 3 then
    return nil
  end
  local row = conn:query("SELECT backup, backup_sha256 AS sha256, backup_size AS size, run_id FROM "
    .. sql.ident(schema) .. ".history WHERE backup_sha256 IS NOT NULL "
    .. "AND pg_catalog.strpos(backup, '/' || $1 || '/') > 0 ORDER BY id DESC LIMIT 1", id)[1]
  return row
end

--- The applied history, newest first. A downgrade's outcome reads `reverted`, also in rows
--- written before downgrades were recorded that way (they say `applied`).
function M.history(conn, schema, limit)
  return (conn:query("SELECT id, run_id, revision, direction, "
    .. "CASE WHEN direction = 'downgrade' AND outcome = 'applied' THEN 'reverted' ELSE outcome END AS outcome, "
    .. "pg_catalog.to_char(started_at, 'YYYY-MM-DD HH24:MI:SS.MSOF') AS started_at, "
    .. "pg_catalog.to_char(finished_at, 'YYYY-MM-DD HH24:MI:SS.MSOF') AS finished_at, "
    .. "duration_ms, error, sqlstate, db_user, os_user, host, tide_version, backup, note FROM "
    .. sql.ident(schema) .. ".history ORDER BY id DESC LIMIT $1", limit or 50))
end

return M
