-- tide.rlscheck: the behaviour checks `tide test` runs on its scratch database: files in
-- tests/ beside versions/ (tide.lua's `tests`), each naming the revision after which its
-- checks hold. tide test runs them after that revision is applied, and again after its
-- downgrade and upgrade.
--
--   -- tests/003_rls.lua
--   return {
--     revision = "003",
--     setup = function(db) ... return fixtures end,        -- optional, once per run of the file
--     checks = {
--       { "alice sees her own accounts", function(db, fixtures)
--         db:as(db.vars.app_role, { ["app.user_id"] = fixtures.alice }, function(db)
--           db:expect_rows({ { id = fixtures.account } }, "SELECT id FROM accounts ORDER BY id")
--           db:expect_error("42501", "INSERT INTO users (username) VALUES ('x')")
--         end)
--       end },
--     },
--   }
--
-- A file runs in one transaction that is always rolled back: setup(db) first (as the scratch
-- URL's role), then each check in a savepoint of its own, so a failing check leaves nothing
-- behind for the next. db is tide's `db` (exec, query, one, vars) plus:
--
--   db:as(role, settings, fn)            fn(db) as `role` (SET LOCAL ROLE) with the settings
--                                        set_config'd local to the transaction; afterwards the
--                                        role and settings are as before, what fn wrote stays
--   db:expect_rows(rows, sql, ...)       the statement returns exactly these rows, in order
--   db:expect_count(n, sql, ...)         it returns or changes exactly n rows
--   db:expect_error(sqlstate, sql, ...)  it fails with that SQLSTATE (nothing else counts)
--
-- A check fails by raising: an expectation, assert or error. The files load in the same
-- restricted environment as revisions.
local config = require "tide.config"
local core = require "tide.core"
local dbmod = require "tide.db"
local errors = require "tide.errors"
local sqlmod = require "tide.sql"

local M = {}

local FIELDS = { revision = "string", setup = "function", checks = "table" }
local FIELD_NAMES = { "checks", "revision", "setup" }

local function fail(path, message)
  errors.raise("load", string.format("%s: %s", path, message), { file = path })
end

--- Loads one tests file: {file, revision, setup, checks = {{name, fn}...}}.
---@param path string
---@param graph table the revision graph (by_id, list)
function M.load_file(path, graph)
  local source = config.read_file(path)
  if not source then
    fail(path, "cannot read the file")
  end
  local chunk, err = load(source, "@" .. path, "t", config.sandbox())
  if not chunk then
    errors.raise("load", err, { file = path })
  end
  local ok, t = pcall(chunk)
  if not ok then
    local message = tostring(t)
    errors.raise("load", message:find(path, 1, true) and message or (path .. ": " .. message), { file = path })
  end
  if type(t) ~= "table" then
    fail(path, "a tests file must return a table, got " .. type(t))
  end
  for k, v in pairs(t) do
    if not FIELDS[k] then
      fail(path, string.format("unknown key `%s`%s", tostring(k), errors.did_you_mean(tostring(k), FIELD_NAMES)))
    elseif type(v) ~= FIELDS[k] then
      fail(path, string.format("`%s` must be a %s, got %s", k, FIELDS[k], type(v)))
    end
  end
  if t.revision == nil or t.checks == nil then
    fail(path, "needs `revision` (after which its checks hold) and `checks`")
  end
  if not graph.by_id[t.revision] then
    local ids = {}
    for _, rev in ipairs(graph.list) do
      ids[#ids + 1] = rev.revision
    end
    fail(path, string.format("revision %q is not a known revision%s", t.revision, errors.did_you_mean(t.revision, ids)))
  end
  local checks, seen = {}, {}
  for i, c in ipairs(t.checks) do
    if type(c) ~= "table" or type(c[1]) ~= "string" or c[1] == "" or type(c[2]) ~= "function" then
      fail(path, string.format("checks[%d] must be { \"name\", function(db, fixtures) ... end }", i))
    end
    if seen[c[1]] then
      fail(path, string.format("checks[%d]: a check named %q is already in this file", i, c[1]))
    end
    seen[c[1]] = true
    checks[i] = { name = c[1], fn = c[2] }
  end
  if #checks == 0 then
    fail(path, "`checks` is empty")
  end
  return { file = path, revision = t.revision, setup = t.setup, checks = checks }
end

--- Every tests file of the project: revision id -> list of loaded files, in file name order.
--- No folder, no checks.
---@param cfg table (tests_dir)
---@param graph table
---@return table
function M.load(cfg, graph)
  local by_revision = {}
  local dir = cfg.tests_dir
  if not dir or not core.isdir(dir) then
    return by_revision
  end
  local names = {}
  for _, name in ipairs(core.listdir(dir)) do
    if name:sub(-4) == ".lua" then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  for _, name in ipairs(names) do
    local file = M.load_file(config.join(dir, name), graph)
    by_revision[file.revision] = by_revision[file.revision] or {}
    table.insert(by_revision[file.revision], file)
  end
  return by_revision
end

-- The db a check receives ---------------------------------------------------------------------

local Check = setmetatable({}, { __index = dbmod.DB })
Check.__index = Check
Check.__name = "tide.CheckDB"

local function savepoint(db)
  db.checkpoints = db.checkpoints + 1
  local name = "tide_check_" .. db.checkpoints
  db.conn:exec("SAVEPOINT " .. name)
  return name
end

local function roll_back_to(db, name)
  db.conn:exec("ROLLBACK TO SAVEPOINT " .. name .. "; RELEASE SAVEPOINT " .. name)
end

-- A value as a check's message shows it.
local function show(v)
  if type(v) == "string" then
    return string.format("%q", v)
  elseif type(v) ~= "table" then
    return v == core.null and "NULL" or tostring(v)
  end
  local keys = {}
  for k in pairs(v) do
    keys[#keys + 1] = k
  end
  table.sort(keys, function(a, b)
    return tostring(a) < tostring(b)
  end)
  local parts = {}
  for i, k in ipairs(keys) do
    parts[i] = (type(k) == "number" and "" or (tostring(k) .. " = ")) .. show(v[k])
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function same_row(a, b)
  for k, v in pairs(a) do
    if b[k] ~= v then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

---Runs fn(db) as role, with settings (name -> value) set local to the transaction. Afterwards
---the role and the settings are what they were; what fn wrote stays. An error in fn rolls back
---what fn did and is raised again. Not nested: one role at a time.
---@param role string
---@param settings table<string, string|number|boolean>|nil
---@param fn fun(db: table): any
function Check:as(role, settings, fn)
  if type(role) ~= "string" or role == "" then
    error("db:as(role, settings, fn): role must be a role name", 2)
  end
  if settings ~= nil and type(settings) ~= "table" then
    error("db:as(role, settings, fn): settings must be a table of name = value", 2)
  end
  if type(fn) ~= "function" then
    error("db:as(role, settings, fn): fn must be a function", 2)
  end
  if self.acting then
    error(string.format("db:as(%q): already acting as %q (db:as does not nest)", role, self.acting), 2)
  end
  local names = {}
  for name, value in pairs(settings or {}) do
    local t = type(value)
    if type(name) ~= "string" or not (t == "string" or t == "number" or t == "boolean") then
      error("db:as: settings must map setting names to strings, numbers or booleans", 2)
    end
    names[#names + 1] = name
  end
  table.sort(names)
  local previous = {}
  for i, name in ipairs(names) do
    local row = self.conn:query("SELECT pg_catalog.current_setting($1, true) AS v", name)[1]
    previous[i] = row.v ~= core.null and row.v or ""
  end
  local point = savepoint(self)
  local ok, result = pcall(function()
    local set, err = pcall(self.conn.exec, self.conn, "SET LOCAL ROLE " .. sqlmod.ident(role))
    if not set then
      error(string.format("db:as(%q): %s (the scratch URL's role must be a superuser or a member of %s)",
        role, errors.is_error(err) and err.message or tostring(err), sqlmod.ident(role)), 0)
    end
    for _, name in ipairs(names) do
      self.conn:query("SELECT pg_catalog.set_config($1, $2, true)", name, tostring(settings[name]))
    end
    self.acting = role
    return table.pack(fn(self))
  end)
  self.acting = nil
  if not ok then
    roll_back_to(self, point)
    error(result, 0)
  end
  -- back to the session's own role (any role may), then the settings as they were
  self.conn:exec("SET LOCAL ROLE NONE")
  for i, name in ipairs(names) do
    self.conn:query("SELECT pg_catalog.set_config($1, $2, true)", name, previous[i])
  end
  self.conn:exec("RELEASE SAVEPOINT " .. point)
  return table.unpack(result, 1, result.n)
end

---The statement returns exactly `rows` (a list of {column = value}), in order.
---@param rows table[]
---@param sql string
function Check:expect_rows(rows, sql, ...)
  if type(rows) ~= "table" or type(sql) ~= "string" then
    error("db:expect_rows(rows, sql, ...): rows must be a list of rows and sql a string", 2)
  end
  local got = self:query(sql, ...)
  local equal = #got == #rows
  for i = 1, #rows do
    equal = equal and same_row(rows[i], got[i])
  end
  if not equal then
    error(string.format("expected %d row%s %s, got %d %s\n  from: %s", #rows, #rows == 1 and "" or "s", show(rows),
      #got, show(got), sql), 2)
  end
  return got
end

---The statement returns (SELECT) or changes (INSERT, UPDATE, DELETE) exactly n rows.
---@param n integer
---@param sql string
function Check:expect_count(n, sql, ...)
  if math.type(n) ~= "integer" or type(sql) ~= "string" then
    error("db:expect_count(n, sql, ...): n must be an integer and sql a string", 2)
  end
  local _, count = self:query(sql, ...)
  if count ~= n then
    error(string.format("expected %d row%s, got %d\n  from: %s", n, n == 1 and "" or "s", count, sql), 2)
  end
end

---The statement fails with this SQLSTATE; the failure is rolled back, the check goes on.
---@param sqlstate string five characters, e.g. "42501"
---@param sql string
function Check:expect_error(sqlstate, sql, ...)
  if type(sqlstate) ~= "string" or not sqlstate:match("^%w%w%w%w%w$") or type(sql) ~= "string" then
    error("db:expect_error(sqlstate, sql, ...): sqlstate must be a SQLSTATE such as \"42501\" and sql a string", 2)
  end
  local point = savepoint(self)
  local ok, err = pcall(self.conn.query, self.conn, sql, ...)
  roll_back_to(self, point)
  if ok then
    error(string.format("expected ERROR %s, but the statement succeeded\n  from: %s", sqlstate, sql), 2)
  end
  if not errors.is_error(err) or err.sqlstate ~= sqlstate then
    error(string.format("expected ERROR %s, got %s\n  from: %s", sqlstate, tostring(err), sql), 2)
  end
  return err
end

local function new_db(conn, vars)
  local db = dbmod.new(conn, nil, vars)
  db.checkpoints = 0
  return setmetatable(db, Check)
end
M.new_db = new_db

-- Running -------------------------------------------------------------------------------------

local function message_of(err)
  return tostring(err)
end

--- Runs the checks of one tests file on conn, in a transaction that is rolled back.
---@return table {file, passed, failed = {{name, message}}}
function M.run_file(conn, vars, file)
  local result = { file = file.file, passed = 0, failed = {} }
  conn:exec("BEGIN")
  local db = new_db(conn, vars)
  local ok, fixtures = pcall(function()
    return file.setup and file.setup(db)
  end)
  if not ok then
    result.failed[1] = { name = "setup", message = message_of(fixtures) }
  else
    for _, check in ipairs(file.checks) do
      local point = savepoint(db)
      local passed, err = pcall(check.fn, db, fixtures)
      db.acting = nil
      if not pcall(roll_back_to, db, point) then
        -- the check ended the file's transaction: what it wrote may be committed, and the
        -- checks after it would run outside the transaction meant to undo them
        result.failed[#result.failed + 1] = { name = check.name, message = "the check ended its tests file's "
          .. "transaction (COMMIT or ROLLBACK in a check); the file's remaining checks did not run" }
        break
      end
      if passed then
        result.passed = result.passed + 1
      else
        result.failed[#result.failed + 1] = { name = check.name, message = message_of(err) }
      end
    end
  end
  pcall(conn.exec, conn, "ROLLBACK")
  return result
end

--- For `tide test`: runs the checks of rev (if any) and reports failures through problem().
---@param conn userdata the scratch database
---@param cfg table
---@param checks table from M.load
---@param rev table the revision just applied
---@param when string "after upgrade", "after downgrade and upgrade"
---@param entry table the revision's entry in tide test's result (gets checks_passed, checks_failed)
---@param problem fun(text: string)
function M.run(conn, cfg, checks, rev, when, entry, problem)
  for _, file in ipairs(checks[rev.revision] or {}) do
    local result = M.run_file(conn, cfg.vars, file)
    entry.checks_passed = (entry.checks_passed or 0) + result.passed
    entry.checks_failed = (entry.checks_failed or 0) + #result.failed
    for _, f in ipairs(result.failed) do
      problem(string.format("revision %s (%s): check %q failed %s: %s", rev.revision, file.file, f.name, when,
        (f.message:gsub("\n", "\n    "))))
    end
  end
end

return M
