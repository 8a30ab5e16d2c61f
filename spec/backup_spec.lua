-- spec/backup_spec.lua: tide.backup and the C primitives under it (engine/dump.c, engine/dest*.c)
-- against the sandbox PostgreSQL, a local directory, and spec/support/fake_s3.py (an S3 stand-in
-- that verifies SigV4, payload hashes, Content-MD5 and multipart, with fault injection).
-- Every failure case checks that it fails closed: non-zero exit, one line naming the step, no
-- revision applied, the user's tables unchanged, no manifest and no object left behind.
local H = require "spec.support.helpers"
local core = require "tide.core"
local json = require "tide.json"

local S3 = require "spec.support.s3"

local SK, BEARER = S3.SK, S3.BEARER
local BIN = os.getenv("PG_BINDIR") or "/usr/lib/postgresql/15/bin"

local s3 = S3 -- .endpoint, once started
local s3_ctl, s3_fault, s3_log, s3_dest = S3.ctl, S3.fault, S3.log, S3.dest

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

local S3_ENV = S3.ENV

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

local all_objects = S3.objects

-- text as a Lua pattern that matches only itself (backup ids hold '-')
local function lit(text)
  return (text:gsub("%p", "%%%0"))
end

describe("tide.backup #db", function()
  setup(function()
    S3.start()
    template = H.fresh_db()
    H.sql(template, "CREATE TABLE big (id int PRIMARY KEY, v text NOT NULL); "
      .. "INSERT INTO big SELECT g, pg_catalog.md5(random()::text) || pg_catalog.md5(random()::text) "
      .. "|| pg_catalog.md5(random()::text) || pg_catalog.md5(random()::text) FROM generate_series(1, 160000) g;")
  end)

  teardown(function()
    S3.stop()
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

    it("keeps N complete backups: the latest run's counts among them and is never pruned", function()
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
        -- keep = 2: the latest run's and the newest, never three
        assert.are.same({ run_id, ids[i] }, core.listdir(dir))
      end
      assert.is_nil(H.read(dir .. "/" .. ids[1] .. "/manifest.json"))
    end)

    it("keeps N backups of each database at a destination they share", function()
      local a, b = db_from(template.name), db_from(template.name)
      local dir = H.tmpdir()
      local proj = project(string.format("{ to = %q, keep = 1, pg_bindir = %q }", "file://" .. dir .. "/", BIN))
      local ids = {}
      for _, db in ipairs { a, b, a, b } do
        local r = H.tide({ "backup", "--url", db.url, "--json" }, { dir = proj })
        assert.are.equal(0, r.code, r.output)
        ids[#ids + 1] = json.decode(r.stdout).id
      end
      -- each database's newest: a backup of b never pruned one of a
      assert.are.same({ ids[3], ids[4] }, core.listdir(dir))
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

  describe("order of the steps", function()
    it("uploads and checks the archive before the manifest's PUT, in the stand-in's journal", function()
      local db = db_from(template.name)
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = s3_project("order"), env = S3_ENV })
      assert.are.equal(0, r.code, r.output)
      local steps = {}
      for _, e in ipairs(S3.journal("/backups/order/")) do
        local what = e.method .. " " .. (e.path:match("/([^/]+)$") or "") .. (e.query:find("uploadId", 1, true)
          and " (upload)" or e.query == "uploads" and " (start)" or "") .. " " .. tostring(e.status)
        if not e.path:match("/backups$") then -- listings and the sweep
          steps[#steps + 1] = what
        end
      end
      local function at(pattern)
        for i, s in ipairs(steps) do
          if s:match(pattern) then
            return i
          end
        end
        error("no " .. pattern .. " in " .. table.concat(steps, ", "))
      end
      local checked, started = at("^HEAD archive%.dump 404$"), at("^POST archive%.dump %(start%) 200$")
      local completed, verified = at("^POST archive%.dump %(upload%) 200$"), at("^HEAD archive%.dump 200$")
      local manifest = at("^PUT manifest%.json 200$")
      assert.truthy(checked < started and started < completed and completed < verified and verified < manifest,
        table.concat(steps, ", "))
      assert.are.equal(#steps, manifest, "the manifest is the last thing written: " .. table.concat(steps, ", "))
    end)

    it("never PUTs a manifest when the check of the upload fails", function()
      local db = db_from(template.name)
      local before = state(db)
      -- the first HEAD (does the name exist yet?) passes, every later one fails
      s3_fault { fail = { { method = "HEAD", status = 500, skip = 1, count = 1000, path = "/backups/nohead/" } } }
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = s3_project("nohead", "deadline = 4"), env = S3_ENV })
      local journal = S3.journal("/backups/nohead/")
      s3_ctl("/__ctl/reset")
      assert_failed_closed(r, db, before, "checking the upload")
      local heads = 0
      for _, e in ipairs(journal) do
        heads = heads + (e.method == "HEAD" and 1 or 0)
        assert.is_nil(e.path:find("manifest.json", 1, true) and e.method == "PUT" or nil, "a manifest was PUT")
      end
      assert.truthy(heads >= 2, "the journal holds the failing checks")
      assert.are.same({}, all_objects("nohead"))
    end)

    it("aborts the upload, and PUTs no manifest, when the verification fails while the parts upload", function()
      local db = db_from(template.name)
      local before = state(db)
      -- a pg_restore that reads for a while, then fails: the parts go up in the meantime
      local bindir = H.tmpdir {
        ["pg_dump"] = "#!/bin/sh\nexec " .. BIN .. "/pg_dump \"$@\"\n",
        ["pg_restore"] = "#!/bin/sh\nsleep 3\necho 'pg_restore: error: could not read the archive' >&2\nexit 1\n",
      }
      os.execute("chmod +x " .. H.shell_quote(bindir) .. "/*")
      local proj = project(string.format("{ to = %q, endpoint = %q, region = 'us-east-1', deadline = 20, "
        .. "multipart_threshold = 5 * 1024 * 1024, part_size = 5 * 1024 * 1024, pg_bindir = %q }",
        "s3://backups/unverified/", s3.endpoint, bindir))
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj, env = S3_ENV })
      local journal = S3.journal("/backups/unverified/")
      assert_failed_closed(r, db, before, "pg_dump: pg_restore %(reading the whole archive%) exited with status 1")
      local parts, aborted, steps = 0, nil, {}
      for i, e in ipairs(journal) do
        steps[#steps + 1] = e.method .. " " .. e.path:gsub(".*/", "") .. "?" .. e.query .. " " .. tostring(e.status)
        if e.method == "PUT" and e.query:find("partNumber", 1, true) and e.status == 200 and not aborted then
          parts = parts + 1
        end
        if e.method == "DELETE" and e.query:find("uploadId", 1, true) then
          aborted = aborted or i
        end
        assert.is_nil(e.method == "POST" and e.query:find("uploadId", 1, true) or nil, "the upload was completed")
        assert.is_nil(e.path:find("manifest.json", 1, true) and e.method == "PUT" or nil, "a manifest was PUT")
      end
      assert.truthy(parts >= 3, "parts went up while pg_restore read: " .. table.concat(steps, ", "))
      assert.truthy(aborted, "the multipart upload was aborted: " .. table.concat(steps, ", "))
      assert.are.equal(0, s3_log().open_uploads)
      assert.are.same({}, all_objects("unverified"))
    end)
  end)

  describe("restore checks the archive against the database's record", function()
    it("records the archive's SHA-256 and size in the history rows of the run it protects", function()
      local db = db_from(template.name)
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = s3_project("record"), env = S3_ENV })
      assert.are.equal(0, r.code, r.output)
      local rows = H.sql(db, "SELECT DISTINCT backup, backup_sha256, backup_size FROM tide.history")
      assert.are.equal(1, #rows)
      local id = rows[1].backup:match("([^/]+)/$")
      local m = json.decode(s3_dest("record"):get_string(id .. "/manifest.json"))
      assert.are.equal(m.sha256, rows[1].backup_sha256)
      assert.are.equal(m.size, rows[1].backup_size)
    end)

    it("refuses an archive and manifest both replaced in the bucket, and says when it cannot check", function()
      local db, other = db_from(template.name), H.fresh_db()
      H.sql(other, "CREATE TABLE planted (id int); INSERT INTO planted VALUES (666);")
      local proj = s3_project("tamper")
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj, env = S3_ENV })
      assert.are.equal(0, r.code, r.output)
      local id = H.sql(db, "SELECT DISTINCT backup FROM tide.history")[1].backup:match("([^/]+)/$")
      -- a clean restore first: checked against the history of the source database
      local target = H.fresh_db()
      r = H.tide({ "restore", id, "--to", target.url, "--yes", "--url", db.url }, { dir = proj, env = S3_ENV })
      assert.are.equal(0, r.code, r.output)
      assert.matches("restore: backup " .. lit(id) .. " matches its record in the history of ", r.stderr)
      -- whoever can write to the bucket replaces both the archive and its manifest
      r = H.tide({ "backup", "--url", other.url, "--json" }, { dir = s3_project("planted"), env = S3_ENV })
      assert.are.equal(0, r.code, r.output)
      local planted = json.decode(r.stdout).id
      local src <close> = s3_dest("planted")
      local dst <close> = s3_dest("tamper")
      local tmp = H.tmpdir() .. "/archive"
      src:get_file(planted .. "/archive.dump", tmp)
      local digest = core.file_digest(tmp)
      dst:put_file(id .. "/archive.dump", tmp, digest)
      local m = json.decode(src:get_string(planted .. "/manifest.json"))
      m.id = id
      dst:put_string(id .. "/manifest.json", json.encode(m))
      target = H.fresh_db()
      r = H.tide({ "restore", id, "--to", target.url, "--yes", "--url", db.url }, { dir = proj, env = S3_ENV })
      assert.are.equal(7, r.code, r.output)
      assert.matches("backup " .. lit(id) .. " at s3://backups/tamper/ does not match the record in the history of .*: "
        .. "the history says sha256 %x+ and %d+ bytes, the manifest " .. digest.sha256 .. " and %d+ bytes; the archive "
        .. "there is not the one tide took, refusing to restore it", r.stderr)
      assert.are.same({}, H.tables(target))
      -- when the source cannot be reached, restore says it checks against the manifest only
      local closed = string.format("postgresql://x@127.0.0.1:%d/x", H.closed_port())
      r = H.tide({ "restore", id, "--to", target.url, "--yes", "--url", closed }, { dir = proj, env = S3_ENV })
      assert.are.equal(0, r.code, r.output)
      assert.matches("warning: restore: cannot reach postgresql://x@127%.0%.0%.1:%d+/x to check backup " .. lit(id)
        .. " against its history .*: the archive is checked against its manifest only", r.stderr)
      assert.are.same({ { id = 666 } }, H.sql(target, "SELECT id FROM planted"))
    end)

    it("downloads no more than the manifest's size", function()
      local db = db_from(template.name)
      local dir, tmp = H.tmpdir(), H.tmpdir()
      local proj = project(string.format("{ to = %q, pg_bindir = %q, tmp_dir = %q }", "file://" .. dir .. "/", BIN,
        tmp))
      local r = H.tide({ "backup", "--url", db.url, "--json" }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      local id = json.decode(r.stdout).id
      local size = json.decode(r.stdout).size
      assert(os.execute(string.format("head -c 3000000 /dev/zero >> %s", H.shell_quote(dir .. "/" .. id
        .. "/archive.dump"))))
      local target = H.fresh_db()
      r = H.tide({ "restore", id, "--to", target.url, "--yes" }, { dir = proj })
      assert.are.equal(7, r.code, r.output)
      assert.matches("backup failed at download: .*is larger than the " .. size .. " bytes expected", r.stderr)
      assert.are.same({}, H.tables(target))
      assert.are.same({}, core.listdir(tmp))
    end)
  end)

  describe("signals and killed tides", function()
    -- tide's own process among the descendants of an H.spawn
    local function tide_pid(run)
      local deadline = core.now() + 10
      while core.now() < deadline do
        local pid = H.tide_pids(run.pid)[1]
        if pid then
          return pid
        end
        core.sleep(0.02)
      end
      error("tide did not start")
    end

    -- pg_dump and pg_restore that write their pid to dir/<tool>.pid, then run the real tool
    local function pid_bindir()
      local bindir = H.tmpdir()
      for _, tool in ipairs { "pg_dump", "pg_restore" } do
        H.write(bindir .. "/" .. tool, string.format("#!/bin/sh\n[ \"$1\" = --version ] || echo $$ > %s/%s.pid\n"
          .. "exec %s/%s \"$@\"\n", H.shell_quote(bindir), tool, BIN, tool))
      end
      assert(os.execute("chmod +x " .. H.shell_quote(bindir) .. "/pg_*"))
      return bindir
    end

    local function alive(pid)
      return pid and os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
    end

    local function wait_for(what, fn, seconds)
      local deadline = core.now() + (seconds or 15)
      while core.now() < deadline do
        local v = fn()
        if v then
          return v
        end
        core.sleep(0.05)
      end
      error("timed out waiting for " .. what)
    end

    -- Starts `tide upgrade` whose pg_dump waits for a lock the spec holds on table big.
    local function blocked_dump(db, dest, tmp)
      local bindir = pid_bindir()
      local holder = core.connect(db.url, "spec-holder")
      holder:exec("BEGIN; LOCK TABLE big IN ACCESS EXCLUSIVE MODE")
      local proj = project(string.format("{ to = %q, pg_bindir = %q, tmp_dir = %q, lock_wait_timeout = '60s' }",
        dest, bindir, tmp))
      local run = H.spawn({ "upgrade", "--url", db.url }, { dir = proj })
      local pg_dump = wait_for("pg_dump", function()
        local pid = tonumber(H.read(bindir .. "/pg_dump.pid") or "")
        -- its backend is waiting for the lock: the dump is under way
        return pid and #H.sql(db, "SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'big'::regclass") > 0
          and pid
      end)
      return run, tide_pid(run), pg_dump, holder, proj
    end

    for _, sig in ipairs { { "TERM", 143 }, { "INT", 130 } } do
      it("SIGINT/SIGTERM during pg_dump: stops it, removes the spool, exits " .. sig[2] .. ", changes nothing",
        function()
          local db = db_from(template.name)
          local before = state(db)
          local dir, tmp = H.tmpdir(), H.tmpdir()
          local run, pid, pg_dump, holder = blocked_dump(db, "file://" .. dir .. "/", tmp)
          assert.are.equal(1, #core.listdir(tmp), "the spool exists while pg_dump runs")
          assert(os.execute("kill -" .. sig[1] .. " " .. pid))
          local r = run.wait()
          holder:exec("ROLLBACK")
          holder:close()
          assert.are.equal(sig[2], r.code, r.stderr)
          assert.matches("tide: backup interrupted by SIG" .. sig[1] .. " at pg_dump: its children were stopped and "
            .. "its temporary files removed; nothing was migrated", r.stderr)
          assert.is_false(alive(pg_dump), "pg_dump still runs")
          assert.are.same({}, core.listdir(tmp))
          assert.are.same({}, core.listdir(dir))
          local after = state(db)
          assert.are.same(before, after)
        end)
    end

    it("SIGTERM with a child that ignores it: the child is killed a few seconds later, tide ends", function()
      local db = db_from(template.name)
      local before = state(db)
      local bindir, dir, tmp = H.tmpdir(), H.tmpdir(), H.tmpdir()
      H.write(bindir .. "/pg_dump", string.format("#!/bin/sh\n[ \"$1\" = --version ] && exec %s/pg_dump --version\n"
        .. "echo $$ > %s/pg_dump.pid\ntrap '' TERM\nexec sleep 60\n", BIN, H.shell_quote(bindir)))
      assert(os.execute("chmod +x " .. H.shell_quote(bindir .. "/pg_dump")))
      local proj = project(string.format("{ to = %q, pg_bindir = %q, tmp_dir = %q }", "file://" .. dir .. "/",
        bindir, tmp))
      local run = H.spawn({ "upgrade", "--url", db.url }, { dir = proj })
      local pid = tide_pid(run)
      local child = wait_for("pg_dump", function()
        return tonumber(H.read(bindir .. "/pg_dump.pid") or "")
      end)
      assert(os.execute("kill -TERM " .. pid))
      local r = run.wait()
      assert.are.equal(143, r.code, r.stderr)
      assert.matches("backup interrupted by SIGTERM at pg_dump", r.stderr)
      assert.is_false(alive(child), "the child that ignored SIGTERM still runs")
      assert.are.same({}, core.listdir(tmp))
      assert.are.same(before, state(db))
    end)

    it("SIGTERM during restore's pg_restore: stops it (its transaction rolls back), removes the spool", function()
      local db = db_from(template.name)
      local bindir, tmp = pid_bindir(), H.tmpdir()
      local proj = project(string.format("{ to = %q, pg_bindir = %q, tmp_dir = %q }", "file://" .. H.tmpdir() .. "/",
        bindir, tmp))
      local r = H.tide({ "backup", "--url", db.url, "--json" }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      local id = json.decode(r.stdout).id
      -- a --clean restore into the source itself, whose DROP of big waits for the spec's lock
      H.sql(db, "INSERT INTO big VALUES (0, 'added after the backup')")
      local holder <close> = core.connect(db.url, "spec-holder")
      holder:exec("BEGIN; LOCK TABLE big IN ACCESS SHARE MODE")
      os.remove(bindir .. "/pg_restore.pid")
      local run = H.spawn({ "restore", id, "--to", db.url, "--clean", "--yes" }, { dir = proj })
      local pid = tide_pid(run)
      local pg_restore = wait_for("pg_restore to wait for the lock", function()
        local p = tonumber(H.read(bindir .. "/pg_restore.pid") or "")
        return p and #H.sql(nil, "SELECT 1 FROM pg_locks WHERE NOT granted AND relation IS NOT NULL "
          .. "AND database = (SELECT oid FROM pg_database WHERE datname = $1)", db.name) > 0 and p
      end)
      assert(os.execute("kill -TERM " .. pid))
      r = run.wait()
      holder:exec("ROLLBACK")
      assert.are.equal(143, r.code, r.stderr)
      assert.matches("restore interrupted by SIGTERM at pg_restore: its children were stopped and its temporary "
        .. "files removed; nothing was restored", r.stderr)
      assert.is_false(alive(pg_restore), "pg_restore still runs")
      assert.are.same({}, core.listdir(tmp))
      -- the row added after the backup is still there: nothing of the restore was committed
      assert.are.equal(1, #H.sql(db, "SELECT 1 FROM big WHERE id = 0"))
    end)

    it("SIGTERM during an S3 upload: aborts the multipart upload, leaves no object, exits 143", function()
      local db = db_from(template.name)
      local before = state(db)
      s3_fault { stall = { { method = "PUT", query = "partNumber", after_bytes = 1000000, seconds = 60, count = 1,
        path = "/backups/sigterm/" } } }
      local run = H.spawn({ "upgrade", "--url", db.url }, { dir = s3_project("sigterm", "deadline = 60, "
        .. "low_speed_time = 60"), env = S3_ENV })
      local pid = tide_pid(run)
      wait_for("the multipart upload to start", function()
        return S3.log().open_uploads > 0
      end, 60)
      core.sleep(0.5)
      assert(os.execute("kill -TERM " .. pid))
      local r = run.wait()
      s3_ctl("/__ctl/reset")
      assert.are.equal(143, r.code, r.stderr)
      assert.matches("backup interrupted by SIGTERM at upload", r.stderr)
      assert.are.equal(0, S3.log().open_uploads)
      assert.are.same({}, all_objects("sigterm"))
      assert.are.same(before, state(db))
    end)

    it("a tide killed with SIGKILL takes pg_dump along; the next backup removes its spool", function()
      local db = db_from(template.name)
      local dir, tmp = H.tmpdir(), H.tmpdir()
      local run, pid, pg_dump, holder, proj = blocked_dump(db, "file://" .. dir .. "/", tmp)
      assert(os.execute("kill -KILL " .. pid))
      run.wait()
      wait_for("pg_dump to die with tide", function()
        return not alive(pg_dump)
      end)
      holder:exec("ROLLBACK")
      holder:close()
      local left = core.listdir(tmp)
      assert.are.equal(1, #left)
      assert.matches("^tide%-backup%-", left[1])
      -- a spool a live tide is writing is locked and recent: this one is neither once aged a little
      assert(os.execute("touch -d '-2 minutes' " .. H.shell_quote(tmp .. "/" .. left[1])))
      local r = H.tide({ "backup", "--url", db.url }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      assert.matches("removed " .. lit(tmp .. "/" .. left[1]) .. ", a spool left by a tide", r.stderr)
      assert.are.same({}, core.listdir(tmp))
    end)

    it("the next backup removes what killed tides left at a file:// destination, only that", function()
      local db = db_from(template.name)
      local dir = H.tmpdir()
      local id = "20261124T101834170Z-app-3f2a1c"
      local files = {
        dead = id .. "/archive.dump.tmp-abc123", -- its tide is gone: unlocked, unchanged for minutes
        live = "20261124T111111111Z-app-aaaaaa/archive.dump.tmp-def456", -- locked by a live writer
        young = "20261124T121212121Z-app-bbbbbb/archive.dump.tmp-123456", -- just written
        orphan = "20261120T101834170Z-app-cccccc/archive.dump", -- an archive that never got a manifest
        recent = "20261124T131313131Z-app-dddddd/archive.dump", -- the same, minutes old: maybe in progress
        notes = "notes/archive.dump.tmp-999999", -- not a backup's folder
      }
      for _, name in pairs(files) do
        assert(os.execute("mkdir -p " .. H.shell_quote(dir .. "/" .. name:match("^(.*)/"))))
        H.write(dir .. "/" .. name, "partial")
      end
      for _, k in ipairs { "dead", "live", "notes" } do
        assert(os.execute("touch -d '-10 minutes' " .. H.shell_quote(dir .. "/" .. files[k])))
      end
      assert(os.execute("touch -d '-3 days' " .. H.shell_quote(dir .. "/" .. files.orphan)))
      -- flock -o: the lock stays with flock itself, not with the sleep it runs
      local p = assert(io.popen("flock -o " .. H.shell_quote(dir .. "/" .. files.live) .. " sleep 60 >/dev/null & "
        .. "echo $!", "r"))
      local holder = tonumber(p:read("l"))
      p:close()
      finally(function()
        os.execute(string.format("pkill -P %d; kill %d 2>/dev/null", holder, holder))
      end)
      wait_for("the lock", function()
        return os.execute("flock -n " .. H.shell_quote(dir .. "/" .. files.live) .. " true") ~= true
      end)
      local proj = project(string.format("{ to = %q, pg_bindir = %q }", "file://" .. dir .. "/", BIN))
      local r = H.tide({ "backup", "--url", db.url }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      local function there(name)
        return H.read(dir .. "/" .. name) ~= nil
      end
      assert.is_false(there(files.dead))
      assert.is_nil(core.isdir(dir .. "/" .. id) and true or nil, "the emptied backup folder stays")
      assert.is_false(there(files.orphan))
      for _, k in ipairs { "live", "young", "recent", "notes" } do
        assert.is_true(there(files[k]), k .. " was removed")
      end
      assert.matches("removed file://.*" .. lit(files.dead) .. ", left by a tide", r.stderr)
    end)

    it("the next backup aborts an S3 multipart upload a killed tide left, and removes orphan archives", function()
      local db = db_from(template.name)
      s3_fault { stall = { { method = "PUT", query = "partNumber", after_bytes = 1000000, seconds = 60, count = 1,
        path = "/backups/killed/" } } }
      local proj = s3_project("killed", "deadline = 60, low_speed_time = 60")
      local run = H.spawn({ "upgrade", "--url", db.url }, { dir = proj, env = S3_ENV })
      local pid = tide_pid(run)
      wait_for("the multipart upload to start", function()
        return S3.log().open_uploads > 0
      end, 60)
      assert(os.execute("kill -KILL " .. pid))
      run.wait()
      s3_ctl("/__ctl/reset")
      assert.are.equal(1, S3.log().open_uploads)
      -- an archive without its manifest, and an object that is not tide's
      local d <close> = s3_dest("killed")
      d:put_string("20261120T101834170Z-app-cccccc/archive.dump", "orphan")
      d:put_string("notes/archive.dump", "not tide's")
      -- a day later, the next backup there cleans up after the killed one
      S3.ctl("/__ctl/age", json.encode { path = "/backups/killed/", seconds = 2 * 86400 })
      local r = H.tide({ "backup", "--url", db.url }, { dir = proj, env = S3_ENV })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal(0, S3.log().open_uploads)
      assert.matches("removed s3://backups/killed/[^ ]+/archive%.dump, left by a tide", r.stderr)
      local names = all_objects("killed")
      assert.are.equal(3, #names, table.concat(names, ", ")) -- the new backup's two, and notes
      assert.are.equal("notes/archive.dump", names[3])
    end)
  end)

  describe("smaller findings", function()
    it("reads back a manifest whose text holds <Error> (a database named so)", function()
      local name = "tide_bk_<Error>_" .. (core.random_bytes(3):gsub(".", function(c)
        return string.format("%02x", c:byte())
      end))
      H.sql(nil, 'CREATE DATABASE "' .. name .. '" TEMPLATE ' .. template.name)
      extra_dbs[#extra_dbs + 1] = '"' .. name .. '"'
      local url = H.url((name:gsub("<", "%%3C"):gsub(">", "%%3E")))
      local proj = s3_project("errorname")
      local r = H.tide({ "backup", "--url", url, "--json" }, { dir = proj, env = S3_ENV })
      assert.are.equal(0, r.code, r.output)
      local id = json.decode(r.stdout).id
      r = H.tide({ "backups", "--json" }, { dir = proj, env = S3_ENV })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal(name, json.decode(r.stdout).backups[1].database)
      local target = H.fresh_db()
      r = H.tide({ "restore", id, "--to", target.url, "--yes" }, { dir = proj, env = S3_ENV })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal(160000, H.sql(target, "SELECT count(*)::int AS n FROM big")[1].n)
    end)

    it("backs up with a bare --url DBNAME, as it connects with one", function()
      local db = db_from(template.name)
      local dir = H.tmpdir()
      local proj = project(string.format("{ to = %q, pg_bindir = %q }", "file://" .. dir .. "/", BIN))
      local r = H.tide({ "upgrade", "--url", db.name }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      assert.are.same({ "001", "002" }, H.applied(db))
      assert.are.equal(1, #core.listdir(dir))
    end)

    it("looks a bare pg_dump up on PATH, in absolute folders only, never in the current folder", function()
      local cwd = H.tmpdir {
        ["pg_dump"] = "#!/bin/sh\ntouch planted-ran\necho 'pg_dump (PostgreSQL) 99.0'\n",
      }
      assert(os.execute("chmod +x " .. H.shell_quote(cwd .. "/pg_dump")))
      local cpath = package.cpath:gsub("[^;]+", function(entry) -- this process's, from another folder
        return entry:sub(1, 1) == "/" and entry or (H.source_dir .. "/" .. entry)
      end)
      local code = "package.cpath = " .. string.format("%q", cpath) .. "\n"
        .. "local core = require 'tide.core'\nprint(core.pg_tool_version('pg_dump'))"
      -- an empty PATH entry and "." both mean the current folder to a shell
      for _, path in ipairs { ":" .. BIN, ".:" .. BIN, BIN .. ":" } do
        local p = assert(io.popen(string.format("cd %s && PATH=%s lua5.4 -e %s 2>&1", H.shell_quote(cwd),
          H.shell_quote(path .. ":/usr/bin:/bin"), H.shell_quote(code))))
        local out = p:read("a")
        p:close()
        assert.matches("pg_dump %(PostgreSQL%) 1%d", out)
        assert.is_nil(H.read(cwd .. "/planted-ran"), "./pg_dump ran with PATH=" .. path)
      end
    end)

    it("range-checks numeric backup options (exit 2, before connecting)", function()
      local db = H.fresh_db()
      for _, c in ipairs { { "part_size = 1024", "part_size" }, { "part_size = 1e30", "part_size" },
        { "multipart_threshold = -1", "multipart_threshold" }, { "max_attempts = 0", "max_attempts" },
        { "max_attempts = 2.5", "max_attempts" }, { "keep = 0", "keep" },
        { "low_speed_limit = 0", "low_speed_limit" } } do
        local proj = project(string.format("{ to = 'file:///tmp/', %s }", c[1]))
        local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj })
        assert.are.equal(2, r.code, r.output)
        assert.matches("tide%.lua: `backup%." .. c[2] .. "` must be a whole number from %d+ to %d+", r.stderr)
      end
      assert.are.same({}, H.applied(db))
    end)

    it("refuses a missing file:// destination folder (exit 7) instead of creating it", function()
      local db = db_from(template.name)
      local before = state(db)
      local missing = H.tmpdir() .. "/missing/dir"
      local r = H.tide({ "upgrade", "--url", db.url, "--backup-to", "file://" .. missing .. "/" },
        { dir = project(string.format("{ pg_bindir = %q }", BIN)) })
      assert_failed_closed(r, db, before, "checking the destination: file://.*/missing/dir/: No such file or "
        .. "directory %(create the folder first: tide creates only each backup's own folder in it%)")
      assert.is_false(core.isdir(missing:match("^(.*)/dir$")))
      r = H.tide({ "backups", "--backup-to", "file://" .. missing .. "/" }, { dir = project("{}") })
      assert.are.equal(7, r.code, r.output)
      assert.matches("No such file or directory", r.stderr)
    end)
  end)

  describe("restore into a database", function()
    local function one_backup()
      local db = db_from(template.name)
      local dir = H.tmpdir()
      local proj = project(string.format("{ to = %q, pg_bindir = %q }", "file://" .. dir .. "/", BIN))
      local r = H.tide({ "backup", "--url", db.url, "--json" }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      return json.decode(r.stdout).id, proj
    end

    it("that does not exist says to create it (exit 3), or creates it with --create", function()
      local id, proj = one_backup()
      local name = "tide_bk_new_" .. (core.random_bytes(3):gsub(".", function(c)
        return string.format("%02x", c:byte())
      end))
      extra_dbs[#extra_dbs + 1] = name
      local r = H.tide({ "restore", id, "--to", H.url(name), "--yes" }, { dir = proj })
      assert.are.equal(3, r.code, r.output)
      assert.matches('the database "' .. name .. '" does not exist on the server of .*: create it first %(createdb, '
        .. "or CREATE DATABASE%), or pass %-%-create to let restore create it", r.stderr)
      assert.are.same({}, H.sql(nil, "SELECT 1 FROM pg_database WHERE datname = $1", name))
      r = H.tide({ "restore", id, "--to", H.url(name), "--yes", "--create" }, { dir = proj })
      assert.are.equal(0, r.code, r.output)
      assert.are.equal(160000, H.sql({ url = H.url(name) }, "SELECT count(*)::int AS n FROM big")[1].n)
    end)

    it("asks on a terminal, and an answer of no exits 2 with nothing changed", function()
      local id, proj = one_backup()
      local target = H.fresh_db()
      local out = os.tmpname()
      -- script(1) gives tide a terminal; the answer comes from the pipe into it
      local cmd = "unset DATABASE_URL; cd " .. H.shell_quote(proj) .. " && printf 'n\\n' | script -qec "
        .. H.shell_quote(H.command { "restore", id, "--to", target.url } .. "; echo exit=$?") .. " /dev/null > "
        .. H.shell_quote(out) .. " 2>&1"
      os.execute(cmd)
      local screen = H.read(out)
      os.remove(out)
      assert.matches("Restore backup " .. lit(id) .. " .*%? %[y/N%]", screen)
      assert.matches("restore cancelled: nothing was changed", screen)
      assert.matches("exit=2", screen)
      assert.are.same({}, H.tables(target))
    end)
  end)
end)
