-- spec/session_spec.lua: tide.session (lua/tide/session.lua), the one place tide opens
-- connections and the object a run holds its connection and migration lock in; and the
-- runner taking the pre-migration hook as an argument (tide.runner.migrate's opts).
local H = require "spec.support.helpers"
local config = require "tide.config"
local log = require "tide.log"
local revisions = require "tide.revisions"
local runner = require "tide.runner"
local session = require "tide.session"

-- The Lua files of the library, path -> text.
local function library()
  local files = {}
  local p = assert(io.popen("cd " .. H.shell_quote(H.source_dir) .. " && ls lua/tide/*.lua lua/tide/*/*.lua"))
  for path in p:lines() do
    files[path] = H.read(H.source_dir .. "/" .. path)
  end
  p:close()
  return files
end

-- Is the migration lock of tracking schema `schema` free? Asked from a connection of its own,
-- which takes the lock and gives it back at once.
local function lock_free(db, schema)
  local conn <close> = H.connect(db)
  local got = conn:query("SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended('tide:' || $1, 0)) "
    .. "AS ok", schema or "tide")[1].ok
  if got then
    conn:query("SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended('tide:' || $1, 0))",
      schema or "tide")
  end
  return got
end

describe("tide.session", function()
  it("is the only module of the library that calls core.connect", function()
    for path, text in pairs(library()) do
      if path ~= "lua/tide/session.lua" then
        assert.is_nil(text:find("core%.connect%s*[%(,]"), path .. " calls core.connect")
      end
    end
  end)

  it("leaves the pre-migration hook to the runner's arguments: no module reads it from a shared ctx", function()
    for path, text in pairs(library()) do
      assert.is_nil(text:find("ctx%.before_migrate"), path .. " uses ctx.before_migrate")
    end
  end)

  it("says why it cannot connect in one wording, naming the redacted URL and where it came from", function()
    local url = string.format("postgresql://x:s3cret@127.0.0.1:%d/x", H.closed_port())
    local err = H.error_of(session.connect, { url = url, url_source = "--to" })
    assert.are.equal("connect", err.kind)
    assert.matches("^cannot connect to postgresql://x:%*%*%*%*@127%.0%.0%.1:%d+/x %(from %-%-to%): .+", err.message)
    assert.is_nil(err.message:find("s3cret", 1, true))
    assert.are.equal("string", type(err.cause))
    assert.truthy(err.message:find(err.cause, 1, true))
  end)

  describe("#db", function()
    local db, cfg
    before_each(function()
      db = H.fresh_db()
      cfg = config.load { dir = H.project(H.chain(2)), url = db.url }
    end)

    it("holds the migration lock from lock() until it is closed, by <close> however the block ends", function()
      assert.is_true(lock_free(db))
      local ok = pcall(function()
        local s <close> = session.open(cfg)
        s:lock()
        assert.is_false(lock_free(db))
        assert.are.equal(cfg.search_path, s.conn:query("SELECT current_setting('search_path') AS p")[1].p)
        error("the block ends with an error")
      end)
      assert.is_false(ok)
      assert.is_true(lock_free(db))
      local s = session.open(cfg, { setup = false })
      s:lock()
      s:close()
      s:close() -- closing twice does nothing
      assert.is_true(lock_free(db))
    end)

    it("gives the runner's hook, an argument of migrate, the plan with the lock held; its answer goes to history",
      function()
        local graph = revisions.load(cfg.versions_dir)
        local level = log.level
        log.level = 0
        local calls = {}
        local function hook(info)
          calls[#calls + 1] = { lock_free = lock_free(db), plan = #info.plan, direction = info.direction,
            target = info.target, run = info.run.id }
          return "backup-ref-1"
        end
        local result = runner.migrate(cfg, graph, "upgrade", "head", { before_migrate = hook })
        local again = runner.migrate(cfg, graph, "upgrade", "head", { before_migrate = hook })
        log.level = level
        assert.are.same({ { lock_free = false, plan = 2, direction = "upgrade", target = "head",
          run = result.run_id } }, calls)
        assert.is_true(again.nothing_to_do) -- nothing pending: the hook is not called
        local rows = H.sql(db, "SELECT revision, backup FROM tide.history ORDER BY id")
        assert.are.same({ { revision = "001", backup = "backup-ref-1" },
          { revision = "002", backup = "backup-ref-1" } }, rows)
        assert.is_true(lock_free(db))
      end)
  end)
end)
