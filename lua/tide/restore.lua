-- tide.restore: `tide restore ID --to URL`, a backup tide.backup took put back into a database:
-- the archive checked against the record the project's database keeps of it in its history
-- (else against its manifest only), downloaded, checked again (size, SHA-256), and restored by
-- pg_restore in one transaction. A database that is not empty is refused unless --clean.
local backup = require "tide.backup"
local config = require "tide.config"
local core = require "tide.core"
local errors = require "tide.errors"
local json = require "tide.json"
local log = require "tide.log"
local session = require "tide.session"

local M = {}

local human, reporter, fail, raise_interrupted = backup.human, backup.reporter, backup.fail, backup.raise_interrupted

-- Objects in the target database that a restore would collide with.
local function user_objects(conn)
  return conn:query([[
SELECT (SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
           AND n.nspname NOT LIKE 'pg\_temp\_%')::int AS relations,
       (SELECT count(*) FROM pg_catalog.pg_namespace n
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND n.nspname NOT LIKE 'pg\_%')::int
         AS schemas]])[1]
end

local function confirm(question)
  io.stderr:write(question, " [y/N] ")
  io.stderr:flush()
  local answer = io.stdin:read("l")
  return answer and answer:match("^%s*[yY]") ~= nil
end

-- What the project's database (the one tide migrates, normally the backup's source) recorded of
-- backup id when a migration took it: {sha256, size, run_id} | nil, why not.
local function history_record(cfg, id)
  local where = cfg.url ~= "" and require("tide.config").redact(cfg.url) or "the database named by PG* variables"
  local ok, conn = pcall(session.connect, cfg, { setup = false, application_name = "tide-restore" })
  if not ok then
    return nil, string.format("cannot reach %s to check backup %s against its history (%s)", where, id,
      errors.is_error(conn) and (conn.cause or conn.message) or tostring(conn))
  end
  local read, row = pcall(require("tide.track").backup_record, conn, cfg.schema, id)
  conn:close()
  if not read then
    return nil, string.format("cannot read the history of %s to check backup %s (%s)", where, id,
      errors.is_error(row) and row.message or tostring(row))
  end
  if not row then
    return nil, string.format("%s has no record of backup %s (only the backups its migrations take are "
      .. "recorded, with their checksum since tide's tracking format 3)", where, id)
  end
  row.where = where
  return row
end

-- Connects to the restore target. When its database does not exist (asked of the server's
-- maintenance database, not read from an error message), creates it with --create, else says
-- how. Returns the connection and whether the database was created.
local function connect_target(target, opts, ask)
  local to = { url = target, url_source = "--to" }
  local function connect(params)
    return session.connect(to, { setup = false, application_name = "tide-restore", params = params })
  end
  local ok, conn = pcall(connect)
  if ok then
    return conn, false
  end
  local err = conn
  local maint
  for _, name in ipairs { "postgres", "template1" } do
    local reached, c = pcall(connect, { dbname = name })
    if reached then
      maint = c
      break
    end
  end
  local missing = maint and err.dbname and #maint:query("SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
    err.dbname) == 0
  if not missing then
    if maint then
      maint:close()
    end
    error(err, 0) -- cannot connect to URL (from --to): why
  end
  if not opts.create then
    maint:close()
    errors.raise("connect", string.format("the database %q does not exist on the server of %s: create it first "
      .. "(createdb, or CREATE DATABASE), or pass --create to let restore create it", err.dbname,
      config.redact(target)))
  end
  ask(string.format("a new database %q", err.dbname))
  -- template0: pg_dump's archive assumes a database with nothing but what it restores
  local created, why = pcall(maint.exec, maint, "CREATE DATABASE " .. require("tide.sql").ident(err.dbname)
    .. " TEMPLATE template0")
  maint:close()
  if not created then
    errors.raise("connect", string.format("cannot create the database %q: %s", err.dbname,
      errors.is_error(why) and why.message or tostring(why)))
  end
  log.info("restore: created the database %q", err.dbname)
  return connect(), true
end

--- Restores backup id into the database at opts.to.
---@param cfg table the project's configuration (its database keeps the backups' records)
---@param flags table {["backup-to"]}
---@param opts table {to, clean, yes, create}
function M.restore(cfg, flags, id, opts)
  local s = backup.settings(cfg, flags)
  if not s then
    errors.raise("usage", "where are the backups? set `backup = { to = ... }` in tide.lua or pass --backup-to URL")
  end
  if not id:match("^[%w_.-]+$") then
    errors.raise("usage", "a backup id looks like 20261124T095500Z-app-1a2b3c (see `tide backups`)")
  end
  local target = opts.to
  local redact = require("tide.config").redact
  local dest <close> = backup.destination(s, reporter().update)
  local ok, text = pcall(dest.get_string, dest, id .. "/manifest.json")
  if not ok then
    errors.raise("backup", string.format("no complete backup %s at %s: %s", id, dest:display(),
      errors.is_error(text) and text.message or tostring(text)))
  end
  local m = json.decode(text)
  if type(m) ~= "table" or m.id ~= id or type(m.sha256) ~= "string" or not math.tointeger(m.size) then
    errors.raise("backup", string.format("%s%s/manifest.json is not a valid manifest", dest:display(), id))
  end

  -- The manifest sits beside the archive: whoever can replace one can replace both. The
  -- database's own history, when it holds the backup's record, is what the archive must match.
  local record, why_not = history_record(cfg, id)
  if record and (record.sha256 ~= m.sha256 or record.size ~= m.size) then
    errors.raise("backup", string.format("backup %s at %s does not match the record in the history of %s: the "
      .. "history says sha256 %s and %d bytes, the manifest %s and %d bytes; the archive there is not the one tide "
      .. "took, refusing to restore it", id, dest:display(), record.where, record.sha256, record.size, m.sha256,
      m.size))
  elseif record then
    log.info("restore: backup %s matches its record in the history of %s (run %s)", id, record.where,
      tostring(record.run_id))
  else
    log.warn("restore: %s: the archive is checked against its manifest only", why_not)
  end

  local function ask(what)
    if opts.yes then
      return
    end
    if not (core.isatty(0) and core.isatty(2)) then
      errors.raise("usage", "restore replaces data: pass --yes to confirm when not on a terminal")
    end
    if not confirm(string.format("Restore backup %s (database %s, %s) into %s (%s)?", id, tostring(m.database),
      human(m.size), redact(target), what)) then
      errors.raise("usage", "restore cancelled: nothing was changed")
    end
  end
  local conn, created = connect_target(target, opts, ask)
  if not created then
    local objects = user_objects(conn)
    if (objects.relations > 0 or objects.schemas > 0) and not opts.clean then
      conn:close()
      local count = require("tide.text").count
      errors.raise("usage", string.format("the target database is not empty (%s, %s): restore into an empty "
        .. "database, or pass --clean to drop and replace the backup's objects", count(objects.relations, "relation"),
        count(objects.schemas, "schema")))
    end
    local ok_ask, why = pcall(ask, "an existing database")
    if not ok_ask then
      conn:close()
      error(why, 0)
    end
  end
  conn:close()

  -- from here on SIGINT/SIGTERM stop the download or pg_restore and remove the spool
  local _ <close> = core.catch_signals()
  for _, name in ipairs(core.sweep_spools(s.tmp_dir)) do
    log.info("restore: removed %s/%s, a spool left by a tide that was stopped before it finished", s.tmp_dir, name)
  end
  local _ <close>, path = core.spool(s.tmp_dir, "tide-restore") -- the spool goes when this ends
  local _, pg_restore = backup.tools(s)
  local t0 = core.now()
  -- never more than the record says (or the manifest, when there is no record)
  local got_ok, got = pcall(dest.get_file, dest, id .. "/" .. (m.archive or "archive.dump"), path, m.size)
  if not got_ok and core.interrupted() then
    raise_interrupted("download", "nothing was restored")
  elseif not got_ok then
    fail("download", got)
  end
  if got.size ~= m.size or got.sha256 ~= m.sha256 then
    fail("checking the download", string.format("the archive has %d bytes and sha256 %s; the %s says %d and %s",
      got.size, got.sha256, record and "database's history" or "manifest", m.size, m.sha256))
  end
  log.info("restore: downloaded and checked %s in %.1f s", human(got.size), core.now() - t0)
  t0 = core.now()
  local r_ok, r_err = pcall(core.restore_archive, { pg_restore = pg_restore, url = target, path = path,
    clean = opts.clean or false })
  if not r_ok then
    if core.interrupted() then
      raise_interrupted("pg_restore", "nothing was restored (pg_restore's transaction was rolled back)")
    end
    errors.raise("backup", "restore failed (rolled back: nothing was restored): "
      .. (errors.is_error(r_err) and r_err.message or tostring(r_err)))
  end
  log.info("restore: pg_restore finished in %.1f s", core.now() - t0)
  return { id = id, database = m.database, size = m.size, sha256 = m.sha256, revisions = m.revisions,
    checked_against = record and record.where or nil, created = created or nil }
end

return M
