-- tide.track: version tracking in the `tide` schema (the name is configurable).
--
--   <schema>.revision  current state: one row per applied revision, with the checksum of the
--                      file that ran (and its algorithm version) and the applied source text.
--   <schema>.history   append-only log of every upgrade, downgrade, stamp and failure: who,
--                      where, when, how long, the outcome and the error. A trigger refuses
--                      UPDATE and DELETE, so the log cannot be rewritten by accident.
--
-- Every statement here is one round trip with $n parameters; the runner sends the state and
-- history rows of a revision inside the revision's own transaction.
local core = require "tide.core"
local revisions = require "tide.revisions"
local sql = require "tide.sql"

local M = {}

M.format = 1 -- version of the tables' layout, stored in the schema's comment

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
COMMENT ON SCHEMA {schema} IS 'tide migration state (format {format})';
]]):gsub("{schema}", (s:gsub("%%", "%%%%"))):gsub("{format}", M.format)
end

--- Does the tracking schema exist yet? (A read that takes no lock.)
function M.exists(conn, schema)
  local rows = conn:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present", sql.ident(schema) .. ".revision")
  return rows[1].present
end

--- Creates the tracking tables in a short transaction of their own, so that even a failure of
--- the very first revision finds a history table to be written to.
function M.ensure(conn, schema)
  conn:exec("BEGIN;\nSET LOCAL client_min_messages = warning;\n" .. ddl(schema) .. "COMMIT;")
end

--- Applied revisions: id -> row.
function M.applied(conn, schema)
  local rows = conn:query("SELECT revision, message, checksum, checksum_algorithm, "
    .. "pg_catalog.to_char(applied_at, 'YYYY-MM-DD HH24:MI:SSOF') AS applied_at, applied_by, duration_ms FROM "
    .. sql.ident(schema) .. ".revision ORDER BY applied_at, revision")
  local applied = {}
  for _, row in ipairs(rows) do
    applied[row.revision] = row
  end
  return applied, rows
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
    .. "os_user, host, tide_version, backup, note"
end

-- $1 run_id $2 revision $3 direction $4 outcome $5 duration_ms $6 checksum $7 error $8 sqlstate
-- $9 os_user $10 host $11 tide_version $12 backup $13 note
local history_values = "$1, $2, $3, $4, pg_catalog.clock_timestamp() - $5 * interval '1 millisecond', "
  .. "$5, $6, $7, $8, $9, $10, $11, $12, $13"

-- The 13 history parameters, plus any that follow them in the statement.
local function history_args(run, rev_id, direction, outcome, ms, checksum, err, ...)
  local w = M.who()
  return table.pack(run.id, rev_id, direction, outcome, ms, checksum, err and err.text or nil,
    err and err.sqlstate or nil, w.os_user, w.host, w.version, run.backup, run.note, ...)
end

local function query(conn, statement, args)
  return conn:query(statement, table.unpack(args, 1, args.n))
end

--- Records rev as applied: the state row and its history row in one statement.
function M.record_upgrade(conn, schema, run, rev, ms, direction)
  local s = sql.ident(schema)
  query(conn, "WITH state AS (INSERT INTO " .. s .. ".revision "
    .. "(revision, message, checksum, checksum_algorithm, applied_by, duration_ms, source) "
    .. "VALUES ($2, $14, $6, $15, $9 || '@' || $10, $5, $16)) "
    .. "INSERT INTO " .. s .. ".history (" .. history_columns() .. ") VALUES (" .. history_values .. ")",
    history_args(run, rev.revision, direction or "upgrade", "applied", ms, rev.checksum, nil,
      rev.message, revisions.checksum_algorithm, rev.source))
end

--- Records rev as reverted: deletes the state row and writes the history row in one statement.
function M.record_downgrade(conn, schema, run, rev, ms, direction)
  local s = sql.ident(schema)
  query(conn, "WITH state AS (DELETE FROM " .. s .. ".revision WHERE revision = $2) "
    .. "INSERT INTO " .. s .. ".history (" .. history_columns() .. ") VALUES (" .. history_values .. ")",
    history_args(run, rev.revision, direction or "downgrade", "applied", ms, rev.checksum, nil))
end

--- Records a failed attempt (outside the rolled-back transaction).
function M.record_failure(conn, schema, run, rev, direction, ms, err)
  local s = sql.ident(schema)
  query(conn, "INSERT INTO " .. s .. ".history (" .. history_columns() .. ") VALUES (" .. history_values .. ")",
    history_args(run, rev.revision, direction, "failed", ms, rev.checksum, err))
end

--- The applied history, newest first.
function M.history(conn, schema, limit)
  return (conn:query("SELECT id, run_id, revision, direction, outcome, "
    .. "pg_catalog.to_char(started_at, 'YYYY-MM-DD HH24:MI:SS.MSOF') AS started_at, "
    .. "pg_catalog.to_char(finished_at, 'YYYY-MM-DD HH24:MI:SS.MSOF') AS finished_at, "
    .. "duration_ms, error, sqlstate, db_user, os_user, host, tide_version, backup, note FROM "
    .. sql.ident(schema) .. ".history ORDER BY id DESC LIMIT $1", limit or 50))
end

return M
