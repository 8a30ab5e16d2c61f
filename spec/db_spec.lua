-- spec/db_spec.lua: tide.db's reading of SQL text (pure, no database): where statements end and
-- which words start them, the basis of sending a transaction = false revision's statements one
-- at a time and of refusing a statement that would end a transactional revision's transaction.
-- What the runner does with it against the server is in spec/runner_spec.lua.
local H = require "spec.support.helpers"
local dbmod = require "tide.db"

-- "text|WORDS" for each statement
local function split(text)
  local out = {}
  for _, st in ipairs(dbmod.statements(text)) do
    out[#out + 1] = text:sub(st.first, st.last):gsub("%s+$", "") .. "|" .. table.concat(st.words, " ")
  end
  return out
end

describe("tide.db", function()
  describe("statements()", function()
    it("splits at semicolons and gives each statement's first words in upper case", function()
      assert.are.same({ "CREATE TABLE a (id int)|CREATE TABLE A", "rollback|ROLLBACK", "select 1|SELECT" },
        split("CREATE TABLE a (id int); rollback ;\n\n select 1;"))
    end)

    it("leaves out empty statements", function()
      assert.are.same({}, split(" ;; ;\n"))
      assert.are.same({ "select 1|SELECT" }, split(";;select 1;;"))
    end)

    it("does not split inside strings, quoted names, dollar quotes or comments; statements start at a word", function()
      assert.are.same({ "select 'a;b', 'c''d;e'|SELECT", 'select "x;""y"|SELECT', "select $$;$$, $f$ $$; $f$|SELECT",
        "select 2|SELECT" },
        split("select 'a;b', 'c''d;e'; select \"x;\"\"y\"; select $$;$$, $f$ $$; $f$; "
          .. "-- c; d\n/* e; /* nested; */ f; */ select 2"))
    end)

    it("reads backslash escapes in E'' strings only", function()
      assert.are.same({ "select E'a\\'; b'|SELECT E", "commit|COMMIT" }, split("select E'a\\'; b'; commit"))
      assert.are.same({ "select 'a\\'|SELECT", "b'|B" }, split("select 'a\\'; b'"))
    end)

    it("tells a dollar quote from a parameter and from a $ inside a name", function()
      assert.are.same({ "select $1, a$b$c|SELECT", "abort|ABORT" }, split("select $1, a$b$c; abort"))
    end)

    it("keeps the statements of a rule's action and of a BEGIN ATOMIC body inside their statement", function()
      assert.are.same({ "CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b)|CREATE RULE R AS", "end|END" },
        split("CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b); end"))
      assert.are.same({
        "create or replace function f() returns int language sql begin atomic select 1; "
          .. "select case when true then 2 end; end|CREATE OR REPLACE FUNCTION", "commit|COMMIT" },
        split("create or replace function f() returns int language sql begin atomic select 1; "
          .. "select case when true then 2 end; end; commit"))
    end)

    it("runs to the end of the text when a quote or comment is not closed", function()
      assert.are.same({ "select 'x; commit|SELECT" }, split("select 'x; commit"))
      assert.are.same({ "select 1 /* ; commit|SELECT" }, split("select 1 /* ; commit"))
    end)

    it("reads a 50 MB literal without copying it", function()
      local big = "select '" .. string.rep("x", 50 * 1024 * 1024) .. "'; commit"
      collectgarbage()
      local before = collectgarbage("count")
      local list = dbmod.statements(big)
      assert.are.equal(2, #list)
      assert.are.same({ "COMMIT" }, list[2].words)
      local grown = collectgarbage("count") - before
      assert.is_true(grown < 1024, "allocated " .. grown .. " KB")
    end)
  end)

  describe("refuse_transaction_end()", function()
    local function refused(text)
      local ok, err = pcall(dbmod.refuse_transaction_end, text)
      return not ok and err.message:match("^(.-) would end") or nil
    end

    it("refuses COMMIT, END, ROLLBACK, ABORT and PREPARE TRANSACTION, with AND CHAIN too", function()
      assert.are.equal("COMMIT", refused("commit"))
      assert.are.equal("COMMIT", refused("create table a (id int); COMMIT AND CHAIN"))
      assert.are.equal("END", refused("select 1; end transaction"))
      assert.are.equal("ROLLBACK", refused("select 1; rollback work"))
      assert.are.equal("ROLLBACK", refused("select 1; ROLLBACK AND CHAIN"))
      assert.are.equal("ABORT", refused("abort"))
      assert.are.equal("PREPARE TRANSACTION", refused("prepare transaction 'x'"))
      assert.are.equal("COMMIT", refused("commit prepared 'x'"))
    end)

    it("lets ROLLBACK TO a savepoint, BEGIN and a statement prepared under the name transaction through", function()
      assert.is_nil(refused("savepoint s; rollback to savepoint s; rollback work to s; rollback transaction to s"))
      assert.is_nil(refused("begin"))
      assert.is_nil(refused("prepare transaction as select 1; prepare transaction(int) as select $1"))
    end)

    it("names the statement it refuses, cut to the echo limit", function()
      local err = H.error_of(dbmod.refuse_transaction_end, "select 1;  COMMIT  ; select 2")
      assert.are.equal("COMMIT  ", err.query)
      assert.are.equal("transaction", err.refused)
    end)
  end)
end)
