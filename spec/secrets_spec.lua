-- spec/secrets_spec.lua: secrets under an audit. For every secret tide handles (the database
-- password and sslpassword of a URL, AWS keys and session token, a bearer token, a configured
-- header, a proxy's password) the specs grep everything tide leaves where others can look:
-- its output with -v, the command line and environment of every child it starts (read from
-- /proc by wrappers around pg_dump and pg_restore), temporary files, manifests and history
-- rows. Also: PGPASSWORD users, plain http refused, header injection, core dumps.
local H = require "spec.support.helpers"
local core = require "tide.core"

local BIN = os.getenv("PG_BINDIR") or "/usr/lib/postgresql/15/bin"

describe("secrets #db", function()
  teardown(function()
    H.cleanup()
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
      -- once tide waits for the lock, it is well past its start
      local waiting = #H.sql(db, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") > 0
      for _, child in ipairs(waiting and H.descendants(pid) or {}) do
        local exe = io.popen("readlink /proc/" .. child .. "/exe 2>/dev/null")
        if exe:read("l") == H.bin then
          limits = H.read("/proc/" .. child .. "/limits")
        end
        exe:close()
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
