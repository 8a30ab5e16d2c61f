-- spec/errors_spec.lua: tide.errors, the one error policy of the Lua side: one normaliser (used
-- by the host, the CLI and the runner), errors located at the caller's line, and the one "did
-- you mean". Pure: no database.
local core = require "tide.core"
local errors = require "tide.errors"

describe("tide.errors", function()
  describe("normalize()", function()
    it("returns a tide.Error as it is", function()
      local err = core.error("lock", "migration lock busy", { sqlstate = "55P03" })
      assert.are.equal(err, errors.normalize(err, "run"))
      assert.are.equal("lock", err.kind)
    end)

    it("makes a string a tide.Error of the kind given, internal by default", function()
      local err = errors.normalize("x.lua:3: boom")
      assert.are.equal(core.Error, getmetatable(err))
      assert.are.same({ "internal", "x.lua:3: boom" }, { err.kind, err.message })
      assert.are.equal("run", errors.normalize("boom", "run").kind)
    end)

    it("describes a foreign table by its message, or as JSON", function()
      assert.are.equal("mine", errors.normalize({ message = "mine", code = 7 }, "run").message)
      assert.are.equal('error object {"code":7}', errors.normalize({ code = 7 }, "run").message)
    end)

    it("cuts a long message at the echo limit", function()
      local err = errors.normalize(("x"):rep(core.echo_limit + 10))
      assert.are.equal(("x"):rep(core.echo_limit) .. " ... [cut, 10 bytes]", err.message)
    end)
  end)

  describe("protect() and handler()", function()
    it("return fn's results when it returns", function()
      assert.are.same({ true, 1, 2 }, { errors.protect(function(a, b)
        return a, b
      end, 1, 2) })
    end)

    it("leave a tide.Error with the traceback of where it was raised", function()
      local function deep()
        error("plain text", 0)
      end
      local ok, err = errors.protect(deep)
      assert.is_false(ok)
      assert.are.equal(core.Error, getmetatable(err))
      assert.are.same({ "internal", "plain text" }, { err.kind, err.message })
      assert.matches("^\nstack traceback:", err.traceback)
      assert.matches("errors_spec%.lua:%d+: in ", err.traceback)
      local ran, run_err = xpcall(deep, errors.handler("run"))
      assert.is_false(ran)
      assert.are.equal("run", run_err.kind)
    end)

    it("keep the kind of a tide.Error and a traceback it already has", function()
      local raised = core.error("config", "tide.lua: bad", { traceback = "\nearlier" })
      local _, err = errors.protect(error, raised, 0)
      assert.are.equal(raised, err)
      assert.are.same({ "config", "\nearlier" }, { err.kind, err.traceback })
    end)
  end)

  describe("raise_at()", function()
    it("locates the message as error(message, level) does, in a tide.Error", function()
      local function api(level)
        errors.raise_at(level, "run", "db:exec(sql): sql must be a string", { query = "x" })
      end
      local line
      local ok, err = pcall(function()
        line = debug.getinfo(1, "l").currentline + 1
        api(2) -- the line named
      end)
      assert.is_false(ok)
      assert.are.equal(core.Error, getmetatable(err))
      assert.are.same({ "run", "x" }, { err.kind, err.query })
      assert.are.equal("spec/errors_spec.lua:" .. line .. ": db:exec(sql): sql must be a string",
        err.message:gsub("^.-spec/", "spec/"))
      local _, plain = pcall(function()
        error("db:exec(sql): sql must be a string", 1)
      end)
      local _, ours = pcall(function()
        errors.raise_at(1, "run", "db:exec(sql): sql must be a string")
      end)
      assert.are.equal(plain:gsub(":%d+:", ":N:"), ours.message:gsub(":%d+:", ":N:"))
    end)

    it("names no place when the caller is C (pcall)", function()
      local function api()
        errors.raise_at(2, "run", "bare")
      end
      local ok, err = pcall(api)
      assert.is_false(ok)
      assert.are.equal("bare", err.message)
    end)
  end)

  describe("suggest()", function()
    it("finds a typo: a substitution, an insertion, a transposition, a word cut short", function()
      local commands = { "upgrade", "downgrade", "status", "history" }
      assert.are.equal("upgrade", errors.suggest("upgade", commands))
      assert.are.equal("status", errors.suggest("stauts", commands))
      assert.are.equal("history", errors.suggest("hist", commands))
      assert.are.equal("setup", errors.suggest("setpu", { "revision", "checks", "setup" }))
      assert.are.equal("001", errors.suggest("01", { "001", "002" }))
    end)

    it("suggests nothing far from every candidate: at most one edit per three letters", function()
      assert.is_nil(errors.suggest("+1", { "001", "002" }))
      assert.is_nil(errors.suggest("frobnicate", { "upgrade", "downgrade" }))
      assert.is_nil(errors.suggest("usr", { "url" .. "x", "schema" })) -- 2 edits for 3 letters
      assert.is_nil(errors.suggest(("x"):rep(300), { "x" }))
    end)

    it("gives ties to the first candidate, so callers put common words first", function()
      assert.are.equal("ccc3", errors.suggest("ccc4", { "ccc3", "ccc1" }))
      assert.are.equal("ccc1", errors.suggest("ccc4", { "ccc1", "ccc3" }))
    end)

    it("is what did_you_mean() and the DSL say", function()
      assert.are.equal(" (did you mean `url`?)", errors.did_you_mean("urll", { "schema", "url" }))
      assert.are.equal("", errors.did_you_mean("zzzz", { "schema", "url" }))
      local dsl = require "tide.dsl"
      assert.are.equal("did you mean `where`?", dsl.hint("were", { "unique", "where" }))
    end)
  end)
end)
