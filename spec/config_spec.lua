-- spec/config_spec.lua: tide.config (lua/tide/config.lua). Durations: one parser for every
-- duration tide reads (flags, tide.lua, revision keys, backup settings), a bare number meaning
-- seconds everywhere, refused before tide connects when it is not a duration; and what the
-- server receives for each of them.
local H = require "spec.support.helpers"
local backup = require "tide.backup"
local config = require "tide.config"

describe("tide.config", function()
  describe("duration()", function()
    it("reads a number or a bare number as seconds", function()
      assert.are.equal(5000, config.duration(5))
      assert.are.equal(5000, config.duration("5"))
      assert.are.equal(500, config.duration(0.5))
      assert.are.equal(500, config.duration("0.5"))
      assert.are.equal(0, config.duration("0"))
      assert.are.equal(0, config.duration(0))
    end)

    it("reads ms, s, min and h, with or without a space, and fractions of them", function()
      assert.are.equal(250, config.duration("250ms"))
      assert.are.equal(2000, config.duration("2s"))
      assert.are.equal(1500, config.duration("1.5s"))
      assert.are.equal(300000, config.duration("5min"))
      assert.are.equal(90000, config.duration("1.5 min"))
      assert.are.equal(7200000, config.duration(" 2h "))
      assert.are.equal(1, config.duration("0.6ms"))
    end)

    it("returns whole milliseconds as an integer", function()
      assert.are.equal("integer", math.type(config.duration("1.25s")))
      assert.are.equal("integer", math.type(config.duration(2)))
    end)

    for _, case in ipairs {
      { "5x", "unknown unit `x`: use ms, s, min or h" },
      { "5m", "`m` is ambiguous: write `min` for minutes or `ms` for milliseconds" },
      { "5 sec", "unknown unit `sec`" },
      { "soon", "not a duration" },
      { "", "not a duration" },
      { "1e3", "not a duration" },
      { "0x10", "not a duration" },
      { "1.2.3s", "not a duration" },
      { "-1", "cannot be negative" },
      { -1, "cannot be negative" },
      { 0 / 0, "cannot be negative" },
      { "99999999", "longer than PostgreSQL's limit for a timeout, 2147483647ms" },
      { math.huge, "longer than PostgreSQL's limit" },
      { "0.1ms", "shorter than a millisecond" },
      { true, "must be a number of seconds or a string" },
    } do
      it("refuses " .. string.format("%q", tostring(case[1])) .. ", saying why", function()
        local ms, why = config.duration(case[1])
        assert.is_nil(ms)
        assert.truthy(why:find(case[2], 1, true), why)
      end)
    end

    it("accepts PostgreSQL's limit and nothing above it", function()
      assert.are.equal(2147483647, config.duration("2147483647ms"))
      assert.is_nil(config.duration("2147483648ms"))
    end)
  end)

  describe("pg_duration() and format_duration()", function()
    it("sends PostgreSQL whole milliseconds with their unit", function()
      assert.are.equal("5000ms", config.pg_duration(config.duration(5)))
      assert.are.equal("0ms", config.pg_duration(config.duration("0")))
    end)

    it("writes a duration for people in the largest unit that reads well", function()
      assert.are.equal("500ms", config.format_duration(500))
      assert.are.equal("2s", config.format_duration(2000))
      assert.are.equal("1.5s", config.format_duration(1500))
      assert.are.equal("1234ms", config.format_duration(1234))
      assert.are.equal("5min", config.format_duration(300000))
      assert.are.equal("2h", config.format_duration(7200000))
      assert.are.equal("0ms", config.format_duration(0))
    end)
  end)

  describe("backup durations", function()
    it("become seconds for the transfer, whole seconds for libcurl, and milliseconds for pg_dump", function()
      local s = backup.settings({ backup = { to = "file:///tmp/x/", deadline = "2min", low_speed_time = "1.5s",
        connect_timeout = 3, backoff_base = "250ms", lock_wait_timeout = 45 } }, {})
      assert.are.equal(120, s.deadline)
      assert.are.equal(2, s.low_speed_time)
      assert.are.equal(3, s.connect_timeout)
      assert.are.equal(0.25, s.backoff_base)
      assert.are.equal("45000ms", s.lock_wait_timeout)
    end)

    it("refuses a duration that is not one, or 0 where 0 would silently mean the default", function()
      for _, case in ipairs {
        { { deadline = "5x" }, "`backup.deadline` \"5x\": unknown unit `x`" },
        { { low_speed_time = 0 }, "`backup.low_speed_time` 0: must be more than 0" },
        { { lock_wait_timeout = "soon" }, "`backup.lock_wait_timeout` \"soon\": not a duration" },
      } do
        case[1].to = "file:///tmp/x/"
        local err = H.error_of(backup.settings, { backup = case[1] }, {})
        assert.are.equal("config", err.kind)
        assert.truthy(err.message:find(case[2], 1, true), err.message)
      end
      assert.are.equal("0ms", backup.settings({ backup = { to = "file:///tmp/x/", lock_wait_timeout = 0 } },
        {}).lock_wait_timeout)
    end)
  end)

  describe("check_duration()", function()
    it("gives whole milliseconds, or raises naming where the value came from and why", function()
      assert.are.equal(1500, config.check_duration("1.5s", "--lock-wait"))
      assert.are.equal(0, config.check_duration(0, "--lock-wait"))
      local err = H.error_of(config.check_duration, "-1", "--lock-wait", { kind = "usage" })
      assert.are.same({ "usage", '--lock-wait "-1": a duration cannot be negative' }, { err.kind, err.message })
      err = H.error_of(config.check_duration, 0, "tide.lua: `backup.deadline`", { positive = true })
      assert.are.same({ "config", "tide.lua: `backup.deadline` 0: must be more than 0" }, { err.kind, err.message })
      err = H.error_of(config.check_duration, 3e6, "tide.lua: `lock_wait`")
      assert.are.equal("tide.lua: `lock_wait` 3000000.0: longer than PostgreSQL's limit for a timeout, "
        .. "2147483647ms (about 24.8 days)", err.message)
    end)

    it("is what a run's lock_wait and timeouts go through, from a flag or from tide.lua", function()
      local err = H.error_of(config.load, { dir = H.project({}, "return { lock_timeout = '5x' }"), lock_wait = "-1" })
      assert.are.same({ "usage", '--lock-wait "-1": a duration cannot be negative' }, { err.kind, err.message })
      err = H.error_of(config.load, { dir = H.project({}, "return { lock_timeout = '5x' }") })
      assert.are.equal("config", err.kind)
      assert.matches("tide%.lua: `lock_timeout` \"5x\": unknown unit `x`", err.message)
      H.cleanup()
    end)
  end)

  describe("check_keys()", function()
    local allowed = { to = "string", keep = "number", deadline = "duration", verify = "boolean" }

    it("accepts known keys of their type and returns the table", function()
      local t = { to = "s3://b/", keep = 3, deadline = "5s", verify = true }
      assert.are.equal(t, config.check_keys(t, allowed, "tide.lua", "backup"))
      assert.are.same({}, config.check_keys({}, allowed, "tide.lua"))
    end)

    it("refuses an unknown key in one wording, the section in the key's name, with a suggestion", function()
      for _, case in ipairs {
        { { kep = 1 }, "backup", "tide.lua: unknown key `backup.kep` (did you mean `keep`?)" },
        { { kep = 1 }, nil, "tide.lua: unknown key `kep` (did you mean `keep`?)" },
        { { zzzzzz = 1 }, "lint", "tide.lua: unknown key `lint.zzzzzz`" },
        { { keep = "3" }, "backup", "tide.lua: `backup.keep` must be a number, got string" },
        { { deadline = {} }, "backup", "tide.lua: `backup.deadline` must be a duration (seconds, or a string "
          .. "such as \"5s\"), got table" },
      } do
        local err = H.error_of(config.check_keys, case[1], allowed, "tide.lua", case[2])
        assert.are.same({ "config", case[3] }, { err.kind, err.message })
      end
    end)

    it("is the wording of every section of tide.lua", function()
      for _, case in ipairs {
        { "return { urll = 'x' }", "unknown key `urll` (did you mean `url`?)" },
        { "return { lint = { require_rsl = true } }", "unknown key `lint.require_rsl` (did you mean `require_rls`?)" },
        { "return { lint = { require_rls = 1 } }", "`lint.require_rls` must be a boolean, got number" },
      } do
        local err = H.error_of(config.load, { dir = H.project({}, case[1]) })
        assert.are.equal("config", err.kind)
        assert.are.equal(case[2], err.message:match("tide%.lua: (.*)$"))
      end
      local err = H.error_of(backup.settings, { backup = { to = "file:///tmp/x/", kep = 1 } }, {})
      assert.are.equal("tide.lua: unknown key `backup.kep` (did you mean `keep`?)", err.message)
      H.cleanup()
    end)
  end)
end)

describe("durations on the server #db", function()
  local db

  before_each(function()
    db = H.fresh_db()
  end)

  after_each(H.cleanup)

  -- A revision that records the lock_timeout and statement_timeout it ran under.
  local function seen_project(extra, tide_lua)
    return H.project({
      ["001_seen.lua"] = string.format([[
return {
  revision = "001",
  message = "record the timeouts",%s
  upgrade = function(db)
    db:exec("CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS lt, "
      .. "current_setting('statement_timeout') AS st")
  end,
}
]], extra and ("\n  " .. extra) or ""),
    }, tide_lua)
  end

  local function seen()
    return H.sql(db, "SELECT lt, st FROM seen")[1]
  end

  -- Before: `--lock-timeout 5` reached the server as 5 milliseconds.
  it("reads a bare --lock-timeout as seconds", function()
    local r = H.tide({ "upgrade", "--lock-timeout", "5", "--url", db.url }, { dir = seen_project() })
    assert.are.equal(0, r.code, r.output)
    assert.are.same({ lt = "5s", st = "0" }, seen())
  end)

  it("reads tide.lua's bare numbers as seconds too, and its units", function()
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = seen_project(nil,
      "return { lock_timeout = 3, statement_timeout = \"1.5min\", lock_wait = \"2s\" }\n") })
    assert.are.equal(0, r.code, r.output)
    assert.are.same({ lt = "3s", st = "90s" }, seen())
  end)

  it("reads a revision's own durations, numbers included", function()
    local dir = seen_project('lock_timeout = 2, statement_timeout = "250ms",')
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.are.equal(0, r.code, r.output)
    assert.are.same({ lt = "2s", st = "250ms" }, seen())
  end)

  -- Before: accepted, then a revision failure (exit 6) with a failed history row.
  it("refuses a --lock-timeout that is not a duration with exit 2, before connecting", function()
    local r = H.tide({ "upgrade", "--lock-timeout", "5x", "--url", db.url }, { dir = seen_project() })
    assert.are.equal(2, r.code, r.output)
    assert.matches('tide: %-%-lock%-timeout "5x": unknown unit `x`', r.stderr)
    assert.is_false(H.exists(db, "tide.history"))
    -- a server that is not there proves nothing was tried
    r = H.tide({ "upgrade", "--lock-timeout", "5x", "--url", "postgresql://x@127.0.0.1:" .. H.closed_port() .. "/x" },
      { dir = seen_project() })
    assert.are.equal(2, r.code, r.output)
  end)

  it("refuses a --lock-wait or tide.lua duration that is not one with exit 2", function()
    local r = H.tide({ "upgrade", "--lock-wait", "1m", "--url", db.url }, { dir = seen_project() })
    assert.are.equal(2, r.code, r.output)
    assert.matches("`m` is ambiguous", r.stderr)
    local dir = seen_project(nil, 'return { statement_timeout = "10 secs" }\n')
    r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.are.equal(2, r.code, r.output)
    assert.matches('tide.lua: `statement_timeout` "10 secs": unknown unit `secs`', r.stderr)
    assert.is_false(H.exists(db, "tide.history"))
  end)

  it("refuses a revision's bad duration as a load error (exit 5) naming file and line", function()
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = seen_project('\n  lock_timeout = "2 hours",') })
    assert.are.equal(5, r.code, r.output)
    assert.matches('versions/001_seen.lua:5: lock_timeout "2 hours": unknown unit `hours`', r.stderr)
    assert.is_false(H.exists(db, "tide.history"))
  end)

  it("writes whole milliseconds into an --sql script", function()
    local r = H.tide({ "upgrade", "--sql", "--lock-timeout", "1.5", "--url", db.url }, { dir = seen_project() })
    assert.are.equal(0, r.code, r.output)
    assert.truthy(r.stdout:find("SET LOCAL lock_timeout = '1500ms'; SET LOCAL statement_timeout = '0ms'", 1, true),
      r.stdout)
  end)
end)
