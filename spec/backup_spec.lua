-- spec/backup_spec.lua: tide.backup and the C primitives under it (engine/dump.c, engine/upload.c)
-- against the sandbox PostgreSQL, a local directory, and spec/support/fake_s3.py (an S3 stand-in
-- that verifies SigV4, payload hashes, Content-MD5 and multipart, with fault injection).
-- Every failure case checks that it fails closed: non-zero exit, one line naming the step, no
-- revision applied, the user's tables unchanged, no manifest and no object left behind.
local H = require "spec.support.helpers"
local core = require "tide.core"
local json = require "tide.json"

local AK, SK = "AKIDTEST", "sk-Zq8vV3cret-do-not-print"
local BEARER = "bearer-Tk9-do-not-print"
local BIN = os.getenv("PG_BINDIR") or "/usr/lib/postgresql/15/bin"

-- fake S3 ---------------------------------------------------------------------------------------

local s3 = {}

local function start_s3()
  local dir = H.tmpdir()
  local cmd = string.format("python3 %s/spec/support/fake_s3.py --port 0 --bucket backups --access-key %s "
    .. "--secret-key %s --bearer %s --region us-east-1 --dir %s --max-seconds 1200 >%s/port 2>%s/log & "
    .. "echo $!",
    H.shell_quote(H.source_dir), AK, H.shell_quote(SK), H.shell_quote(BEARER), H.shell_quote(dir .. "/data"),
    H.shell_quote(dir), H.shell_quote(dir))
  local p = assert(io.popen(cmd, "r"))
  s3.pid = tonumber(p:read("l"))
  p:close()
  local deadline = core.now() + 10
  while core.now() < deadline do
    local port = (H.read(dir .. "/port") or ""):match("PORT (%d+)")
    if port then
      s3.port = tonumber(port)
      s3.endpoint = "http://127.0.0.1:" .. port
      return
    end
    core.sleep(0.05)
  end
  error("fake_s3.py did not start: " .. tostring(H.read(dir .. "/log")))
end

local function s3_ctl(path, body)
  local p = assert(io.popen(string.format("curl -s -f -X POST --data-binary @- %s%s >/dev/null", s3.endpoint, path),
    "w"))
  p:write(body or "")
  assert(p:close(), "fake_s3 control request failed")
end

local function s3_fault(t)
  s3_ctl("/__ctl/fault", json.encode(t))
end

local function s3_log()
  local p = assert(io.popen("curl -s -f " .. s3.endpoint .. "/__ctl/log", "r"))
  local text = p:read("a")
  p:close()
  return json.decode(text)
end

-- A destination as the specs see it (for listing what is there).
local function s3_dest(prefix)
  return core.destination { url = "s3://backups/" .. prefix, endpoint = s3.endpoint, access_key_id = AK,
    secret_access_key = SK, region = "us-east-1", deadline = 10 }
end

-- databases and projects --------------------------------------------------------------------------

local template -- a database with ~25 MB of incompressible-ish rows: its archive needs multipart
local extra_dbs = {}

local function db_from(tmpl)
  local name = "tide_bk_" .. (core.random_bytes(5):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
  H.sql(nil, "CREATE DATABASE " .. name .. " TEMPLATE " .. tmpl)
  extra_dbs[#extra_dbs + 1] = name
  return { name = name, url = H.url(name) }
end

-- Two revisions that add tables and rows: the "migration" the backup protects against.
local function project(backup_lua)
  local revs = H.chain(2, "added")
  return H.project(revs, "return { backup = " .. backup_lua .. " }\n")
end

local function s3_project(prefix, extra)
  return project(string.format("{ to = %q, endpoint = %q, region = 'us-east-1', deadline = 20, "
    .. "backoff_base = 0.05, backoff_cap = 0.3, max_attempts = 4, low_speed_time = 2, "
    .. "multipart_threshold = 5 * 1024 * 1024, part_size = 5 * 1024 * 1024, pg_bindir = %q%s }",
    "s3://backups/" .. prefix, s3.endpoint, BIN, extra and (", " .. extra) or ""))
end

local S3_ENV = { AWS_ACCESS_KEY_ID = AK, AWS_SECRET_ACCESS_KEY = SK }

local function state(db)
  return {
    tables = table.concat(H.tables(db), ","),
    rows = H.sql(db, "SELECT count(*)::int AS n, pg_catalog.md5(pg_catalog.string_agg(v, '' ORDER BY id)) AS h "
      .. "FROM big")[1],
    applied = #H.applied(db),
    schemas = H.sql(db, "SELECT pg_catalog.string_agg(nspname, ',' ORDER BY nspname) AS s FROM pg_namespace "
      .. "WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'")[1].s,
  }
end

-- Fails closed: exit 7 (backup), one "backup failed at <step>" line, no DDL of the migration.
local function assert_failed_closed(r, db, before, step_pattern)
  assert.are.equal(7, r.code, r.output)
  assert.matches("backup failed at " .. step_pattern, r.stderr)
  local after = state(db)
  assert.are.same(before.tables, after.tables)
  assert.are.same(before.rows, after.rows)
  assert.are.equal(0, after.applied)
  -- not even tide's own tracking schema: the backup comes before every DDL statement
  assert.are.same(before.schemas, after.schemas)
end

local function all_objects(prefix)
  local d <close> = s3_dest(prefix)
  local names = {}
  for _, o in ipairs(d:list()) do
    names[#names + 1] = o.name
  end
  table.sort(names)
  return names
end

describe("tide.backup #db", function()
  setup(function()
    start_s3()
    template = H.fresh_db()
    H.sql(template, "CREATE TABLE big (id int PRIMARY KEY, v text NOT NULL); "
      .. "INSERT INTO big SELECT g, pg_catalog.md5(random()::text) || pg_catalog.md5(random()::text) "
      .. "|| pg_catalog.md5(random()::text) || pg_catalog.md5(random()::text) FROM generate_series(1, 160000) g;")
  end)

  teardown(function()
    if s3.pid then
      os.execute("kill " .. s3.pid .. " 2>/dev/null")
    end
    for _, name in ipairs(extra_dbs) do
      pcall(H.sql, nil, "DROP DATABASE IF EXISTS " .. name .. " WITH (FORCE)")
    end
    H.cleanup()
  end)

  describe("core primitives", function()
    it("dumps, verifies and hashes, and refuses a truncated archive", function()
      local r = core.dump { pg_dump = BIN .. "/pg_dump", pg_restore = BIN .. "/pg_restore", url = template.url,
        tmp_dir = H.tmpdir(), server_version_num = 150000 }
      local d = core.file_digest(r.path)
      assert.are.equal(d.sha256, r.sha256)
      assert.are.equal(d.size, r.size)
      assert.truthy(r.size > 5 * 1024 * 1024)
      -- pg_restore --list would accept this; the full read does not
      assert(os.execute(string.format("truncate -s %d %s", r.size // 2, H.shell_quote(r.path))))
      local ok, err = pcall(core.verify_archive, BIN .. "/pg_restore", r.path)
      assert.is_false(ok)
      assert.matches("pg_restore", err.message)
      os.remove(r.path)
    end)

    it("refuses a pg_dump older than the server", function()
      local ok, err = pcall(core.dump, { pg_dump = BIN .. "/pg_dump", url = template.url, tmp_dir = "/tmp",
        server_version_num = 990000 })
      assert.is_false(ok)
      assert.matches("older than the server", err.message)
    end)

    it("rejects unknown options", function()
      assert.has_error(function()
        core.destination { url = "file:///tmp/x/", secret_acces_key = "x" }
      end)
    end)

    it("closes a destination twice and refuses use after close", function()
      local d = core.destination { url = "file://" .. H.tmpdir() .. "/" }
      d:close()
      d:close()
      assert.has_error(function()
        d:list()
      end)
      collectgarbage()
    end)
  end)

  describe("to a local directory", function()
    it("round trip: backup, migrate, restore into a new database gives the same schema and rows", function()
      local db = db_from(template.name)
      local before = state(db)
      local dir = H.tmpdir()
      local proj = project(string.format("{ to = %q, pg_bindir = %q }", "file://" .. dir .. "/", BIN))
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal(2, #H.applied(db))
      -- the history rows of the run carry the backup's reference
      local refs = H.sql(db, "SELECT DISTINCT backup FROM tide.history")
      assert.are.equal(1, #refs)
      local id = refs[1].backup:match("([^/]+)/$")
      assert.truthy(id)
      local manifest = json.decode(H.read(dir .. "/" .. id .. "/manifest.json"))
      assert.are.equal(db.name, manifest.database)
      assert.are.same({}, manifest.revisions)
      assert.are.equal("head", manifest.target)
      assert.are.equal(core.file_digest(dir .. "/" .. id .. "/archive.dump").sha256, manifest.sha256)

      local listed = H.tide({ "backups", "--json" }, { dir = proj })
      assert.are.equal(0, listed.code, listed.output)
      assert.are.equal(id, json.decode(listed.stdout).backups[1].id)

      local target = H.fresh_db()
      r = H.tide({ "restore", id, "--to", target.url, "--yes" }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      local restored = state(target)
      assert.are.same(before.rows, restored.rows)
      assert.are.same(before.tables, restored.tables)
      assert.are.equal(0, restored.applied)
    end)

    it("reports progress as one line per stage off a terminal, and as a live line on one", function()
      local dir = H.tmpdir()
      local proj = project(string.format("{ to = %q, pg_bindir = %q }", "file://" .. dir .. "/", BIN))
      local db = db_from(template.name)
      local r = H.tide({ "backup", "--url", db.url }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      assert.matches("tide: backup: [%w ]+: [%d.]+ %a*B in [%d.]+ s\n", r.stderr)
      assert.is_nil(r.stderr:find("\r", 1, true), "no carriage returns off a terminal")
      -- script(1) gives tide a terminal on stdin, stdout and stderr
      local out = os.tmpname()
      local cmd = "unset DATABASE_URL; cd " .. H.shell_quote(proj) .. " && script -qec "
        .. H.shell_quote(H.command { "backup", "--url", db.url }) .. " /dev/null > " .. H.shell_quote(out) .. " 2>&1"
      assert.is_true(os.execute(cmd) == true, H.read(out))
      local screen = H.read(out)
      os.remove(out)
      assert.truthy(screen:find("\r", 1, true), "a live line rewrites itself: " .. screen)
      assert.matches("tide: backup: %a+ +[%d.]+ %a*B +[%d.]+ %a*B/s", screen)
    end)

    it("takes no backup when nothing is pending", function()
      local db = db_from(template.name)
      local dir = H.tmpdir()
      local proj = project(string.format("{ to = %q, pg_bindir = %q }", "file://" .. dir .. "/", BIN))
      assert.are.equal(0, H.tide({ "upgrade", "--url", db.url, "--no-backup" }, { dir = proj }).code)
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({}, core.listdir(dir))
      -- --no-backup is written to the history
      local notes = H.sql(db, "SELECT DISTINCT note FROM tide.history")
      assert.matches("%-%-no%-backup", notes[1].note)
    end)

    it("lets a hooks.before_migrate in tide.lua run the built-in backup as one of its steps", function()
      local db = db_from(template.name)
      local dir = H.tmpdir()
      local proj = H.project(H.chain(1, "hooked"), string.format([[
return {
  backup = { to = %q, pg_bindir = %q },
  hooks = {
    before_migrate = function(ctx)
      assert(ctx.direction == "upgrade" and #ctx.plan == 1)
      return ctx.backup() .. "#hooked"
    end,
  },
}
]], "file://" .. dir .. "/", BIN))
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      assert.matches("#hooked$", H.sql(db, "SELECT backup FROM tide.history")[1].backup)
      assert.are.equal(1, #core.listdir(dir))
    end)

    it("refuses a downgrade that drops tables without a backup or --no-backup", function()
      local db = db_from(template.name)
      local proj = H.project(H.chain(1, "dropped"))
      assert.are.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = proj }).code)
      local r = H.tide({ "downgrade", "base", "--url", db.url }, { dir = proj })
      assert.are.equal(7, r.code, r.output)
      assert.matches("drops tables or columns", r.stderr)
      assert.are.equal(1, #H.applied(db))
      r = H.tide({ "downgrade", "base", "--url", db.url, "--no-backup" }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal(0, #H.applied(db))
    end)

    it("restore refuses a non-empty target without --clean, and a corrupted archive", function()
      local db = db_from(template.name)
      local dir = H.tmpdir()
      local proj = project(string.format("{ to = %q, pg_bindir = %q }", "file://" .. dir .. "/", BIN))
      local r = H.tide({ "backup", "--url", db.url, "--json" }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      local id = json.decode(r.stdout).id
      r = H.tide({ "restore", id, "--to", db.url, "--yes" }, { dir = proj })
      assert.are.equal(2, r.code, r.output)
      assert.matches("not empty", r.stderr)
      r = H.tide({ "restore", id, "--to", H.fresh_db().url }, { dir = proj })
      assert.are.equal(2, r.code, r.output)
      assert.matches("%-%-yes", r.stderr)
      -- flip one byte of the archive: the checksum check stops the restore before pg_restore
      local f = assert(io.open(dir .. "/" .. id .. "/archive.dump", "r+b"))
      f:seek("set", 1000)
      local b = f:read(1)
      f:seek("set", 1000)
      f:write(string.char((b:byte() + 1) % 256))
      f:close()
      local target = H.fresh_db()
      r = H.tide({ "restore", id, "--to", target.url, "--yes" }, { dir = proj })
      assert.are.equal(7, r.code, r.output)
      assert.matches("checking the download", r.stderr)
      assert.are.same({}, H.tables(target))
    end)

    it("keeps N complete backups, never pruning the one just made or the latest run's", function()
      local db = db_from(template.name)
      local dir = H.tmpdir()
      local proj = project(string.format("{ to = %q, keep = 2, pg_bindir = %q }", "file://" .. dir .. "/", BIN))
      assert.are.equal(0, H.tide({ "upgrade", "+1", "--url", db.url }, { dir = proj }).code)
      local run_ref = H.sql(db, "SELECT backup FROM tide.history WHERE backup IS NOT NULL")[1].backup
      local run_id = run_ref:match("([^/]+)/$")
      local ids = {}
      for i = 1, 3 do
        local r = H.tide({ "backup", "--url", db.url, "--json" }, { dir = proj })
        assert.are.equal(0, r.code, r.output)
        ids[i] = json.decode(r.stdout).id
      end
      local left = core.listdir(dir)
      -- the two newest, plus the one the latest run references
      assert.are.same({ run_id, ids[2], ids[3] }, left)
      assert.is_nil(H.read(dir .. "/" .. ids[1] .. "/manifest.json"))
    end)

    it("fails closed when pg_dump is killed midway", function()
      local db = db_from(template.name)
      local before = state(db)
      local bindir = H.tmpdir {
        ["pg_dump"] = "#!/bin/sh\n[ \"$1\" = --version ] && exec " .. BIN .. "/pg_dump \"$@\"\n"
          .. "( sleep 0.3; kill -9 $$ ) &\nexec " .. BIN .. "/pg_dump \"$@\"\n",
        ["pg_restore"] = "#!/bin/sh\nexec " .. BIN .. "/pg_restore \"$@\"\n",
      }
      os.execute("chmod +x " .. H.shell_quote(bindir) .. "/*")
      local dir, tmp = H.tmpdir(), H.tmpdir()
      local proj = project(string.format("{ to = %q, pg_bindir = %q, tmp_dir = %q }", "file://" .. dir .. "/",
        bindir, tmp))
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj })
      assert_failed_closed(r, db, before, "pg_dump: pg_dump was killed by signal 9")
      assert.are.same({}, core.listdir(dir))
      assert.are.same({}, core.listdir(tmp))
    end)

    it("fails closed on a corrupt (truncated) archive", function()
      local db = db_from(template.name)
      local before = state(db)
      local bindir = H.tmpdir {
        ["pg_dump"] = "#!/bin/sh\n" .. BIN .. "/pg_dump \"$@\" || exit $?\n"
          .. "for a in \"$@\"; do case $a in --file=*) f=${a#--file=};; esac; done\n"
          .. "[ -n \"$f\" ] && truncate -s 100000 \"$f\"\nexit 0\n",
        ["pg_restore"] = "#!/bin/sh\nexec " .. BIN .. "/pg_restore \"$@\"\n",
      }
      os.execute("chmod +x " .. H.shell_quote(bindir) .. "/*")
      local dir = H.tmpdir()
      local proj = project(string.format("{ to = %q, pg_bindir = %q }", "file://" .. dir .. "/", bindir))
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj })
      assert_failed_closed(r, db, before, "pg_dump: pg_restore %(reading the whole archive%)")
      assert.are.same({}, core.listdir(dir))
    end)

    describe("on a full disk", function()
      local mnt
      setup(function()
        mnt = H.tmpdir()
        -- a 2 MiB tmpfs: needs root (CAP_SYS_ADMIN), as in CI's container
        if not os.execute("mount -t tmpfs -o size=2m tide-spec " .. H.shell_quote(mnt) .. " 2>/dev/null") then
          mnt = nil
        end
      end)
      teardown(function()
        if mnt then
          os.execute("umount " .. H.shell_quote(mnt))
        end
      end)

      it("refuses to start when the temp directory has less room than the database", function()
        if not mnt then
          pending("mounting a tmpfs needs root")
          return
        end
        local db = db_from(template.name)
        local before = state(db)
        local proj = project(string.format("{ to = %q, pg_bindir = %q, tmp_dir = %q }",
          "file://" .. H.tmpdir() .. "/", BIN, mnt))
        local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj })
        assert_failed_closed(r, db, before, "pg_dump: not enough free space")
      end)

      it("fails closed when pg_dump hits ENOSPC (space check off)", function()
        if not mnt then
          pending("mounting a tmpfs needs root")
          return
        end
        local db = db_from(template.name)
        local before = state(db)
        local proj = project(string.format("{ to = %q, pg_bindir = %q, tmp_dir = %q, space_check = false }",
          "file://" .. H.tmpdir() .. "/", BIN, mnt))
        local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj })
        assert_failed_closed(r, db, before, "pg_dump: pg_dump exited with status 1")
        assert.are.same({}, core.listdir(mnt))
      end)

      it("fails closed when the destination directory is full", function()
        if not mnt then
          pending("mounting a tmpfs needs root")
          return
        end
        local db = db_from(template.name)
        local before = state(db)
        assert(os.execute("mkdir " .. H.shell_quote(mnt .. "/dest")))
        local proj = project(string.format("{ to = %q, pg_bindir = %q }", "file://" .. mnt .. "/dest/", BIN))
        local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj })
        assert_failed_closed(r, db, before, "upload: .*No space left on device")
        assert.are.same({}, core.listdir(mnt .. "/dest"))
      end)
    end)
  end)

  describe("to http(s)", function()
    local function http_project(prefix)
      return project(string.format("{ to = %q, bearer_token_env = 'BACKUP_TOKEN', pg_bindir = %q, deadline = 10, "
        .. "backoff_base = 0.05, backoff_cap = 0.2, max_attempts = 3 }", s3.endpoint .. "/backups/" .. prefix .. "/",
        BIN))
    end

    it("round trip: PUT with a bearer token from the environment, then restore", function()
      local db = db_from(template.name)
      local before = state(db)
      local proj = http_project("web")
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj, env = { BACKUP_TOKEN = BEARER } })
      assert.are.equal(0, r.code, r.output)
      assert.is_nil(r.output:find(BEARER, 1, true))
      local ref = H.sql(db, "SELECT DISTINCT backup FROM tide.history")[1].backup
      assert.matches("^http://127%.0%.0%.1:%d+/backups/web/", ref)
      local id = ref:match("([^/]+)/$")
      -- an http destination cannot be listed: `tide backups` says so instead of printing nothing
      r = H.tide({ "backups" }, { dir = proj, env = { BACKUP_TOKEN = BEARER } })
      assert.are.equal(7, r.code, r.output)
      assert.matches("cannot be listed", r.stderr)
      local target = H.fresh_db()
      r = H.tide({ "restore", id, "--to", target.url, "--yes" }, { dir = proj, env = { BACKUP_TOKEN = BEARER } })
      assert.are.equal(0, r.code, r.output)
      assert.are.same(before.rows, state(target).rows)
    end)

    it("fails closed on a wrong token, and on a missing token variable", function()
      local db = db_from(template.name)
      local before = state(db)
      local proj = http_project("web2")
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj, env = { BACKUP_TOKEN = "nope" } })
      assert_failed_closed(r, db, before, "checking the destination: .*403")
      r = H.tide({ "upgrade", "--url", db.url }, { dir = proj })
      assert.are.equal(2, r.code, r.output)
      assert.matches("BACKUP_TOKEN is not set", r.stderr)
      assert.are.equal(0, state(db).applied)
    end)
  end)

  describe("to S3", function()
    it("round trip with a multipart upload verified by the S3 stand-in", function()
      local db = db_from(template.name)
      local before = state(db)
      local proj = s3_project("rt")
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj, env = S3_ENV })
      assert.are.equal(0, r.code, r.output)
      local names = all_objects("rt")
      assert.are.equal(2, #names)
      local id = names[1]:match("^([^/]+)/archive%.dump$")
      assert.truthy(id, names[1])
      local parts = 0
      for _, e in ipairs(s3_log().journal) do
        if e.method == "PUT" and e.query:find("partNumber", 1, true) and e.path:find("/rt/", 1, true) then
          parts = parts + 1
          assert.are.equal(200, e.status)
          assert.matches("content%-md5;host;x%-amz%-content%-sha256;x%-amz%-date", e.signed_headers)
        end
      end
      assert.truthy(parts >= 3)
      local target = H.fresh_db()
      r = H.tide({ "restore", id, "--to", target.url, "--yes" }, { dir = proj, env = S3_ENV })
      assert.are.equal(0, r.code, r.output)
      assert.are.same(before.rows, state(target).rows)
    end)

    it("gets through transient faults: 500s, a 503 SlowDown, a dropped connection, a 200-with-error", function()
      local db = db_from(template.name)
      s3_fault {
        fail = { { method = "PUT", query = "partNumber", status = 500, code = "InternalError", count = 2,
          path = "/backups/transient/" }, { method = "POST", status = 503, code = "SlowDown", count = 1,
          path = "/backups/transient/" } },
        drop = { { method = "PUT", after_bytes = 100000, count = 1, path = "/backups/transient/" } },
        complete_200_error = 1,
      }
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = s3_project("transient"), env = S3_ENV })
      local log = s3_log()
      s3_ctl("/__ctl/reset")
      assert.are.equal(0, r.code, r.output)
      assert.are.equal(2, #H.applied(db))
      assert.are.equal(2, #all_objects("transient"))
      local statuses = {}
      for _, e in ipairs(log.journal) do
        statuses[tostring(e.status)] = (statuses[tostring(e.status)] or 0) + 1
      end
      assert.are.equal(2, statuses["500"])
      assert.are.equal(1, statuses["503"])
      assert.are.equal(1, statuses["dropped"])
    end)

    it("gets through a stalled upload (low-speed detection, then a retry)", function()
      local db = db_from(template.name)
      s3_fault { stall = { { method = "PUT", after_bytes = 1000000, seconds = 40, count = 1,
        path = "/backups/stall/" } } }
      local t0 = core.now()
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = s3_project("stall"), env = S3_ENV })
      s3_ctl("/__ctl/reset")
      assert.are.equal(0, r.code, r.output)
      assert.truthy(core.now() - t0 < 30, "the stall was detected well before the server gave up")
      assert.are.equal(2, #H.applied(db))
    end)

    local faults = {
      { "a wrong secret", nil, "checking the destination: .*403", { AWS_SECRET_ACCESS_KEY = "wrong" } },
      { "persistent 500s", { fail = { { method = "PUT", status = 500, count = 1000 } } }, "upload: .*HTTP 500" },
      { "dropped connections", { drop = { { method = "PUT", after_bytes = 50000, count = 1000 } } }, "upload: " },
      { "stalls", { stall = { { method = "PUT", after_bytes = 1000000, seconds = 60, count = 1000 } } },
        "upload: .*" },
      { "200 with <Error> on complete", { complete_200_error = 1000 }, "upload: .*carrying an <Error>" },
      { "a 403 on one part", { fail = { { method = "PUT", query = "partNumber", status = 403, code = "AccessDenied",
        count = 1 } } }, "upload: .*AccessDenied" },
    }
    for i, f in ipairs(faults) do
      it("fails closed on " .. f[1] .. ", leaving no manifest and no parts", function()
        local db = db_from(template.name)
        local before = state(db)
        local prefix = "fault" .. i
        if f[2] then
          -- scoped to this test's prefix: a request left over from an earlier test cannot take it
          for _, list in pairs(f[2]) do
            for _, fault in ipairs(type(list) == "table" and list or {}) do
              fault.path = "/backups/" .. prefix .. "/"
            end
          end
          s3_fault(f[2])
        end
        local env = {}
        for k, v in pairs(S3_ENV) do
          env[k] = v
        end
        for k, v in pairs(f[4] or {}) do
          env[k] = v
        end
        local t0 = core.now()
        local r = H.tide({ "upgrade", "--url", db.url }, { dir = s3_project(prefix, "deadline = 12"), env = env })
        s3_ctl("/__ctl/reset")
        assert_failed_closed(r, db, before, f[3])
        assert.truthy(core.now() - t0 < 60, "gave up within its deadline")
        assert.are.same({}, all_objects(prefix))
        assert.are.equal(0, s3_log().open_uploads)
        assert.is_nil(r.output:find(SK, 1, true))
      end)
    end

    it("never prints secrets, even with -v (Authorization redacted)", function()
      local db = db_from(template.name)
      local pw = "pw-Hx7-secret"
      local role = "tide_bk_secret_" .. db.name:sub(-6)
      H.sql(nil, "CREATE ROLE " .. role .. " LOGIN SUPERUSER PASSWORD '" .. pw .. "'")
      finally(function()
        pcall(H.sql, nil, "DROP ROLE IF EXISTS " .. role)
      end)
      local url = H.url(db.name, role, pw)
      local proj = s3_project("secrets")
      local no_passfile = { dir = proj, env = S3_ENV, unset = { "PGPASSFILE", "DATABASE_URL" } }
      local outputs = {}
      local r = H.tide({ "upgrade", "-v", "--url", url }, no_passfile)
      outputs[#outputs + 1] = r.output
      assert.are.equal(0, r.code, r.output)
      assert.matches("Authorization: %[redacted%]", r.stderr)
      r = H.tide({ "backups", "-v" }, { dir = proj, env = S3_ENV })
      outputs[#outputs + 1] = r.output
      s3_fault { fail = { { method = "PUT", status = 500, count = 1000, path = "/backups/secrets/" } } }
      r = H.tide({ "backup", "-v", "--url", url }, no_passfile)
      s3_ctl("/__ctl/reset")
      assert.are.equal(7, r.code)
      outputs[#outputs + 1] = r.output
      local d <close> = s3_dest("secrets")
      for _, o in ipairs(d:list()) do
        if o.name:match("manifest%.json$") then
          outputs[#outputs + 1] = d:get_string(o.name)
        end
      end
      for _, row in ipairs(H.sql(db, "SELECT * FROM tide.history")) do
        for _, v in pairs(row) do
          outputs[#outputs + 1] = tostring(v)
        end
      end
      local all = table.concat(outputs, "\n")
      assert.is_nil(all:find(SK, 1, true))
      assert.is_nil(all:find(pw, 1, true))
      assert.is_nil(all:find("Signature=", 1, true))
    end)
  end)
end)
