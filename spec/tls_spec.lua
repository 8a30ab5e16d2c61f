-- TLS: backup destinations are always verified. Against the S3 stand-in serving HTTPS with a
-- self-signed certificate for 127.0.0.1, an upload works with that certificate as `ca_file` and
-- fails closed without it: tide never falls back to an unverified connection.
local H = require "spec.support.helpers"
local core = require "tide.core"

local AK, SK = "AKIDTLS", "tls-secret-key"

describe("TLS to backup destinations #db", function()
  local dir, server, port, cert

  setup(function()
    dir = H.tmpdir()
    cert = dir .. "/cert.pem"
    assert(os.execute(string.format("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 1 "
      .. "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
      H.shell_quote(dir .. "/key.pem"), H.shell_quote(cert))), "openssl could not make a certificate")
    local p = assert(io.popen(string.format("python3 %s/spec/support/fake_s3.py --port 0 --bucket backups "
      .. "--access-key %s --secret-key %s --dir %s --tls-cert %s --tls-key %s --max-seconds 300 >%s/port 2>%s/log "
      .. "& echo $!", H.shell_quote(H.source_dir), AK, SK, H.shell_quote(dir .. "/data"), H.shell_quote(cert),
      H.shell_quote(dir .. "/key.pem"), H.shell_quote(dir), H.shell_quote(dir)), "r"))
    server = tonumber(p:read("l"))
    p:close()
    local deadline = core.now() + 10
    while not port and core.now() < deadline do
      port = tonumber((H.read(dir .. "/port") or ""):match("PORT (%d+)"))
      core.sleep(0.05)
    end
    assert(port, "fake_s3.py did not start: " .. tostring(H.read(dir .. "/log")))
  end)

  teardown(function()
    if server then
      os.execute("kill " .. server)
    end
    H.cleanup()
  end)

  local function destination(ca_file)
    return core.destination { url = "s3://backups/tls/", endpoint = "https://127.0.0.1:" .. port,
      access_key_id = AK, secret_access_key = SK, region = "us-east-1", ca_file = ca_file, deadline = 5,
      max_attempts = 1 }
  end

  it("uploads and reads back over HTTPS when the certificate is trusted", function()
    local d <close> = destination(cert)
    d:put_string("hello.txt", "over tls")
    assert.are.equal("over tls", d:get_string("hello.txt"))
  end)

  it("refuses a certificate it cannot verify, and never retries without verification", function()
    local d <close> = destination(nil)
    local ok, err = pcall(d.put_string, d, "refused.txt", "must not arrive")
    assert.is_false(ok)
    assert.matches("certificate", tostring(err.message or err))
    local trusted <close> = destination(cert)
    assert.is_nil(trusted:head("refused.txt"))
  end)

  it("takes a backup before migrating over HTTPS, and fails closed (exit 7) without the CA file", function()
    local db = H.fresh_db()
    local revs = H.chain(2)
    local env = { AWS_ACCESS_KEY_ID = AK, AWS_SECRET_ACCESS_KEY = SK, AWS_REGION = "us-east-1" }
    local function project(ca)
      return H.project(revs, string.format("return { backup = { to = 's3://backups/run/', endpoint = %q, "
        .. "deadline = 10, max_attempts = 2%s } }\n", "https://127.0.0.1:" .. port,
        ca and string.format(", ca_file = %q", ca) or ""))
    end
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = project(nil), env = env })
    assert.are.equal(7, r.code, r.output)
    assert.matches("backup failed at", r.stderr)
    assert.are.same({}, H.applied(db))
    r = H.tide({ "upgrade", "--url", db.url }, { dir = project(cert), env = env })
    assert.are.equal(0, r.code, r.output)
    assert.are.same({ "001", "002" }, H.applied(db))
    local backup = H.sql(db, "SELECT backup FROM tide.history WHERE outcome = 'applied' LIMIT 1")[1].backup
    assert.matches("^s3://backups/run/", backup)
  end)
end)
