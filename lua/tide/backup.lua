-- tide.backup: the verified backup taken before a migration changes anything, and the listing
-- of a destination's backups (restore is tide.restore; the commands, tide.commands.backups).
--
-- One backup, in order (any failure stops here: non-zero exit, one line naming the step, and
-- the run applies nothing):
--   1. check the destination answers and accepts our credentials (a HEAD of the new object),
--      and remove what killed tides left there and in tmp_dir (see sweep);
--   2. pg_dump -Fc into a spool file (core.dump: version and free-space checks, SHA-256, MD5
--      and size), then its full-read verification (pg_restore reads it all back);
--   3. upload the archive (core.destination: file://, http(s)://, s3://) while that read runs:
--      the object becomes visible (an S3 multipart upload is completed) only once the read
--      succeeded, and a failed read abandons the upload; then HEAD it and compare size and ETag;
--   4. write <id>/manifest.json last. Only a backup with a manifest exists: a failed one has its
--      archive removed and never gets a manifest.
-- Objects: <destination>/<id>/archive.dump and <destination>/<id>/manifest.json, where
-- id = <UTC time>-<database>-<random>, so names sort by time. The runs the backup protects
-- record its reference, SHA-256 and size in their history rows: `tide restore` checks an
-- archive against that record, not only against the manifest beside it.
--
-- SIGINT and SIGTERM during a backup or restore stop the children, remove the spools and what
-- was uploaded, and end tide with 128 + the signal's number (kinds sigint and sigterm).
local config = require "tide.config"
local core = require "tide.core"
local errors = require "tide.errors"
local json = require "tide.json"
local log = require "tide.log"
local session = require "tide.session"

local M = {}

-- `backup = {...}` in tide.lua: key -> type. Environment variables fill what the file leaves out.
M.keys = {
  to = "string", -- file:///dir/, https://host/path/, s3://bucket/prefix/
  keep = "number", -- keep this many complete backups (older ones are pruned after a new one)
  tmp_dir = "string", -- where the archive is written before the upload (default $TMPDIR or /tmp)
  pg_bindir = "string", -- where pg_dump and pg_restore are (default: newest /usr/lib/postgresql/*/bin)
  lock_wait_timeout = "duration", -- pg_dump --lock-wait-timeout (default 30s; 0: wait forever)
  space_check = "boolean", -- refuse to start when tmp_dir has less free space than the database's size
  region = "string", -- else AWS_REGION, AWS_DEFAULT_REGION, us-east-1
  endpoint = "string", -- else AWS_ENDPOINT_URL (path-style addressing then)
  access_key_id = "string", -- else AWS_ACCESS_KEY_ID
  secret_access_key = "string", -- else AWS_SECRET_ACCESS_KEY
  session_token = "string", -- else AWS_SESSION_TOKEN
  headers = "table", -- http(s): extra headers, {Name = "value"}; "${VAR}" is replaced from the environment
  bearer_token_env = "string", -- http(s): Authorization: Bearer $VAR
  ca_file = "string", -- a CA bundle for TLS (verification is always on)
  deadline = "duration", -- for one upload or download, retries included (default 900s)
  max_attempts = "number", -- per request (default 8)
  backoff_base = "duration",
  backoff_cap = "duration",
  low_speed_limit = "number", -- bytes/s under which a transfer counts as stalled (default 1024)
  low_speed_time = "duration", -- for this long (default 30s; whole seconds, rounded up)
  connect_timeout = "duration", -- whole seconds, rounded up (default 10s)
  multipart_threshold = "number", -- bytes; above it S3 uploads are multipart (default 64 MiB)
  part_size = "number", -- bytes per part (default 16 MiB, at least 5 MiB)
  allow_plaintext = "boolean", -- let credentials travel over http:// to a host that is not loopback
}

local MiB = 1024 * 1024

-- Whole numbers and their range: a value outside would be silently replaced by a default in C,
-- or overflow there.
local RANGES = {
  keep = { 1, 1000000, "backups" },
  max_attempts = { 1, 100, "attempts" },
  low_speed_limit = { 1, 1024 * MiB, "bytes per second" },
  part_size = { 5 * MiB, 5 * 1024 * MiB, "bytes (S3 parts are 5 MiB to 5 GiB)" },
  multipart_threshold = { 5 * MiB, 5 * 1024 * 1024 * MiB, "bytes (5 MiB to 5 TiB)" },
}

--- Checks the `backup` table of tide.lua; raises a config error naming the bad key.
function M.validate(tbl, where)
  where = where or "tide.lua"
  config.check_keys(tbl, M.keys, where, "backup")
  for k, v in pairs(tbl) do
    if M.keys[k] == "duration" then
      config.check_duration(v, string.format("%s: `backup.%s`", where, k), { positive = k ~= "lock_wait_timeout" })
    end
  end
  for k, r in pairs(RANGES) do
    local v = tbl[k]
    if v ~= nil and (not math.tointeger(v) or v < r[1] or v > r[2]) then
      errors.raise("config", string.format("%s: `backup.%s` must be a whole number from %d to %d %s, got %s", where,
        k, r[1], r[2], r[3], tostring(v)))
    end
  end
  return tbl
end

local function env(name)
  local v = os.getenv(name)
  if v and v ~= "" then
    return v
  end
end

--- The backup settings of a run: tide.lua's `backup` table, then --backup-to, then the
--- environment. Returns nil when no destination is configured.
function M.settings(cfg, flags)
  local b = M.validate(cfg and cfg.backup or {}, cfg and cfg.file)
  local s = {}
  for k, v in pairs(b) do
    s[k] = v
    if M.keys[k] == "duration" then -- validated above
      local ms = config.duration(v)
      if k == "lock_wait_timeout" then
        s[k] = config.pg_duration(ms) -- pg_dump hands it to the server's lock_timeout
      elseif k == "low_speed_time" or k == "connect_timeout" then
        s[k] = math.ceil(ms / 1000) -- libcurl counts these in whole seconds
      else
        s[k] = ms / 1000
      end
    end
  end
  if flags and flags["backup-to"] then
    s.to = flags["backup-to"]
  end
  if not s.to then
    return nil
  end
  s.region = s.region or env("AWS_REGION") or env("AWS_DEFAULT_REGION") or "us-east-1"
  s.endpoint = s.endpoint or env("AWS_ENDPOINT_URL")
  s.access_key_id = s.access_key_id or env("AWS_ACCESS_KEY_ID")
  s.secret_access_key = s.secret_access_key or env("AWS_SECRET_ACCESS_KEY")
  s.session_token = s.session_token or env("AWS_SESSION_TOKEN")
  s.tmp_dir = s.tmp_dir or env("TMPDIR") or "/tmp"
  return s
end

--- pg_dump and pg_restore: backup.pg_bindir, else TIDE_PG_BINDIR, else the newest
--- /usr/lib/postgresql/N/bin (Debian's /usr/bin wrappers pick a version by cluster), else PATH.
function M.tools(s)
  local dir = s.pg_bindir or env("TIDE_PG_BINDIR")
  if not dir then
    local best
    local ok, names = pcall(core.listdir, "/usr/lib/postgresql")
    for _, n in ipairs(ok and names or {}) do
      if tonumber(n) and core.isdir("/usr/lib/postgresql/" .. n .. "/bin")
        and (not best or tonumber(n) > tonumber(best)) then
        best = n
      end
    end
    dir = best and ("/usr/lib/postgresql/" .. best .. "/bin")
  end
  if dir then
    return dir .. "/pg_dump", dir .. "/pg_restore"
  end
  return "pg_dump", "pg_restore"
end

local function expand(value)
  return (value:gsub("%${([%w_]+)}", function(name)
    local v = os.getenv(name)
    if not v then
      errors.raise("config", string.format("backup.headers: environment variable %s is not set", name))
    end
    return v
  end))
end

-- Whether url's host is this machine's loopback (what crosses no network).
local function loopback(url)
  local host = (url:match("^%a[%w+.-]*://([^/?#]*)") or ""):gsub("^.*@", ""):lower()
  host = host:match("^%[([^%]]*)%]") or host:gsub(":%d*$", "")
  return host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- Credentials over plain http travel in clear: refused towards any host but loopback unless
-- the project says allow_plaintext = true.
local function check_plaintext(s, headers)
  local url, what
  if s.to:match("^[Hh][Tt][Tt][Pp]://") and #headers > 0 then
    url, what = s.to, "the configured headers (bearer token)"
  elseif s.to:match("^s3://") and s.endpoint and s.endpoint:match("^[Hh][Tt][Tt][Pp]://") then
    url, what = s.endpoint, "the AWS credentials' signatures and the archive"
  end
  if url and not loopback(url) and not s.allow_plaintext then
    errors.raise("config", string.format("backup destination %s: %s would travel unencrypted over http://; use "
      .. "https://, or set backup.allow_plaintext = true", require("tide.config").redact(url), what))
  end
end

--- Opens the destination of settings s (a tide.Destination). progress: fn(stage, done, total).
function M.destination(s, progress)
  local headers = {}
  local names = {}
  for name, value in pairs(s.headers or {}) do
    if type(name) ~= "string" or type(value) ~= "string" then
      errors.raise("config", "backup.headers: names and values must be strings")
    end
    names[#names + 1] = name
  end
  table.sort(names)
  for _, name in ipairs(names) do
    local value = s.headers[name]
    -- one header each: a name that is an HTTP token, a value with no line break or NUL (which
    -- would end the header and start another of the value's making)
    if not name:match("^[%w!#$%%&'*+.^_`|~-]+$") then
      errors.raise("config", string.format("backup.headers: %q is not a header name", name))
    end
    value = expand(value)
    if value:find("[\r\n\0]") then
      errors.raise("config", string.format("backup.headers: the value of %s holds a line break or NUL byte", name))
    end
    headers[#headers + 1] = name .. ": " .. value
  end
  if s.bearer_token_env then
    local token = os.getenv(s.bearer_token_env)
    if not token or token == "" then
      errors.raise("config", string.format("backup.bearer_token_env: %s is not set", s.bearer_token_env))
    end
    if token:find("[\r\n\0]") then
      errors.raise("config", string.format("backup.bearer_token_env: %s holds a line break or NUL byte",
        s.bearer_token_env))
    end
    headers[#headers + 1] = "Authorization: Bearer " .. token
  end
  check_plaintext(s, headers)
  local ok, dest = pcall(core.destination, {
    url = s.to,
    access_key_id = s.access_key_id,
    secret_access_key = s.secret_access_key,
    session_token = s.session_token,
    region = s.region,
    endpoint = s.endpoint,
    headers = headers,
    ca_file = s.ca_file,
    deadline = s.deadline,
    max_attempts = s.max_attempts,
    backoff_base = s.backoff_base,
    backoff_cap = s.backoff_cap,
    low_speed_limit = s.low_speed_limit,
    low_speed_time = s.low_speed_time,
    connect_timeout = s.connect_timeout,
    multipart_threshold = s.multipart_threshold,
    part_size = s.part_size,
    debug = log.level >= 2, -- -v: HTTP headers on stderr, credentials hidden
    progress = progress,
  })
  if not ok then
    errors.raise("backup", "backup destination: " .. (errors.is_error(dest) and dest.message or tostring(dest)))
  end
  return dest
end

-- Progress ------------------------------------------------------------------------------------

local function human(n)
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i = 1
  while n >= 1024 and i < #units do
    n, i = n / 1024, i + 1
  end
  return i == 1 and string.format("%d B", n) or string.format("%.1f %s", n, units[i])
end
M.human = human

--- A progress reporter: a live line (bytes, rate, ETA) on a terminal, else one line per stage.
local function reporter()
  local tty = log.level >= 1 and core.isatty(2)
  local stage, t0, last = nil, core.now(), 0
  local r = {}
  function r.update(name, done, total)
    if name ~= stage then
      if stage and tty then
        io.stderr:write("\n")
      end
      stage, t0 = name, core.now()
    end
    if not tty or core.now() - last < 0.2 then
      return
    end
    last = core.now()
    local dt = math.max(core.now() - t0, 1e-3)
    local rate = done / dt
    local eta = (total and total > done and rate > 0) and string.format(", ETA %ds", math.ceil((total - done) / rate))
      or ""
    io.stderr:write(string.format("\rtide: backup: %-8s %10s  %10s/s%s\027[K", name, human(done), human(rate), eta))
    io.stderr:flush()
  end
  function r.done(name, bytes, seconds)
    if tty and stage then
      io.stderr:write("\r\027[K")
      stage = nil
    end
    log.info("backup: %s: %s in %.1f s", name, human(bytes), seconds)
  end
  return r
end
M.reporter = reporter

-- One backup ----------------------------------------------------------------------------------

local function random_hex(n)
  return (core.random_bytes(n):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

-- A caught SIGINT/SIGTERM becomes the error that ends tide with 128 + its number.
local function raise_interrupted(step, outcome)
  local sig = core.interrupted()
  errors.raise(sig == "SIGINT" and "sigint" or "sigterm", string.format("%s interrupted by %s%s: its children "
    .. "were stopped and its temporary files removed; %s", outcome and "restore" or "backup", sig,
    step and (" at " .. step) or "", outcome or "nothing was migrated"))
end

M.raise_interrupted = raise_interrupted

--- Raises the backup error of a failed step (or the interruption, when a signal stopped it).
local function fail(step, err)
  if core.interrupted() then
    raise_interrupted(step)
  end
  local why = errors.is_error(err) and err.message or tostring(err)
  errors.raise("backup", string.format("backup failed at %s: %s", step, why), { step = step })
end

M.fail = fail

-- Runs fn(); on error raises a backup error naming step.
local function step(name, fn, ...)
  local ok, a, b = pcall(fn, ...)
  if not ok then
    fail(name, a)
  end
  return a, b
end

local function applied_revisions(conn, cfg)
  local track = require "tide.track"
  if not track.exists(conn, cfg.schema) then
    return {}
  end
  local ids = {}
  for id in pairs((track.applied(conn, cfg.schema))) do
    ids[#ids + 1] = id
  end
  table.sort(ids)
  return ids
end

-- A backup id as M.run makes them: <UTC time>-<database>-<6 hex>.
local ID = "^%d%d%d%d%d%d%d%dT%d%d%d%d%d%d%d%d%dZ%-.+%-%x%x%x%x%x%x$"

-- How old a temporary object of tide's own must be before the next backup takes it for the
-- remains of a killed tide, where nothing better tells (an S3 multipart upload, an archive that
-- never got its manifest): a day, or twice the transfer deadline if that is longer.
local function stale_age(s)
  return math.max(24 * 3600, 2 * (tonumber(s.deadline) or 900))
end

--- Removes what killed tides left behind: spools in tmp_dir and temporary files at a file://
--- destination once their lock is free (their tide is gone), and, older than stale_age, S3
--- multipart uploads of archives and archives that never got a manifest. Only tide's own names;
--- best effort: a failure is a warning, never a failed backup.
function M.sweep(dest, s)
  local where = dest:display()
  local ok, removed = pcall(core.sweep_spools, s.tmp_dir)
  for _, name in ipairs(ok and removed or {}) do
    log.info("backup: removed %s/%s, a spool left by a tide that was stopped before it finished", s.tmp_dir, name)
  end
  ok, removed = pcall(dest.sweep, dest, stale_age(s))
  if not ok then
    log.warn("backup: could not look for temporary objects left at %s: %s", where,
      errors.is_error(removed) and removed.message or tostring(removed))
    return
  end
  for _, name in ipairs(removed) do
    log.info("backup: removed %s%s, left by a tide that was stopped before it finished", where, name)
  end
  local listed
  ok, listed = pcall(dest.list, dest)
  if not ok then
    return -- a destination that cannot be listed (http(s)) has no orphans to find
  end
  local manifests, now = {}, os.time()
  for _, o in ipairs(listed) do
    local id = o.name:match("^([^/]+)/manifest%.json$")
    if id then
      manifests[id] = true
    end
  end
  for _, o in ipairs(listed) do
    local id = o.name:match("^([^/]+)/archive%.dump$")
    if id and id:match(ID) and not manifests[id] and o.mtime and now - o.mtime > stale_age(s) then
      if pcall(dest.delete, dest, o.name) then
        log.info("backup: removed %s%s, an archive that never got its manifest (a failed backup's)", where, o.name)
      end
    end
  end
end

--- Takes one complete backup of the database conn is connected to.
---@param ctx table {cfg, flags, conn, target?, run?, revisions?}
---@return table {id, reference, archive, manifest, size, sha256}
function M.run(ctx)
  local s = ctx.settings or M.settings(ctx.cfg, ctx.flags)
  if not s then
    errors.raise("usage", "no backup destination: set `backup = { to = ... }` in tide.lua or pass --backup-to URL")
  end
  -- until the guard closes, SIGINT/SIGTERM stop the backup's C loops instead of killing tide
  -- outright, so that everything below can clean up
  local _ <close> = core.catch_signals()
  local conn = ctx.conn
  local progress = reporter()
  local info = conn:info()
  local db = conn:query("SELECT pg_catalog.current_database() AS name, "
    .. "pg_catalog.current_setting('server_version_num')::int AS num, "
    .. "pg_catalog.current_setting('server_version') AS version, "
    .. "pg_catalog.pg_database_size(pg_catalog.current_database()) AS size, "
    .. "pg_catalog.to_char(pg_catalog.clock_timestamp() AT TIME ZONE 'UTC', "
    .. "'YYYYMMDD\"T\"HH24MISSMS\"Z\"') AS stamp")[1]
  -- milliseconds in the id, so that backups taken within one second still sort by time
  local id = db.stamp .. "-" .. db.name:gsub("[^%w_.-]", "_") .. "-" .. random_hex(3)
  local archive, manifest_name = id .. "/archive.dump", id .. "/manifest.json"
  local pg_dump, pg_restore = M.tools(s)
  local dest <close> = M.destination(s, progress.update)
  local reference = dest:display() .. id .. "/"

  -- 1. the destination answers, and accepts our credentials, before a long dump
  if step("checking the destination", dest.head, dest, archive) then
    fail("checking the destination", "an object named " .. archive .. " already exists")
  end
  M.sweep(dest, s)

  -- 2. dump and hash; then pg_restore reads the archive back while it is uploaded (3.)
  local t0 = core.now()
  local dumped = step("pg_dump", core.dump, {
    pg_dump = pg_dump,
    pg_restore = pg_restore,
    url = ctx.cfg.url or "",
    tmp_dir = s.tmp_dir,
    lock_wait_timeout = s.lock_wait_timeout or "30s",
    server_version_num = db.num,
    min_free = s.space_check ~= false and db.size or 0,
    estimate = db.size,
    progress = progress.update,
    defer_verify = true,
  })
  local spool <close> = dumped.spool -- removes the archive's spool file however this ends
  local verification <close> = dumped.verification -- stops pg_restore if it still reads
  progress.done("dumped", dumped.size, core.now() - t0)

  local ok, err = pcall(function()
    -- 3. upload while the archive is verified: the destination makes the object visible (S3:
    -- completes the multipart upload) only once pg_restore has read all of it, and abandons
    -- the upload otherwise; then check what landed
    local t1 = core.now()
    local uploaded, etag = pcall(dest.put_file, dest, archive, dumped.path, dumped, verification)
    if not uploaded and core.interrupted() then
      fail("upload", etag)
    end
    -- a failed read fails the backup at pg_dump, whatever became of the upload
    step("pg_dump", verification.wait, verification)
    if not uploaded then
      fail("upload", etag)
    end
    progress.done("verified and uploaded to " .. dest:display(), dumped.size, core.now() - t1)
    local head = step("checking the upload", dest.head, dest, archive)
    if not head then
      fail("checking the upload", archive .. " is missing after the upload")
    end
    if head.size ~= dumped.size then
      fail("checking the upload", string.format("%s has %d bytes, the archive %d", archive, head.size, dumped.size))
    end
    local want = etag ~= "" and etag or dumped.md5
    if head.etag and head.etag:match("^%x+%-?%d*$") and (#head.etag == 32 or head.etag:find("-", 1, true))
      and head.etag ~= want then
      fail("checking the upload", string.format("%s has ETag %s, expected %s", archive, head.etag, want))
    end
    if core.interrupted() then
      raise_interrupted("checking the upload")
    end
    -- 4. the manifest, last
    local manifest = {
      format = 1,
      id = id,
      database = db.name,
      server_version = db.version,
      server_version_num = db.num,
      pg_dump_version = dumped.pg_dump_version,
      revisions = ctx.revisions or applied_revisions(conn, ctx.cfg),
      target = ctx.target,
      direction = ctx.direction,
      run_id = ctx.run and ctx.run.id,
      tide_version = core.version,
      created_at = os.date("!%Y-%m-%dT%H:%M:%SZ"),
      host = info.host,
      archive = "archive.dump",
      size = dumped.size,
      sha256 = dumped.sha256,
      md5 = dumped.md5,
    }
    step("writing the manifest", dest.put_string, dest, manifest_name, json.encode(manifest))
  end)
  spool:close()
  if not ok then
    -- a failed backup leaves no manifest and no archive behind
    pcall(dest.delete, dest, manifest_name)
    pcall(dest.delete, dest, archive)
    error(err, 0)
  end
  log.info("backup: complete: %s (%s, sha256 %s)", reference, human(dumped.size), dumped.sha256:sub(1, 16))

  local result = { id = id, reference = reference, size = dumped.size, sha256 = dumped.sha256 }
  if s.keep then
    local pruned_ok, pruned = pcall(M.prune, dest, s.keep, id, ctx.protect, db.name)
    if pruned_ok then
      result.pruned = pruned
    else
      -- the new backup is complete: a failed prune is worth a warning, not a failed run
      log.warn("backup: pruning old backups failed: %s", errors.is_error(pruned) and pruned.message or tostring(pruned))
    end
  end
  return result
end

-- Listing and retention -------------------------------------------------------------------------

--- Complete backups at dest (those with a manifest), oldest first: {id, manifest, size, ...}.
function M.list(dest)
  local objects = {}
  for _, o in ipairs(dest:list()) do
    objects[o.name] = o.size
  end
  local out = {}
  for name in pairs(objects) do
    local id = name:match("^([^/]+)/manifest%.json$")
    if id then
      local ok, m = pcall(function()
        return json.decode(dest:get_string(name))
      end)
      if ok and type(m) == "table" and m.id == id then
        out[#out + 1] = {
          id = id,
          created_at = m.created_at,
          database = m.database,
          size = m.size,
          sha256 = m.sha256,
          revisions = m.revisions,
          archive_present = objects[id .. "/" .. (m.archive or "archive.dump")] ~= nil,
          manifest = m,
        }
      else
        log.warn("backups: %s%s is not a valid manifest; ignored", dest:display(), name)
      end
    end
  end
  table.sort(out, function(a, b)
    return a.id < b.id
  end)
  return out
end

--- Keeps `keep` complete backups of `database` at dest and deletes the older ones. The one just
--- made and the ones in protect (a set of ids: the backup of the latest run) are never deleted
--- and count towards keep, so keep = N leaves N backups (more only when those alone are more).
--- Other databases' backups at the same destination are not this database's to count or prune.
--- The manifest goes first: once it is gone the backup no longer exists, even if removing the
--- archive then fails.
---@return string[] ids pruned
function M.prune(dest, keep, just_made, protect, database)
  local mine = {}
  for _, b in ipairs(M.list(dest)) do
    if database == nil or b.database == database or b.id == just_made then
      mine[#mine + 1] = b
    end
  end
  local must = {}
  local slots = keep
  for _, b in ipairs(mine) do
    if b.id == just_made or (protect and protect[b.id]) then
      must[b.id] = true
      slots = slots - 1
    end
  end
  local pruned = {}
  for i = #mine, 1, -1 do
    local b = mine[i]
    if not must[b.id] and slots > 0 then
      slots = slots - 1
    elseif not must[b.id] then
      dest:delete(b.id .. "/manifest.json")
      dest:delete(b.id .. "/" .. (b.manifest.archive or "archive.dump"))
      pruned[#pruned + 1] = b.id
      log.info("backup: pruned %s%s/", dest:display(), b.id)
    end
  end
  return pruned
end

-- The latest run's backup id, from the history table (protected from pruning).
local function latest_run_backup(conn, cfg)
  local sql = require "tide.sql"
  local track = require "tide.track"
  if not track.exists(conn, cfg.schema) then
    return {}
  end
  local rows = conn:query("SELECT backup FROM " .. sql.ident(cfg.schema) .. ".history WHERE backup IS NOT NULL "
    .. "ORDER BY id DESC LIMIT 1")
  local ref = rows[1] and rows[1].backup
  local id = type(ref) == "string" and ref:match("([^/]+)/?$")
  return id and { [id] = true } or {}
end

-- Before a migration ----------------------------------------------------------------------------

-- SQL a downgrade would run, recorded without a database; nil when it cannot be recorded.
local function destructive(plan, vars)
  local dbmod = require "tide.db"
  for _, rev in ipairs(plan) do
    local rec = dbmod.recorder(rev, vars)
    local ok = rev.downgrade and pcall(rev.downgrade, rec)
    if not ok then
      return rev -- cannot tell: treat as destructive
    end
    for _, statement in ipairs(rec.record) do
      if require("tide.lint").drops_data(statement) then
        return rev
      end
    end
  end
end

--- Builds the function the runner calls after taking its lock and before the first DDL, when
--- something is pending: runner.migrate(cfg, graph, direction, target, { before_migrate =
--- backup.hook(cfg, flags) }), which calls it as before_migrate(info) -> backup reference | nil,
--- info = {conn, cfg, plan, applied, target, direction, run}.
---@param cfg table the run configuration
---@param flags table {["backup-to"], ["no-backup"]}
function M.hook(cfg, flags)
  flags = flags or {}
  local s = M.settings(cfg, flags)
  local hooks = cfg.hooks or {}
  return function(info)
    if flags["no-backup"] then
      -- recorded even when no backup is configured: it is what let a destructive downgrade run
      info.run.note = (info.run.note and (info.run.note .. "; ") or "") .. "--no-backup"
      if s or hooks.before_migrate then
        log.warn("backup: skipped (--no-backup); recorded in the history")
      end
      return nil
    end
    if not s and not hooks.before_migrate then
      if info.direction == "downgrade" then
        local rev = destructive(info.plan, cfg.vars)
        if rev then
          errors.raise("backup", string.format("downgrade of %s (%s) drops tables or columns: configure a backup "
            .. "(backup.to or --backup-to URL) or pass --no-backup", rev.revision, rev.file))
        end
      end
      return nil
    end
    local revs = {}
    for id in pairs(info.applied or {}) do
      revs[#revs + 1] = id
    end
    table.sort(revs)
    local function builtin(opts)
      opts = opts or {}
      local r = M.run {
        cfg = cfg,
        flags = flags,
        settings = opts.to and M.settings(cfg, { ["backup-to"] = opts.to }) or s,
        conn = info.conn,
        target = info.target,
        direction = info.direction,
        run = info.run,
        revisions = revs,
        protect = latest_run_backup(info.conn, cfg),
      }
      -- the run's history rows keep the archive's checksum and size: restore's trust anchor
      info.run.backup_sha256, info.run.backup_size = r.sha256, r.size
      return r.reference
    end
    if hooks.before_migrate then
      -- the project's hook adds steps or replaces the built-in backup; it gets the same
      -- primitives (core.dump, core.destination) and the built-in step as ctx.backup()
      local ok, ref = pcall(hooks.before_migrate, {
        plan = info.plan,
        direction = info.direction,
        target = info.target,
        run_id = info.run.id,
        url = cfg.url,
        backup = builtin,
        dump = core.dump,
        destination = core.destination,
        settings = s,
      })
      if not ok then
        errors.raise("backup", "hooks.before_migrate failed: " .. (errors.is_error(ref) and ref.message
          or tostring(ref)))
      end
      return ref ~= nil and tostring(ref) or nil
    end
    return builtin()
  end
end

-- What the commands do -------------------------------------------------------------------------

local BACKUP_TO = { "backup-to", "URL", "backup destination (else tide.lua backup.to)" }

--- Flags the migrating commands (upgrade, downgrade, auto) add for the backup.
M.migrate_flags = {
  BACKUP_TO,
  { "no-backup", nil, "skip the configured backup (recorded in the history)" },
}

--- `tide backup`: one backup of the project's database now (the latest run's backup is kept
--- from pruning).
function M.take(cfg, flags)
  local conn <close> = session.connect(cfg)
  local protect = latest_run_backup(conn, cfg)
  return M.run { cfg = cfg, flags = flags, conn = conn, protect = protect }
end

--- `tide backups`: the complete backups at the destination, oldest first.
---@return table {destination, backups = {{id, created_at, database, size, sha256, revisions, archive_present}}}
function M.catalogue(cfg, flags)
  local s = M.settings(cfg, flags)
  if not s then
    errors.raise("usage", "no backup destination: set `backup = { to = ... }` in tide.lua or pass --backup-to URL")
  end
  local dest <close> = M.destination(s)
  local list = step("listing", M.list, dest)
  local rows = {}
  for i, b in ipairs(list) do
    rows[i] = { id = b.id, created_at = b.created_at, database = b.database, size = b.size, sha256 = b.sha256,
      revisions = b.revisions, archive_present = b.archive_present }
  end
  return { destination = dest:display(), backups = rows }
end

return M
