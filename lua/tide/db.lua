-- tide.db: the `db` object a revision's upgrade(db) and downgrade(db) receive.
--
--   db:exec(sql)          one or more statements, no parameters (in a transaction = false
--                         revision they are sent one at a time, each in its own implicit transaction)
--   db:query(sql, ...)    one statement with $1..$n parameters -> rows (tables keyed by column)
--   db:one(sql, ...)      the first row or nil
--   db:savepoint(fn)      runs fn(db) inside a savepoint: an error rolls back to it and re-raises
--   db:step(name, fn)     a checkpoint of a non-transactional revision: fn(db) runs once; a
--                         rerun after a failure or a kill skips the steps that finished
--   db.null               the NULL sentinel (parameters and results)
--   db.vars               tide.lua's `vars`, read only; reading a name tide.lua does not set raises
--
-- A recording db (db.record) keeps every statement instead of sending it, for `--sql` and
-- `tide lint`; statements with parameters are recorded with the values inlined as literals.
-- db:query and db:one hand data back to the revision, which a recording cannot: each call is
-- listed in db.queries (the revision's SQL may depend on it), a statement that returns rows
-- stops the recording with an error marked `data_dependent`, and any other statement is
-- recorded and answers no rows and a count of 0.
--
-- `CREATE INDEX CONCURRENTLY name` first drops an INVALID index of the same name, the leftover
-- of an earlier attempt that failed or was killed (it would otherwise make IF NOT EXISTS a
-- silent no-op, or the retry fail with "already exists"). The DSL's create_index goes through
-- db:exec, so it gets this too.
local core = require "tide.core"
local errors = require "tide.errors"
local log = require "tide.log"
local sqlmod = require "tide.sql"

---@class tide.DB
---@field null lightuserdata the NULL sentinel
---@field revision string|nil the revision being run
---@field vars table tide.lua's `vars` (read only)
local DB = {}
DB.__index = DB
DB.__name = "tide.DB"

local M = {}
M.DB = DB

--- tide.lua's `vars` as a read-only table. A name tide.lua does not set raises at the line
--- that reads it, instead of a nil that would end up as the text "nil" or a NULL in the SQL.
---@param values table|nil name -> string|number|boolean
---@return table
function M.vars(values)
  values = values or {}
  return setmetatable({}, {
    __index = function(_, name)
      local v = values[name]
      if v == nil then
        local names = {}
        for k in pairs(values) do
          names[#names + 1] = k
        end
        table.sort(names)
        errors.raise_at(2, "run", string.format("vars.%s is not set: add it to `vars` in tide.lua%s", tostring(name),
          errors.did_you_mean(tostring(name), names)))
      end
      return v
    end,
    __newindex = function(_, name)
      errors.raise_at(2, "run", string.format("db.vars is read only (vars.%s): set it in tide.lua", tostring(name)))
    end,
    __pairs = function()
      return next, values, nil
    end,
  })
end

--- Runs fn(...) in a transaction on conn: BEGIN, then COMMIT when fn returns, ROLLBACK (its own
--- failure ignored) and fn's error raised again when it raises. For tide's own bookkeeping
--- (stamp, accept, resolve), not for a revision's db.
---@param conn userdata tide.Conn, outside a transaction
---@param fn function
---@return any ... what fn returned
function M.transaction(conn, fn, ...)
  conn:exec("BEGIN")
  local result = table.pack(pcall(fn, ...))
  if not result[1] then
    pcall(conn.exec, conn, "ROLLBACK")
    error(result[2], 0)
  end
  conn:exec("COMMIT")
  return table.unpack(result, 2, result.n)
end

---@param conn userdata tide.Conn
---@param rev? table the revision being run (for messages)
---@param vars? table tide.lua's `vars`
---@return tide.DB
function M.new(conn, rev, vars)
  return setmetatable({ conn = conn, null = core.null, revision = rev and rev.revision, savepoints = 0,
    vars = M.vars(vars), transactional = not rev or rev.transaction ~= false }, DB)
end

--- A db that records statements instead of running them.
---@param rev? table
---@param vars? table tide.lua's `vars`
---@return tide.DB
function M.recorder(rev, vars)
  return setmetatable({ record = {}, queries = {}, null = core.null, revision = rev and rev.revision,
    file = rev and rev.file, savepoints = 0, vars = M.vars(vars), transactional = not rev or rev.transaction ~= false },
    DB)
end

-- A statement longer than this goes out alone, after the prelude, rather than being copied
-- into one string with it; one more round trip is nothing beside sending it.
local INLINE_PRELUDE_MAX = 64 * 1024

---@param sql string one or more statements
function DB:exec(sql)
  if type(sql) ~= "string" then
    errors.raise_at(2, "run", "db:exec(sql): sql must be a string, got " .. type(sql))
  end
  local statements
  if self.transactional then
    statements = M.refuse_transaction_end(sql)
  end
  if self.record then
    self.record[#self.record + 1] = sql
    return
  end
  if self.one_at_a_time then
    -- Outside a transaction, several statements in one exec would still share an implicit
    -- transaction block (and CREATE INDEX CONCURRENTLY refuses to run in one): send each alone.
    statements = statements or M.statements(sql)
    if #statements > 1 then
      for _, st in ipairs(statements) do
        self:send(sql:sub(st.first, st.last))
      end
    else
      self:send(sql)
    end
    self:left_no_transaction(sql)
    return
  end
  self:send(sql)
end

-- Sends the text of one exec (one statement of it in a transaction = false revision), with the
-- prelude in front of it if the prelude has not gone out yet.
function DB:send(sql)
  self:drop_invalid_leftover(sql)
  local prelude = self.prelude
  if prelude and #sql > INLINE_PRELUDE_MAX then
    self:send_prelude()
    prelude = nil
  end
  self.prelude = nil
  local ok, err = pcall(self.conn.exec, self.conn, prelude and (prelude .. sql) or sql)
  if not ok then
    if type(err) == "table" then
      -- report the revision's own statement, not the prelude tide put in front of it (unless
      -- the error is in the prelude itself)
      local shift = prelude and (utf8.len(prelude) or #prelude) or 0
      if not (err.position and err.position <= shift) then
        err.position = err.position and err.position - shift
        err.query = sql
      end
    end
    self:still_in_transaction(sql, err)
    error(err, 0)
  end
  self:still_in_transaction(sql)
  self:after_session_change(sql)
  if not self.current_step then
    self.unstepped = (self.unstepped or 0) + 1
  end
end

-- The first words of the statements ends_transaction looks further at.
local TRANSACTION_WORDS = { COMMIT = true, END = true, ROLLBACK = true, ABORT = true, PREPARE = true }

-- The word of a statement that ends the transaction it runs in (COMMIT, END, ROLLBACK, ABORT,
-- PREPARE TRANSACTION; with AND CHAIN they end it and open another), or nil. ROLLBACK TO
-- SAVEPOINT undoes part of the transaction and stays in it.
local function ends_transaction(st)
  local w = st.words
  if w[1] == "COMMIT" or w[1] == "END" or w[1] == "ABORT" then
    return w[1]
  elseif w[1] == "ROLLBACK" then
    local after = (w[2] == "WORK" or w[2] == "TRANSACTION") and w[3] or w[2]
    return after ~= "TO" and "ROLLBACK" or nil
  elseif w[1] == "PREPARE" and w[2] == "TRANSACTION" and not w[3] and st.after ~= "(" then
    return "PREPARE TRANSACTION" -- and not a prepared statement called "transaction"
  end
end

--- Refuses, before anything is sent, a statement that would end the transaction a
--- transactional revision runs in: tide commits the revision together with its state and
--- history rows, and a revision that commits or rolls back on its own would be recorded in
--- pieces. Returns the statements of sql when it had to split them.
function M.refuse_transaction_end(sql)
  local statements
  if sql:find(";", 1, true) then
    statements = M.statements(sql)
  else -- one statement: its first words are enough, and most often its first word
    local first = sql:match("^%s*(%a+)")
    if first and not TRANSACTION_WORDS[first:upper()] then
      return nil
    end
    statements = { M.head(sql) }
  end
  for _, st in ipairs(statements) do
    local word = ends_transaction(st)
    if word then
      errors.raise("run", string.format("%s would end the transaction tide runs this revision in: tide commits "
        .. "a revision together with its state and history rows (undo part of a revision with db:savepoint, "
        .. "or set transaction = false to run statements outside a transaction)", word),
        { query = sql:sub(st.first, math.min(st.last, st.first + core.echo_limit)), refused = "transaction" })
    end
  end
  return #statements > 1 and statements or nil
end

--- After each command of a transactional revision, its transaction must still be open. No
--- statement of the revision ends it (refuse_transaction_end saw to that, and PostgreSQL
--- refuses COMMIT inside CALL and DO in a transaction block); if something did anyway, stop
--- and say that what ran may have been committed.
function DB:still_in_transaction(sql, err)
  if not self.transactional then
    return
  end
  if self.conn:transaction_status() ~= "idle" then -- intrans, inerror; unknown: a lost connection
    return
  end
  errors.raise("run", "the transaction tide runs this revision in ended "
    .. (sql and "during this statement" or "while the revision ran, though not through db:exec or db:query")
    .. (err and (" (which then failed: " .. tostring(err) .. ")") or "") .. ": what the revision ran before it "
    .. "may have been committed, outside tide's control, and tide cannot roll it back; the revision is not "
    .. "recorded as applied: inspect the database before running it again",
    { query = sql, sqlstate = type(err) == "table" and err.sqlstate or nil, ended_transaction = true })
end

--- In a transaction = false revision, each db:exec or db:query must end outside a transaction
--- block (a BEGIN goes in the same call as its COMMIT): an open transaction holds a snapshot
--- that CREATE INDEX CONCURRENTLY waits for, and tide records each step outside a transaction.
function DB:left_no_transaction(sql)
  local status = self.conn:transaction_status()
  if status == "intrans" or status == "inerror" then
    errors.raise("run", "this call left a transaction open: in a revision with transaction = false each db:exec "
      .. "or db:query must end outside a transaction block (send BEGIN and its COMMIT in the same call)",
      { query = sql })
  end
end

-- DEALLOCATE and DISCARD drop the statements tide prepared for its bookkeeping, and DISCARD ALL
-- and RESET reset its search_path: after a statement that may have done either, tide prepares
-- again (under new names) and sets its session up again (on_session_reset, from the runner).
-- A word that only looks like one (in a string, say) costs a few statements, nothing more.
local SESSION_WORDS = { "DEALLOCATE", "DISCARD", "RESET" }

function DB:after_session_change(sql)
  if #sql > INLINE_PRELUDE_MAX then -- not worth a copy in upper case: act as if it did
    self.conn:forget_prepared()
    if self.on_session_reset then
      self.on_session_reset()
    end
    return
  end
  local upper = sql:upper()
  for _, word in ipairs(SESSION_WORDS) do
    if upper:find("%f[%w_]" .. word .. "%f[^%w_]") then
      self.conn:forget_prepared()
      if self.on_session_reset then
        self.on_session_reset()
      end
      return
    end
  end
end

--- Sends the runner's prelude (BEGIN and the revision's SET LOCAL timeouts) if no statement has
--- taken it along yet. exec sends it in front of the revision's first statement, one round trip
--- instead of two; everything else that talks to the server sends it first.
function DB:send_prelude()
  local prelude = self.prelude
  if prelude then
    self.prelude = nil
    self.conn:exec(prelude)
  end
end

-- "CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name ON [ONLY] table": the index's
-- qualified name (it lives in the table's schema), or nil for any other statement.
local function concurrent_index(statement)
  local s = statement:sub(1, 4096):gsub("^%s+", ""):gsub("%-%-[^\n]*\n", " ")
  local rest = s:match("^[Cc][Rr][Ee][Aa][Tt][Ee]%s+(.*)")
  if not rest then
    return nil
  end
  rest = rest:gsub("^[Uu][Nn][Ii][Qq][Uu][Ee]%s+", "")
  rest = rest:match("^[Ii][Nn][Dd][Ee][Xx]%s+[Cc][Oo][Nn][Cc][Uu][Rr][Rr][Ee][Nn][Tt][Ll][Yy]%s+(.*)")
  if not rest then
    return nil
  end
  rest = rest:gsub("^[Ii][Ff]%s+[Nn][Oo][Tt]%s+[Ee][Xx][Ii][Ss][Tt][Ss]%s+", "")
  local name = rest:match('^("[^"]+")%s') or rest:match("^([%w_]+)%s")
  if not name or name:upper() == "ON" then -- an unnamed index cannot be a leftover of the same name
    return nil
  end
  local after = rest:sub(#name + 1):gsub("^%s+[Oo][Nn]%s+", ""):gsub("^[Oo][Nn][Ll][Yy]%s+", "")
  local schema = after:match('^("[^"]+")%.') or after:match("^([%w_]+)%.")
  return schema and (schema .. "." .. name) or name
end

--- Drops an INVALID index left by an interrupted CREATE INDEX CONCURRENTLY of the same name.
function DB:drop_invalid_leftover(statement)
  local name = concurrent_index(statement)
  if not name then
    return
  end
  self:send_prelude()
  local rows = self.conn:query("SELECT c.oid::regclass::text AS name FROM pg_catalog.pg_index i "
    .. "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
    .. "WHERE i.indexrelid = pg_catalog.to_regclass($1) AND NOT i.indisvalid", name)
  if rows[1] then
    log.warn("dropping the INVALID index %s left by an earlier CREATE INDEX CONCURRENTLY before rebuilding it",
      rows[1].name)
    self.conn:exec("DROP INDEX CONCURRENTLY IF EXISTS " .. rows[1].name)
  end
end

-- Does this statement return rows (which a recording cannot make up)?
local function reads(statement)
  local first = require("tide.lint").split(statement)[1]
  local bare = first and first.bare or ""
  local word = bare:gsub("^%(+%s*", ""):match("^(%a+)")
  return word == "SELECT" or word == "WITH" or word == "VALUES" or word == "SHOW" or word == "TABLE"
    or word == "EXPLAIN" or word == "FETCH" or bare:find("%f[%w_]RETURNING%f[^%w_]") ~= nil
end

-- "versions/004_x.lua:9": where the revision file made the call being recorded.
local function caller(db)
  local source = db.file and ("@" .. db.file)
  for level = 2, 64 do
    local info = debug.getinfo(level, "Sl")
    if not info then
      break
    end
    if info.source == source then
      return db.file .. ":" .. info.currentline
    end
  end
  return db.file or "?"
end

--- statement with $1..$n replaced by the literals of the values (for a recorded script).
function M.inline(statement, ...)
  local args = table.pack(...)
  return (statement:gsub("%$(%d+)", function(n)
    n = tonumber(n)
    if n < 1 or n > args.n then
      return nil
    end
    local v = args[n]
    if v == core.null then
      return "NULL"
    end
    return sqlmod.literal(v)
  end))
end

-- The values a parameter can take; anything else is refused before the statement is sent.
local PARAM_TYPES = { ["nil"] = true, string = true, number = true, boolean = true }

---@param sql string one statement with $1..$n placeholders
---@return table[] rows
---@return integer count
function DB:query(sql, ...)
  if type(sql) ~= "string" then
    errors.raise_at(2, "run", "db:query(sql, ...): sql must be a string, got " .. type(sql))
  end
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if not PARAM_TYPES[type(v)] and v ~= core.null then
      errors.raise("run", string.format("db:query: parameter $%d is a %s: give a string, a number, a boolean, "
        .. "nil or db.null", i, type(v)))
    end
  end
  if self.transactional then
    M.refuse_transaction_end(sql)
  end
  if self.record then
    local where = caller(self)
    self.queries[#self.queries + 1] = { where = where, statement = sql }
    if reads(sql) then
      errors.raise("run", "reads data there (db:query or db:one of a statement that returns rows)",
        { query = sql, data_dependent = true, where = where })
    end
    self.record[#self.record + 1] = M.inline(sql, ...)
    return {}, 0
  end
  self:send_prelude()
  local ok, rows, count = pcall(self.conn.query, self.conn, sql, ...)
  if not ok then
    self:still_in_transaction(sql, rows)
    error(rows, 0)
  end
  self:still_in_transaction(sql)
  if self.one_at_a_time then
    self:left_no_transaction(sql)
  end
  self:after_session_change(sql)
  if not self.current_step then
    self.unstepped = (self.unstepped or 0) + 1
  end
  return rows, count
end

---@return table|nil row
function DB:one(sql, ...)
  local rows = self:query(sql, ...)
  return rows[1]
end

---@param fn fun(db: tide.DB)
function DB:savepoint(fn)
  self.savepoints = self.savepoints + 1
  local name = "tide_savepoint_" .. self.savepoints
  self:exec("SAVEPOINT " .. name)
  local ok, err = pcall(fn, self)
  if ok then
    self:exec("RELEASE SAVEPOINT " .. name)
    return
  end
  self:exec("ROLLBACK TO SAVEPOINT " .. name)
  self:exec("RELEASE SAVEPOINT " .. name)
  error(err, 0)
end

--- A checkpoint. In a non-transactional revision run by the runner, self.stepper knows the
--- steps that finished in an earlier, interrupted run: those are skipped, and each step that
--- finishes now is recorded at once. Elsewhere (transactional revisions, --sql) fn just runs.
---@param name string unique within the revision and direction
---@param fn fun(db: tide.DB)
function DB:step(name, fn)
  if type(name) ~= "string" or name == "" or type(fn) ~= "function" then
    errors.raise_at(2, "run", "db:step(name, fn): name must be a non-empty string and fn a function")
  end
  if self.current_step then
    errors.raise_at(2, "run", string.format("db:step(%q): steps cannot be nested (inside step %q)", name,
      self.current_step))
  end
  self.step_names = self.step_names or {}
  if self.step_names[name] then
    errors.raise_at(2, "run", string.format("db:step(%q): a step of that name already ran in this revision", name))
  end
  self.step_names[name] = true
  self.step_count = (self.step_count or 0) + 1
  if self.record then
    self.record[#self.record + 1] = "-- step " .. name:gsub("\n", " ")
  end
  local stepper = self.stepper
  if stepper and stepper.done[name] then
    log.info("  step %q finished in an earlier run: skipped", name)
    return
  end
  if self.on_step then -- the runner's progress line
    self.on_step(name, self.step_count)
  end
  self.current_step = name
  local ok, err = pcall(fn, self)
  self.current_step = nil
  if not ok then
    if type(err) == "table" then
      err.step = err.step or name
    end
    self.failed_step = name
    error(err, 0)
  end
  if stepper then
    stepper.finish(name, self.step_count)
  end
end

-- Statements ----------------------------------------------------------------------------------

-- Where one SQL statement ends, as psql and the server see it: at a semicolon outside quotes
-- ('...', E'...' with backslash escapes, "..."), dollar quotes, comments (nested /* */ too),
-- parentheses (CREATE RULE ... DO (a; b)), and the BEGIN ... END body of a CREATE [OR
-- REPLACE] FUNCTION or PROCEDURE (BEGIN ATOMIC; psql's own heuristic: CASE ... END counts
-- inside it). string.find jumps between the characters that matter, so a 50 MB literal costs a
-- few calls and no copy.
local WORD = "^[%a_\128-\255][%w_$\128-\255]*"
local IDENT_CHAR = "[%w_$\128-\255]"

-- The first byte at or after i that is neither blank nor in a comment (#text + 1 at the end).
local function skip_blank(text, i)
  while true do
    i = text:find("%S", i) or #text + 1
    local two = text:sub(i, i + 1)
    if two == "--" then
      i = (text:find("\n", i + 2, true) or #text) + 1
    elseif two == "/*" then
      local depth = 1
      i = i + 2
      while depth > 0 do
        local at = text:find("[/*]", i)
        if not at then
          return #text + 1
        end
        local pair = text:sub(at, at + 1)
        if pair == "/*" then
          depth, i = depth + 1, at + 2
        elseif pair == "*/" then
          depth, i = depth - 1, at + 2
        else
          i = at + 1
        end
      end
    else
      return i
    end
  end
end

-- The index after the quoted text that starts at i (a ' or a "), or #text + 1 if unterminated.
local function skip_quoted(text, i, escapes)
  local q = text:sub(i, i)
  local j = i + 1
  while true do
    local at = text:find(escapes and "[\\']" or q, j, not escapes)
    if not at then
      return #text + 1
    end
    local c, nxt = text:sub(at, at), text:sub(at + 1, at + 1)
    if c == "\\" then
      j = at + 2
    elseif nxt == q then
      j = at + 2
    else
      return at + 1
    end
  end
end

--- The statements of SQL text: a list of {first =, last =, words =}, first and last the byte
--- range of the statement (without its semicolon), words its first (up to four) words in upper
--- case, and after the character that follows them. Empty statements are left out.
---@param text string
---@return table[]
function M.statements(text)
  local out = {}
  local n = #text
  local i = skip_blank(text, 1)
  while i <= n do
    if text:byte(i) == 59 then -- ';' alone
      i = skip_blank(text, i + 1)
    else
      local st = { first = i, words = {} }
      while #st.words < 4 do
        local word = text:match(WORD, i)
        if not word then
          break
        end
        st.words[#st.words + 1] = word:upper()
        i = skip_blank(text, i + #word)
      end
      st.after = text:sub(i, i)
      local w = st.words
      -- psql's test for a body whose semicolons do not end the statement
      local routine = w[1] == "CREATE" and (w[2] == "FUNCTION" or w[2] == "PROCEDURE"
        or (w[2] == "OR" and w[3] == "REPLACE" and (w[4] == "FUNCTION" or w[4] == "PROCEDURE")))
      local interesting = routine and "[;'\"$()%-/%a_\128-\255]" or "[;'\"$()%-/]"
      local depth, block = 0, 0
      st.last = n
      while i <= n do
        local at = text:find(interesting, i)
        if not at then
          i = n + 1
          break
        end
        local c = text:sub(at, at)
        if c == ";" then
          if depth <= 0 and block == 0 then
            st.last, i = at - 1, at + 1
            break
          end
          i = at + 1
        elseif c == "'" then
          local prefix = text:sub(at - 1, at - 1)
          local escapes = (prefix == "E" or prefix == "e") and not text:sub(at - 2, at - 2):match(IDENT_CHAR)
          i = skip_quoted(text, at, escapes)
        elseif c == '"' then
          i = skip_quoted(text, at, false)
        elseif c == "$" then
          local tag = not text:sub(at - 1, at - 1):match(IDENT_CHAR)
            and (text:match("^%$[%a_\128-\255][%w_\128-\255]*%$", at) or text:match("^%$%$", at))
          if tag then
            local close = select(2, text:find(tag, at + #tag, true))
            i = close and close + 1 or n + 1
          else
            i = at + 1
          end
        elseif c == "(" then
          depth, i = depth + 1, at + 1
        elseif c == ")" then
          depth, i = depth - 1, at + 1
        elseif c == "-" or c == "/" then
          local after = skip_blank(text, at)
          i = after > at and after or at + 1
        else -- a word, in a CREATE FUNCTION or PROCEDURE statement
          local word = text:match(WORD, at)
          if depth == 0 and not text:sub(at - 1, at - 1):match(IDENT_CHAR) then
            word = word:upper()
            if word == "BEGIN" then
              block = block + 1
            elseif word == "CASE" and block > 0 then
              block = block + 1
            elseif word == "END" and block > 0 then
              block = block - 1
            end
          end
          i = at + #word
        end
      end
      out[#out + 1] = st
      i = skip_blank(text, i)
    end
  end
  return out
end

--- The first words of the statement at the start of text (as M.statements gives them), without
--- looking for where it ends: for a text with no semicolon at all.
function M.head(text)
  local i = skip_blank(text, 1)
  local st = { first = i, last = #text, words = {} }
  while #st.words < 4 do
    local word = text:match(WORD, i)
    if not word then
      break
    end
    st.words[#st.words + 1] = word:upper()
    i = skip_blank(text, i + #word)
  end
  st.after = text:sub(i, i)
  return st
end

return M
