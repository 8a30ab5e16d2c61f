-- spec/secrets_spec.lua: secrets under an audit. For every secret tide handles (the database
-- password and sslpassword of a URL, AWS keys and session token, a bearer token, a configured
-- header, a proxy's password) the specs grep everything tide leaves where others can look:
-- its output with -v, the command line and environment of every child it starts (read from
-- /proc by wrappers around pg_dump and pg_restore), temporary files, manifests and history
-- rows. Also: PGPASSWORD users, plain http refused, header injection, core dumps.
local H = require "spec.support.helpers"
local core = require "tide.core"
local S3 = require "spec.support.s3"

local BIN = os.getenv("PG_BINDIR") or "/usr/lib/postgresql/15/bin"
local PROXY_USER, PROXY_PW = "proxyuser", "proxy-Pw7-do-not-print"
local TOKEN = "sess-Tok3n-do-not-print"
local APIKEY = "apikey-K3y-do-not-print"

-- A folder with pg_dump and pg_restore that record, for each start, what the kernel shows of
-- them (/proc/PID/cmdline and /proc/PID/environ) and whether the service file tide hands them
-- holds an sslpassword line (not its value), then run the real tool.
local function recording_bindir()
  local dir = H.tmpdir()
  local log = dir .. "/children.log"
  for _, tool in ipairs { "pg_dump", "pg_restore" } do
    H.write(dir .. "/" .. tool, string.format([[#!/bin/sh
{
  printf '== %%s\n' %s
  tr '\0' '\n' < /proc/$$/cmdline
  printf -- '-- environ\n'
  tr '\0' '\n' < /proc/$$/environ
  [ -z "$PGSERVICEFILE" ] || printf -- '-- sslpassword lines: %%s\n' "$(grep -c '^sslpassword=' "$PGSERVICEFILE")"
  [ -z "$PGPASSFILE" ] || printf -- '-- passfile lines: %%s\n' "$(grep -c '^\*:\*:\*:\*:' "$PGPASSFILE")"
} >> %s
exec %s/%s "$@"
]], tool, H.shell_quote(log), BIN, tool))
  end
  assert(os.execute("chmod +x " .. H.shell_quote(dir) .. "/pg_*"))
  return dir, log
end

-- A login role with a password, dropped after the spec.
local function role_with_password()
  local name = "tide_sec_" .. (core.random_bytes(4):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
  local pw = "dbPw-" .. name .. "-do-not-print"
  H.sql(nil, "CREATE ROLE " .. name .. " LOGIN SUPERUSER PASSWORD '" .. pw .. "'")
  finally(function()
    pcall(H.sql, nil, "DROP ROLE IF EXISTS " .. name)
  end)
  return name, pw
end

local function assert_nowhere(text, secrets)
  for what, secret in pairs(secrets) do
    local at = text:find(secret, 1, true)
    assert.is_nil(at, what .. " found: ..." .. (at and text:sub(math.max(1, at - 200), at + 60) or "") .. "...")
  end
end

describe("secrets #db", function()
  setup(function()
    S3.start("--proxy-auth " .. PROXY_USER .. ":" .. PROXY_PW)
  end)

  teardown(function()
    S3.stop()
    H.cleanup()
  end)

  it("never leave tide: not in -v output, children's argv or environment, temp files, manifests, history", function()
    local db, target = H.fresh_db(), H.fresh_db()
    H.sql(db, "CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept VALUES (1), (2);")
    local role, pw = role_with_password()
    local sslpw = "sslPw-" .. role .. "-do-not-print"
    local function url(d)
      return H.url(d.name, role, pw) .. "?sslmode=disable&sslpassword=" .. sslpw
    end
    local bindir, children = recording_bindir()
    local tmp = H.tmpdir()
    local proj = H.project(H.chain(1, "sec"), string.format("return { backup = { to = 's3://backups/sec/', "
      .. "endpoint = %q, pg_bindir = %q, tmp_dir = %q, deadline = 20 } }\n", S3.endpoint, bindir, tmp))
    local env = { AWS_ACCESS_KEY_ID = S3.AK, AWS_SECRET_ACCESS_KEY = S3.SK, AWS_SESSION_TOKEN = TOKEN,
      http_proxy = string.format("http://%s:%s@127.0.0.1:%d", PROXY_USER, PROXY_PW, S3.port) }
    local unset = { "DATABASE_URL", "PGPASSFILE", "PGPASSWORD", "no_proxy", "NO_PROXY" }
    local outputs = {}

    local r = H.tide({ "upgrade", "-v", "--url", url(db) }, { dir = proj, env = env, unset = unset })
    outputs[#outputs + 1] = r.output
    assert.are.equal(0, r.code, r.output)
    -- what the headers were: sent (the stand-in checked them), and hidden in the -v output
    assert.matches("Proxy%-Authorization: %[redacted%]", r.stderr)
    assert.matches("Authorization: %[redacted%]", r.stderr)
    assert.matches("x%-amz%-security%-token: %[redacted%]", r.stderr)
    local proxied = 0
    for _, e in ipairs(S3.journal("/backups/sec/")) do
      proxied = proxied + (e.proxied and 1 or 0)
    end
    assert.truthy(proxied > 0, "the requests went through the proxy")
    local id = H.sql(db, "SELECT DISTINCT backup FROM tide.history")[1].backup:match("([^/]+)/$")

    r = H.tide({ "restore", id, "--to", url(target), "--yes", "-v", "--url", url(db) },
      { dir = proj, env = env, unset = unset })
    outputs[#outputs + 1] = r.output
    assert.are.equal(0, r.code, r.output)
    assert.are.same({ { id = 1 }, { id = 2 } }, H.sql(target, "SELECT id FROM kept ORDER BY id"))

    -- an http destination: a bearer token and a configured header, through the proxy too
    local web = H.project(H.chain(1, "web"), string.format("return { backup = { to = '%s/backups/web/', "
      .. "bearer_token_env = 'BACKUP_TOKEN', headers = { ['X-Api-Key'] = '${APIKEY}' }, pg_bindir = %q, "
      .. "tmp_dir = %q, deadline = 20 } }\n", S3.endpoint, bindir, tmp))
    env.BACKUP_TOKEN, env.APIKEY = S3.BEARER, APIKEY
    r = H.tide({ "backup", "-v", "--url", url(db) }, { dir = web, env = env, unset = unset })
    outputs[#outputs + 1] = r.output
    assert.are.equal(0, r.code, r.output)
    assert.matches("X%-Api%-Key: %[redacted%]", r.stderr)

    -- what the children were given: no secret in argv or the environment, but the password in
    -- a passfile and sslpassword in a service file, both in memory (/dev/fd/N)
    local log = assert(H.read(children))
    assert.matches("== pg_dump", log)
    assert.matches("== pg_restore", log)
    assert.matches("PGPASSFILE=/dev/fd/3", log)
    assert.matches("%-%- passfile lines: 1", log)
    assert.matches("%-%- sslpassword lines: 1", log)
    assert.is_nil(log:find("AWS_", 1, true), "an AWS variable reached a child")
    assert.is_nil(log:find("http_proxy", 1, true), "http_proxy reached a child")
    outputs[#outputs + 1] = log
    -- nothing left in the temporary folder, and nothing of a secret in it meanwhile
    assert.are.same({}, core.listdir(tmp))
    -- the manifests and the history rows
    local d <close> = S3.dest("sec")
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
    assert_nowhere(table.concat(outputs, "\n"), { ["the database password"] = pw, ["sslpassword"] = sslpw,
      ["the AWS secret key"] = S3.SK, ["the session token"] = TOKEN, ["the bearer token"] = S3.BEARER,
      ["the X-Api-Key header"] = APIKEY, ["the proxy's password"] = PROXY_PW, ["a signature"] = "Signature=" })
  end)

  it("reach pg_dump for users of PGPASSWORD (no password in the URL, no passfile)", function()
    local db = H.fresh_db()
    local dir = H.tmpdir()
    local proj = H.project(H.chain(1, "pw"), string.format("return { backup = { to = %q, pg_bindir = %q } }\n",
      "file://" .. dir .. "/", BIN))
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj, env = { PGPASSWORD = H.password() },
      unset = { "DATABASE_URL", "PGPASSFILE" } })
    assert.are.equal(0, r.code, r.output)
    assert.are.same({ "001" }, H.applied(db))
    assert.are.equal(1, #core.listdir(dir))
  end)

  it("refuse to go into a service file beside another service: sslpassword with service= (exit 7)", function()
    local db = H.fresh_db()
    local dir = H.tmpdir()
    local services = H.tmpdir { ["pg_service.conf"] = string.format("[app]\nhost=%s\nport=%s\nuser=%s\ndbname=%s\n",
      os.getenv("PGHOST"), os.getenv("PGPORT"), os.getenv("PGUSER"), db.name) }
    local proj = H.project(H.chain(1, "svc"), string.format("return { backup = { to = %q, pg_bindir = %q } }\n",
      "file://" .. dir .. "/", BIN))
    local sslpw = "sslPw-svc-do-not-print"
    local r = H.tide({ "upgrade", "--url", "service=app sslmode=disable sslpassword=" .. sslpw },
      { dir = proj, env = { PGSERVICEFILE = services .. "/pg_service.conf" } })
    assert.are.equal(7, r.code, r.output)
    assert.matches("backup failed at pg_dump: the connection string's sslpassword reaches pg_dump/pg_restore "
      .. "through a service file, which cannot be combined with service=app: put sslpassword in that service's "
      .. "entry instead", r.stderr)
    assert.is_nil(r.output:find(sslpw, 1, true))
    assert.are.same({}, H.applied(db))
    assert.are.same({}, core.listdir(dir))
  end)

  it("are not sent over plain http to a host that is not loopback, unless allow_plaintext", function()
    local db = H.fresh_db()
    local cases = {
      { "{ to = 'http://backup.example.invalid/db/', bearer_token_env = 'T' }", "bearer token" },
      { "{ to = 'http://backup.example.invalid/db/', headers = { ['X-Api-Key'] = 'k' } }", "headers" },
      { "{ to = 's3://b/p/', endpoint = 'http://minio.example.invalid:9000' }", "AWS credentials" },
    }
    for _, c in ipairs(cases) do
      local proj = H.project(H.chain(1, "pt"), "return { backup = " .. c[1] .. " }\n")
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj, env = { T = "t", AWS_ACCESS_KEY_ID = "a",
        AWS_SECRET_ACCESS_KEY = "s" } })
      assert.are.equal(2, r.code, r.output)
      assert.matches("would travel unencrypted over http://; use https://, or set backup.allow_plaintext = true",
        r.stderr)
      assert.matches(c[2], r.stderr)
      -- with the project's consent the backup is attempted (and fails: the host does not exist)
      proj = H.project(H.chain(1, "pt"), "return { backup = " .. c[1]:gsub(" }$", ", allow_plaintext = true, "
        .. "deadline = 2, max_attempts = 1 }") .. " }\n")
      r = H.tide({ "upgrade", "--url", db.url }, { dir = proj, env = { T = "t", AWS_ACCESS_KEY_ID = "a",
        AWS_SECRET_ACCESS_KEY = "s" } })
      assert.are.equal(7, r.code, r.output)
      assert.matches("backup failed at checking the destination", r.stderr)
    end
    assert.are.same({}, H.applied(db))
  end)

  it("cannot add a header of their own: CR, LF or NUL in a header, or a bad name, is refused", function()
    local db = H.fresh_db()
    local cases = {
      { "['X-Team'] = 'a\\r\\nX-Injected: 1'", "the value of X%-Team holds a line break" },
      { "['X-Team'] = '${TEAM}'", "the value of X%-Team holds a line break", { TEAM = "a\nX-Injected: 1" } },
      { "['X-Team'] = 'a\\0b'", "the value of X%-Team holds a line break or NUL" },
      { "['X Team'] = 'a'", '"X Team" is not a header name' },
      { "['X-Team:\\r\\nX-Injected'] = 'a'", "is not a header name" },
    }
    for _, c in ipairs(cases) do
      local proj = H.project(H.chain(1, "hd"), string.format("return { backup = { to = '%s/backups/hd/', "
        .. "bearer_token_env = 'BACKUP_TOKEN', headers = { %s } } }\n", S3.endpoint, c[1]))
      local env = { BACKUP_TOKEN = S3.BEARER }
      for k, v in pairs(c[3] or {}) do
        env[k] = v
      end
      local r = H.tide({ "upgrade", "--url", db.url }, { dir = proj, env = env })
      assert.are.equal(2, r.code, r.output)
      assert.matches(c[2], r.stderr)
    end
    assert.are.same({}, S3.journal("/backups/hd/"), "nothing was sent")
    assert.are.same({}, H.applied(db))
    -- and the C layer refuses them too, whoever calls it
    for _, header in ipairs { "X-Team: a\r\nX-Injected: 1", "X Team: a", "no colon", "X-Team: a\0b" } do
      local ok, err = pcall(core.destination, { url = S3.endpoint .. "/backups/hd/", headers = { header } })
      assert.is_false(ok)
      assert.matches("header 1", tostring(err.message or err))
    end
  end)

  it("never land in a core file: tide runs with no core dumps", function()
    local db = H.fresh_db()
    local holder <close> = core.connect(db.url, "spec-holder")
    holder:query("SELECT pg_advisory_lock(hashtextextended('tide:tide', 0))")
    local proj = H.project(H.chain(1, "core"))
    -- started with core files allowed, as a shell with `ulimit -c unlimited` would
    local out, code = os.tmpname(), os.tmpname()
    local p = assert(io.popen(string.format("(ulimit -S -c unlimited; cd %s && %s upgrade --lock-wait 20 "
      .. "--url %s >%s 2>&1; echo $? >%s) & echo $!", H.shell_quote(proj), H.shell_quote(H.bin),
      H.shell_quote(db.url), out, code)))
    local pid = tonumber(p:read("l"))
    p:close()
    local limits
    local deadline = core.now() + 10
    while core.now() < deadline and not limits do
      -- once tide waits for the lock (trying pg_try_advisory_lock between pauses), it is well past its start
      local waiting = #H.sql(db, "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        .. "AND query LIKE '%pg_try_advisory_lock%' AND pid <> pg_backend_pid()") > 0
      for _, child in ipairs(waiting and H.tide_pids(pid) or {}) do
        limits = H.read("/proc/" .. child .. "/limits")
      end
      core.sleep(0.05)
    end
    holder:close()
    while core.now() < deadline + 20 and not (H.read(code) or ""):match("%d") do
      core.sleep(0.05)
    end
    assert.are.equal("0", (H.read(code) or ""):match("%d+"), H.read(out))
    os.remove(out)
    os.remove(code)
    assert.is_string(limits, "did not find the running tide")
    assert.matches("Max core file size +0 +0 ", limits)
  end)
end)
