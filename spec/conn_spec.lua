-- spec/conn_spec.lua: tide.Conn (engine/conn.c) through `require "tide.core"`: connecting,
-- exec and query, type conversion, tide.Error objects, notices and the userdata's lifetime.
local H = require "spec.support.helpers"
local core = require "tide.core"

local raises = H.error_of

-- How many server sessions have this pid, after giving a closed one a second to leave.
local function sessions_of(pid)
  local rows = H.sql(nil, "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1", pid)
  for _ = 1, 50 do
    if rows[1].n == 0 then
      break
    end
    core.sleep(0.02)
    rows = H.sql(nil, "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1", pid)
  end
  return rows[1].n
end

describe("tide.Conn #db", function()
  local db

  lazy_setup(function()
    db = H.fresh_db()
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  describe("core.connect()", function()
    it("connects and reports the session", function()
      local conn <close> = core.connect(db.url)
      local info = conn:info()
      assert.are.equal(db.name, info.dbname)
      assert.are.equal(os.getenv("PGUSER"), info.user)
      assert.is_true(info.pid > 0)
      assert.is_true(info.server_version >= 100000)
      assert.are.equal("idle", info.transaction)
      assert.is_false(conn:closed())
    end)

    it("reports the transaction status libpq saw at the end of the last command", function()
      local conn <close> = core.connect(db.url)
      assert.are.equal("idle", conn:transaction_status())
      conn:exec("BEGIN")
      assert.are.equal("intrans", conn:transaction_status())
      pcall(conn.exec, conn, "SELECT 1/0")
      assert.are.equal("inerror", conn:transaction_status())
      conn:exec("ROLLBACK")
      assert.are.equal("idle", conn:transaction_status())
      conn:exec("BEGIN; SELECT 1; COMMIT")
      assert.are.equal("idle", conn:transaction_status())
      conn:exec("BEGIN; SELECT 1; COMMIT AND CHAIN")
      assert.are.equal("intrans", conn:info().transaction)
    end)

    it("uses `tide` as the fallback application_name", function()
      local conn <close> = core.connect(db.url)
      assert.are.equal("tide", conn:query("SELECT current_setting('application_name') AS a")[1].a)
    end)

    it("lets the URL's application_name win over the fallback", function()
      local conn <close> = core.connect(db.url .. "?application_name=mine")
      assert.are.equal("mine", conn:query("SELECT current_setting('application_name') AS a")[1].a)
    end)

    it("names a wrong password as the failure and does not repeat the password", function()
      local secret = "Wr0ngPassw0rd-xyzzy"
      local err = raises(core.connect, H.url(db.name, os.getenv("PGUSER"), secret))
      assert.is_true(getmetatable(err) == core.Error)
      assert.are.equal("connect", err.kind)
      assert.matches("password authentication failed", err.message)
      assert.is_nil(tostring(err):find(secret, 1, true))
      assert.is_nil(err.message:find(secret, 1, true))
    end)

    it("names the host and port when the server is down", function()
      local port = H.closed_port()
      local err = raises(core.connect, string.format("postgresql://x@127.0.0.1:%d/db", port))
      assert.are.equal("connect", err.kind)
      assert.truthy(err.message:find(tostring(port), 1, true), err.message)
      assert.matches("refused", err.message)
      assert.are.equal("08006", err.sqlstate)
    end)

    it("reports an unknown database", function()
      local err = raises(core.connect, H.url("tide_spec_no_such_db"))
      assert.matches("tide_spec_no_such_db", err.message)
      assert.matches("does not exist", err.message)
    end)
  end)

  describe("conn:exec()", function()
    it("runs several statements in one call", function()
      local conn <close> = core.connect(db.url)
      assert.is_nil(conn:exec("CREATE TABLE exec_many (id int); INSERT INTO exec_many VALUES (1), (2); "
        .. "INSERT INTO exec_many VALUES (3)"))
      assert.are.equal(3, conn:query("SELECT count(*) AS n FROM exec_many")[1].n)
    end)

    it("stops at the first failing statement and keeps the connection usable", function()
      local conn <close> = core.connect(db.url)
      local sql = "CREATE TABLE exec_fail (id int); SELECT 1/0; CREATE TABLE exec_after (id int)"
      local err = raises(conn.exec, conn, sql)
      assert.are.equal("22012", err.sqlstate)
      -- a multi-statement exec is one implicit transaction: the first table is gone too
      assert.is_false(H.exists(db, "exec_fail"))
      assert.is_false(H.exists(db, "exec_after"))
      assert.are.equal(1, conn:query("SELECT 1 AS one")[1].one)
    end)

    it("refuses parameters: they belong to query()", function()
      local conn <close> = core.connect(db.url)
      local err = raises(conn.exec, conn, "SELECT $1")
      assert.are.equal("42P02", err.sqlstate)
    end)
  end)

  describe("conn:query()", function()
    local conn

    lazy_setup(function()
      conn = core.connect(db.url)
    end)

    lazy_teardown(function()
      conn:close()
    end)

    it("converts integers of every width to Lua integers", function()
      local row = conn:query("SELECT 7::int2 AS a, (-2147483648)::int4 AS b, 9223372036854775807::int8 AS c, "
        .. "'pg_class'::regclass::oid AS d")[1]
      assert.are.equal(math.type(row.a), "integer")
      assert.are.equal(7, row.a)
      assert.are.equal(-2147483648, row.b)
      assert.are.equal(math.maxinteger, row.c)
      assert.are.equal(math.type(row.c), "integer")
      assert.are.equal(1259, row.d)
    end)

    it("converts float4 and float8 to Lua floats, including NaN and the infinities", function()
      local row = conn:query("SELECT 1.5::float4 AS a, 2::float8 AS b, 'NaN'::float8 AS c, "
        .. "'Infinity'::float8 AS d, '-Infinity'::float4 AS e")[1]
      assert.are.equal(1.5, row.a)
      assert.are.equal(2.0, row.b)
      assert.are.equal("float", math.type(row.b))
      assert.is_true(row.c ~= row.c)
      assert.are.equal(math.huge, row.d)
      assert.are.equal(-math.huge, row.e)
    end)

    it("keeps numeric as a string, so no digit is lost", function()
      local row = conn:query("SELECT 12345678901234567890.123456789::numeric AS n")[1]
      assert.are.equal("12345678901234567890.123456789", row.n)
    end)

    it("converts booleans and text", function()
      local row = conn:query("SELECT true AS t, false AS f, 'héllo'::text AS s, ''::text AS empty")[1]
      assert.is_true(row.t)
      assert.is_false(row.f)
      assert.are.equal("héllo", row.s)
      assert.are.equal("", row.empty)
    end)

    it("returns SQL NULL as core.null, for every type", function()
      local row = conn:query("SELECT NULL::int AS i, NULL::text AS t, NULL::bool AS b, NULL::float8 AS f")[1]
      for _, k in ipairs { "i", "t", "b", "f" } do
        assert.are.equal(core.null, row[k])
      end
    end)

    it("sends $n parameters: nil and core.null as NULL, numbers, booleans, strings", function()
      local row = conn:query("SELECT $1::int AS a, $2::text AS b, $3::int IS NULL AS c, $4::bool AS d, "
        .. "$5::float8 AS e, $6::text IS NULL AS f", 42, "it's", nil, true, 0.25, core.null)[1]
      assert.are.same({ a = 42, b = "it's", c = true, d = true, e = 0.25, f = true }, row)
    end)

    it("sends trailing nil parameters as NULL", function()
      local row = conn:query("SELECT $1::int IS NULL AS a, $2::int IS NULL AS b", nil, nil)[1]
      assert.is_true(row.a)
      assert.is_true(row.b)
    end)

    it("sends float parameters without losing a bit", function()
      for _, x in ipairs { 1 / 3, 2.0 ^ 53, 0.1, -1e-300, 1.7976931348623157e308, 5e-324 } do
        local row = conn:query("SELECT $1::float8 AS f, $1::float8 = $2::float8 AS same", x,
          string.format("%.17g", x))[1]
        assert.are.equal(x, row.f)
        assert.is_true(row.same)
      end
      assert.are.equal("0.1", conn:query("SELECT $1::numeric::text AS n", 0.1)[1].n)
    end)

    it("sends NaN and the infinities as float8 understands them", function()
      local row = conn:query("SELECT $1::float8 AS a, $2::float8 AS b, $3::float8 AS c", 0 / 0, math.huge,
        -math.huge)[1]
      assert.is_true(row.a ~= row.a)
      assert.are.equal(math.huge, row.b)
      assert.are.equal(-math.huge, row.c)
    end)

    it("refuses a parameter holding a NUL byte instead of cutting it short", function()
      local err = raises(conn.query, conn, "SELECT $1::text AS t, $2::text AS u", "ok", "a\0b")
      assert.are.equal(core.Error, getmetatable(err))
      assert.matches("parameter %$2 contains a NUL byte", err.message)
    end)

    it("refuses SQL holding a NUL byte instead of running half of it", function()
      local err = raises(conn.exec, conn, "SELECT 1;\0 CREATE TABLE after_nul (id int)")
      assert.matches("NUL byte", err.message)
      err = raises(conn.query, conn, "SELECT 1\0")
      assert.matches("NUL byte", err.message)
    end)

    it("refuses a parameter it cannot send, naming its number", function()
      local err = raises(conn.query, conn, "SELECT $1::text, $2::text", "ok", {})
      assert.matches("%$2", tostring(err))
    end)

    it("returns every row keyed by column name and the row count", function()
      local rows, n = conn:query("SELECT g AS n, g * 2 AS twice FROM generate_series(1, 3) g ORDER BY g")
      assert.are.equal(3, n)
      assert.are.same({ { n = 1, twice = 2 }, { n = 2, twice = 4 }, { n = 3, twice = 6 } }, rows)
    end)

    it("returns the affected rows for a command", function()
      conn:exec("CREATE TABLE query_count (id int)")
      local rows, n = conn:query("INSERT INTO query_count SELECT generate_series(1, 5)")
      assert.are.same({}, rows)
      assert.are.equal(5, n)
    end)

    it("refuses several statements in one query", function()
      local err = raises(conn.query, conn, "SELECT 1; SELECT 2")
      assert.are.equal("42601", err.sqlstate)
    end)
  end)

  describe("conn:prepared()", function()
    it("prepares a statement once per connection and runs it with parameters", function()
      local conn <close> = core.connect(db.url)
      for i = 1, 3 do
        local rows, count = conn:prepared("spec_add", "SELECT $1::int + $2::int AS sum", i, 10)
        assert.are.equal(i + 10, rows[1].sum)
        assert.are.equal(1, count)
      end
      local n = conn:query("SELECT count(*) AS n FROM pg_prepared_statements WHERE name = 'spec_add'")[1].n
      assert.are.equal(1, n)
    end)

    it("keeps the statement through a rolled-back transaction", function()
      local conn <close> = core.connect(db.url)
      conn:exec("BEGIN")
      conn:prepared("spec_one", "SELECT 1 AS one")
      conn:exec("ROLLBACK")
      assert.are.equal(1, conn:prepared("spec_one", "SELECT 1 AS one")[1].one)
    end)

    it("refuses the same name with other SQL", function()
      local conn <close> = core.connect(db.url)
      conn:prepared("spec_two", "SELECT 2 AS two")
      local err = raises(conn.prepared, conn, "spec_two", "SELECT 3 AS three")
      assert.matches("already exists with other SQL", tostring(err))
    end)

    it("raises a tide.Error with the SQLSTATE when preparing or running fails", function()
      local conn <close> = core.connect(db.url)
      local err = raises(conn.prepared, conn, "spec_bad", "SELECT nope FROM nowhere")
      assert.are.equal("42P01", err.sqlstate)
      assert.are.equal("SELECT nope FROM nowhere", err.query)
      err = raises(conn.prepared, conn, "spec_div", "SELECT 1 / $1::int AS q", 0)
      assert.are.equal("22012", err.sqlstate)
      assert.are.equal(1, conn:prepared("spec_div", "SELECT 1 / $1::int AS q", 1)[1].q)
    end)
  end)

  describe("tide.Error", function()
    local conn

    lazy_setup(function()
      conn = core.connect(db.url)
      conn:exec("CREATE TABLE err_parent (id int PRIMARY KEY);"
        .. "CREATE TABLE err_users (id int PRIMARY KEY, email text CONSTRAINT err_users_email_key UNIQUE)")
      conn:exec("INSERT INTO err_users VALUES (1, 'a@example.com')")
    end)

    lazy_teardown(function()
      conn:close()
    end)

    it("carries sqlstate, message, detail, constraint, table, schema and query", function()
      local sql = "INSERT INTO err_users VALUES (2, $1)"
      local err = raises(conn.query, conn, sql, "a@example.com")
      assert.are.equal(core.Error, getmetatable(err))
      assert.are.equal("sql", err.kind)
      assert.are.equal("23505", err.sqlstate)
      assert.matches("duplicate key value violates unique constraint", err.message)
      assert.matches("a@example.com", err.detail)
      assert.are.equal("err_users_email_key", err.constraint)
      assert.are.equal("err_users", err.table)
      assert.are.equal("public", err.schema)
      assert.are.equal(sql, err.query)
    end)

    it("prints as `ERROR <sqlstate>: <message>`", function()
      local err = raises(conn.query, conn, "INSERT INTO err_users VALUES (1, 'b')")
      assert.are.equal('ERROR 23505: duplicate key value violates unique constraint "err_users_pkey"', tostring(err))
    end)

    it("carries the position of a syntax error", function()
      -- "FROMM" reads as a column alias: the error is at err_users, byte 16
      local err = raises(conn.query, conn, "SELECT 1 FROMM err_users")
      assert.are.equal("42601", err.sqlstate)
      assert.are.equal(16, err.position)
    end)

    it("carries a hint", function()
      local err = raises(conn.query, conn, "SELECT no_such_function_xyz(1)")
      assert.are.equal("42883", err.sqlstate)
      assert.is_string(err.hint)
      assert.matches("explicit type casts", err.hint)
    end)

    it("carries the same fields from exec", function()
      local sql = "SELECT 1; INSERT INTO err_users VALUES (1, 'c')"
      local err = raises(conn.exec, conn, sql)
      assert.are.equal("23505", err.sqlstate)
      assert.are.equal("err_users_pkey", err.constraint)
      assert.are.equal(sql, err.query)
    end)

    it("reports a RAISE EXCEPTION with its own SQLSTATE, detail and hint", function()
      local err = raises(conn.exec, conn, [[DO $$ BEGIN RAISE EXCEPTION 'custom failure'
        USING ERRCODE = 'P0042', DETAIL = 'the detail', HINT = 'the hint'; END $$]])
      assert.are.equal("P0042", err.sqlstate)
      assert.are.equal("custom failure", err.message)
      assert.are.equal("the detail", err.detail)
      assert.are.equal("the hint", err.hint)
      assert.are.equal("ERROR P0042: custom failure", tostring(err))
    end)

    it("leaves the connection usable after an error outside a transaction", function()
      raises(conn.query, conn, "SELECT 1/0")
      assert.are.equal(1, conn:query("SELECT 1 AS one")[1].one)
    end)

    it("reports a lost connection with sqlstate 08006 and connection_lost", function()
      local victim = core.connect(db.url)
      local pid = victim:info().pid
      H.sql(db, "SELECT pg_terminate_backend($1)", pid)
      local err = raises(victim.query, victim, "SELECT 1")
      assert.is_true(err.connection_lost)
      assert.is_string(err.sqlstate)
      assert.is_true(victim:closed())
      victim:close()
    end)
  end)

  describe("errors", function()
    it("cut the server's message and detail to core.echo_limit, and keep the statement whole", function()
      local conn <close> = core.connect(db.url)
      local sql = "DO $$ BEGIN RAISE EXCEPTION '%', repeat('m', 5000) USING DETAIL = repeat('d', 5000); END $$"
      local err = raises(conn.exec, conn, sql)
      assert.are.equal(string.rep("m", core.echo_limit) .. " ... [cut, " .. (5000 - core.echo_limit) .. " bytes]",
        err.message)
      assert.are.equal(string.rep("d", core.echo_limit) .. " ... [cut, " .. (5000 - core.echo_limit) .. " bytes]",
        err.detail)
      assert.are.equal(sql, err.query)
      err = raises(conn.query, conn, "SELECT $1::int, " .. string.rep(" ", 10) .. "1/0", 1)
      assert.are.equal("division by zero", err.message)
      assert.matches("^SELECT %$1::int", err.query)
      err = raises(conn.prepared, conn, "spec_div", "SELECT 1/$1::int", 0)
      assert.are.same({ "division by zero", "SELECT 1/$1::int" }, { err.message, err.query })
      err = raises(conn.prepared, conn, "spec_bad", "SELEC 1")
      assert.are.same({ "42601", "SELEC 1" }, { err.sqlstate, err.query })
    end)
  end)

  describe("conn:on_notice()", function()
    it("delivers server notices to the handler after the call", function()
      local conn <close> = core.connect(db.url)
      local seen = {}
      conn:on_notice(function(text)
        seen[#seen + 1] = text
      end)
      conn:exec("DO $$ BEGIN RAISE NOTICE 'first'; RAISE WARNING 'second'; END $$")
      local all = table.concat(seen, "\n")
      assert.matches("NOTICE: first", all)
      assert.matches("WARNING: second", all)
    end)

    it("delivers notices from IF EXISTS, and those raised before an error", function()
      local conn <close> = core.connect(db.url)
      local seen = {}
      conn:on_notice(function(text)
        seen[#seen + 1] = text
      end)
      conn:exec("DROP TABLE IF EXISTS no_such_table_for_notice")
      assert.matches("does not exist, skipping", table.concat(seen, "\n"))
      seen = {}
      local err = raises(conn.exec, conn, "DO $$ BEGIN RAISE NOTICE 'before'; RAISE EXCEPTION 'boom'; END $$")
      assert.are.equal("ERROR P0001: boom", tostring(err))
      assert.matches("before", table.concat(seen, "\n"))
    end)

    it("cuts a long notice to core.echo_limit, and counts the notices past 1 MiB instead of keeping them", function()
      local conn <close> = core.connect(db.url)
      local seen = {}
      conn:on_notice(function(text)
        seen[#seen + 1] = text
      end)
      conn:exec("DO $$ BEGIN RAISE NOTICE '%', repeat('n', 100000); END $$")
      assert.are.equal("NOTICE: " .. string.rep("n", core.echo_limit) .. " ... [cut, " .. (100000 - core.echo_limit)
        .. " bytes]", seen[1])
      seen = {}
      conn:exec("DO $$ BEGIN FOR i IN 1..3000 LOOP RAISE NOTICE '%', repeat('n', 1000); END LOOP; END $$")
      local text = table.concat(seen, "\n")
      assert.is_true(#text < 1100000, #text .. " bytes delivered")
      assert.matches("NOTICE: %.%.%. and %d+ more notices, not shown$", text)
    end)

    it("keeps the SQL error when the handler itself fails on a notice sent before it", function()
      local conn <close> = core.connect(db.url)
      conn:on_notice(function()
        error("handler failed")
      end)
      local err = raises(conn.exec, conn, "DO $$ BEGIN RAISE NOTICE 'n'; RAISE EXCEPTION 'the real one'; END $$")
      assert.are.equal(core.Error, getmetatable(err))
      assert.are.equal("the real one", err.message)
      -- outside an error, the handler's own failure is raised as usual
      assert.has_error(function()
        conn:exec("DO $$ BEGIN RAISE NOTICE 'n'; END $$")
      end)
    end)

    it("survives a handler that closes the connection", function()
      local conn = core.connect(db.url)
      conn:on_notice(function()
        conn:close()
      end)
      conn:exec("DO $$ BEGIN RAISE NOTICE 'n'; END $$")
      assert.is_true(conn:closed())
      collectgarbage()
    end)

    it("accepts nil to go back to the default", function()
      local conn <close> = core.connect(db.url)
      local seen = 0
      conn:on_notice(function()
        seen = seen + 1
      end)
      conn:exec("DO $$ BEGIN RAISE NOTICE 'to the handler'; END $$")
      assert.are.equal(1, seen)
      conn:on_notice(nil)
      conn:exec("SET client_min_messages = warning; DROP TABLE IF EXISTS nothing_here")
      conn:exec("DO $$ BEGIN RAISE WARNING 'not to the handler'; END $$")
      assert.are.equal(1, seen)
    end)

    it("refuses a handler that is not a function", function()
      local conn <close> = core.connect(db.url)
      assert.matches("bad argument #2 .*%(function expected, got number%)", tostring(raises(conn.on_notice, conn, 42)))
    end)
  end)

  describe("conn:on_wait()", function()
    it("calls the handler while a statement runs, with its elapsed seconds, for exec, query and prepared", function()
      local conn <close> = core.connect(db.url)
      local calls = {}
      conn:on_wait(function(elapsed)
        calls[#calls + 1] = elapsed
      end, 0.05)
      local rows, count = conn:query("SELECT pg_sleep(0.3), $1::int AS n", 7)
      assert.same({ 7, 1 }, { rows[1].n, count })
      assert.is_true(#calls >= 1)
      for i, elapsed in ipairs(calls) do
        assert.is_true(elapsed >= 0.05 and (i == 1 or elapsed > calls[i - 1]), tostring(elapsed))
      end
      calls = {}
      conn:exec("SELECT 1; SELECT pg_sleep(0.3); CREATE TEMP TABLE waited (id int)")
      assert.is_true(#calls >= 1)
      calls = {}
      conn:prepared("waits", "SELECT pg_sleep($1)", 0.3)
      assert.is_true(#calls >= 1)
      -- nil removes it
      calls = {}
      conn:on_wait(nil)
      conn:query("SELECT pg_sleep(0.2)")
      assert.same({}, calls)
    end)

    it("keeps results and errors as they are, and the connection usable after an error", function()
      local conn <close> = core.connect(db.url)
      conn:on_wait(function() end, 0.05)
      local err = raises(conn.exec, conn, "SELECT pg_sleep(0.2); SELECT 1/0")
      assert.same({ "22012", "SELECT 1/0" }, { err.sqlstate, err.query:match("SELECT 1/0") })
      err = raises(conn.query, conn, "SELECT pg_sleep(0.2), 1/0")
      assert.are.equal("22012", err.sqlstate)
      local rows = conn:query("SELECT g FROM generate_series(1, 3) g")
      assert.are.equal(3, #rows)
      -- COPY's data is dropped and COPY FROM STDIN refused, as without a handler
      conn:query("COPY (SELECT 1) TO STDOUT")
      conn:exec("CREATE TEMP TABLE copied (id int)")
      assert.matches("COPY FROM STDIN is not supported", raises(conn.query, conn, "COPY copied FROM STDIN").message)
      assert.are.equal(1, conn:query("SELECT 1 AS one")[1].one)
    end)

    it("delivers the notices that arrived while the statement still runs", function()
      local conn <close> = core.connect(db.url)
      local seen, while_running = {}, false
      conn:on_notice(function(text)
        seen[#seen + 1] = text
      end)
      conn:on_wait(function()
        while_running = while_running or #seen > 0
      end, 0.1)
      conn:exec("DO $$ BEGIN RAISE NOTICE 'early'; PERFORM pg_sleep(1); RAISE NOTICE 'late'; END $$")
      assert.is_true(while_running)
      assert.matches("NOTICE: early.*NOTICE: late", table.concat(seen, "\n"))
    end)

    it("refuses to use or close the connection from the handler: a statement is in flight", function()
      local conn <close> = core.connect(db.url)
      local errs = {}
      conn:on_wait(function()
        errs[#errs + 1] = H.error_of(conn.query, conn, "SELECT 1")
        errs[#errs + 1] = H.error_of(conn.close, conn)
      end, 0.05)
      assert.are.equal(1, conn:query("SELECT 1 AS one FROM pg_sleep(0.2)")[1].one)
      assert.is_true(#errs >= 2)
      assert.matches("connection is busy running a statement", errs[1].message)
      assert.matches("connection is busy running a statement", errs[2].message)
      assert.is_false(conn:closed())
    end)

    it("drops a handler that fails, without failing the statement", function()
      local conn <close> = core.connect(db.url)
      local calls = 0
      conn:on_wait(function()
        calls = calls + 1
        error("display broke")
      end, 0.05)
      assert.are.equal(1, conn:query("SELECT 1 AS one FROM pg_sleep(0.3)")[1].one)
      assert.are.equal(1, calls)
    end)

    it("reports a connection lost while it waits", function()
      local conn <close> = core.connect(db.url)
      local pid, killed = conn:info().pid, false
      conn:on_wait(function()
        if not killed then
          killed = true
          H.sql(db, "SELECT pg_terminate_backend($1)", pid)
        end
      end, 0.05)
      local err = raises(conn.query, conn, "SELECT pg_sleep(30)")
      assert.is_true(killed)
      assert.is_string(err.sqlstate)
      assert.is_true(conn:closed())
    end)

    it("refuses a handler that is not a function, or an interval out of range", function()
      local conn <close> = core.connect(db.url)
      assert.matches("bad argument #2 to '%?' %(function expected, got number%)",
        raises(conn.on_wait, conn, 42, 1))
      assert.matches("bad argument #3 to '%?' %(seconds between 0.01 and 86400%)",
        raises(conn.on_wait, conn, function() end, 0))
      assert.matches("bad argument #3 to '%?' %(number expected, got no value%)",
        raises(conn.on_wait, conn, function() end))
    end)
  end)

  describe("lifetime", function()
    it("closes twice without harm", function()
      local conn = core.connect(db.url)
      conn:close()
      conn:close()
      assert.is_true(conn:closed())
      assert.are.equal("tide.Conn (closed)", tostring(conn))
    end)

    it("raises a clear tide.Error on use after close", function()
      local conn = core.connect(db.url)
      conn:close()
      for _, call in ipairs {
        function() conn:query("SELECT 1") end,
        function() conn:exec("SELECT 1") end,
        function() conn:info() end,
        function() conn:transaction_status() end,
        function() conn:on_notice(print) end,
      } do
        local err = raises(call)
        assert.are.equal(core.Error, getmetatable(err))
        assert.matches("connection is closed", tostring(err))
      end
    end)

    it("releases the server session when a <close> variable goes out of scope", function()
      local pid
      do
        local conn <close> = core.connect(db.url)
        pid = conn:info().pid
      end
      assert.are.equal(0, sessions_of(pid))
    end)

    it("closes a <close> variable when the block raises", function()
      local kept
      local ok = pcall(function()
        local conn <close> = core.connect(db.url)
        kept = conn
        conn:query("SELECT 1/0")
      end)
      assert.is_false(ok)
      assert.is_true(kept:closed())
    end)

    it("survives garbage collection after an error", function()
      for _ = 1, 20 do
        local conn = core.connect(db.url)
        conn:on_notice(function() end)
        pcall(conn.query, conn, "SELECT 1/0")
        pcall(conn.exec, conn, "DO $$ BEGIN RAISE NOTICE 'n'; RAISE EXCEPTION 'x'; END $$")
      end
      collectgarbage()
      collectgarbage()
      local ok = pcall(core.connect, H.url(db.name, os.getenv("PGUSER"), "wrong"))
      assert.is_false(ok)
      collectgarbage()
      collectgarbage()
      local conn <close> = core.connect(db.url)
      assert.are.equal(1, conn:query("SELECT 1 AS one")[1].one)
    end)

    it("survives garbage collection of a connection closed by hand, then collected", function()
      local conn = core.connect(db.url)
      local pid = conn:info().pid
      local watch = setmetatable({ conn }, { __mode = "v" })
      conn:close()
      assert.is_true(conn:closed())
      conn = nil -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
      assert.is_nil(watch[1], "the closed connection was not collected")
      assert.are.equal(0, sessions_of(pid))
      local again <close> = core.connect(db.url)
      assert.are.equal(1, again:query("SELECT 1 AS one")[1].one)
    end)

    it("keeps the notice handler alive until the connection is collected", function()
      local conn = core.connect(db.url)
      local seen = 0
      conn:on_notice(function()
        seen = seen + 1
      end)
      collectgarbage()
      conn:exec("DO $$ BEGIN RAISE NOTICE 'x'; END $$")
      assert.are.equal(1, seen)
      conn:close()
    end)

    it("refuses methods called on something that is not a tide.Conn", function()
      local conn <close> = core.connect(db.url)
      assert.matches("bad argument #1 .*%(tide%.Conn expected, got table%)",
        tostring(raises(conn.query, {}, "SELECT 1")))
      assert.matches("bad argument #1 .*%(tide%.Conn expected, got string%)", tostring(raises(conn.close, "nope")))
      assert.are.equal(1, conn:query("SELECT 1 AS one")[1].one) -- the real one is untouched
    end)
  end)
end)
