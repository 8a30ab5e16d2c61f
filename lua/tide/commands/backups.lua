-- tide.commands.backups: the backup commands (see tide.commands); the mechanism is tide.backup
-- and tide.restore.
--   backup    a verified backup now
--   backups   the complete backups at the destination
--   restore   one of them into a database
local backup = require "tide.backup"
local errors = require "tide.errors"
local text = require "tide.text"

local out, human = text.out, backup.human

local BACKUP_TO = backup.migrate_flags[1] -- --backup-to URL

local M = {}

M.backup = {
  usage = "backup",
  summary = "take a verified backup now (pg_dump, upload, manifest)",
  flags = { BACKUP_TO },
  run = function(ctx, _, flags)
    return backup.take(ctx.cfg, flags)
  end,
  print = function(r)
    out("backup %s: %s, sha256 %s", r.id, human(r.size), r.sha256)
    out("  %s", r.reference)
    for _, id in ipairs(r.pruned or {}) do
      out("  pruned %s", id)
    end
  end,
}

M.backups = {
  usage = "backups",
  summary = "list complete backups (those with a manifest), newest last",
  flags = { BACKUP_TO },
  run = function(ctx, _, flags)
    return backup.catalogue(ctx.cfg, flags)
  end,
  print = function(r)
    if #r.backups == 0 then
      out("no complete backups at %s", r.destination)
      return
    end
    out("%-40s %-20s %10s  %s", "ID", "TIME (UTC)", "SIZE", "REVISIONS")
    for _, b in ipairs(r.backups) do
      local revs = type(b.revisions) == "table" and table.concat(b.revisions, ",") or ""
      out("%-40s %-20s %10s  %s%s", b.id, tostring(b.created_at), human(b.size or 0), revs ~= "" and revs or "(none)",
        b.archive_present and "" or "  ARCHIVE MISSING")
    end
  end,
}

M.restore = {
  usage = "restore ID --to URL",
  summary = "restore a backup into a database (an empty one unless --clean)",
  details = "Checks the backup against the record the project's database (--url, DATABASE_URL, tide.lua) "
    .. "keeps of it in its history, downloads the archive, checks size and SHA-256, and runs "
    .. "pg_restore --single-transaction --exit-on-error. Answering no to the question exits 2.",
  flags = {
    BACKUP_TO,
    { "to", "URL", "the database to restore into (required)" },
    { "create", nil, "create the database named by --to when it does not exist" },
    { "clean", nil, "drop the backup's objects in the target before restoring them" },
    { "yes", nil, "do not ask for confirmation" },
  },
  min_args = 1,
  max_args = 1,
  run = function(ctx, args, flags)
    if not flags.to then
      errors.raise("usage", "usage: tide restore ID --to URL")
    end
    return require("tide.restore").restore(ctx.cfg, flags, args[1], { to = flags.to, clean = flags.clean,
      yes = flags.yes, create = flags.create })
  end,
  print = function(r)
    out("restored %s (database %s, %s)", r.id, tostring(r.database), human(r.size))
  end,
}

return M
