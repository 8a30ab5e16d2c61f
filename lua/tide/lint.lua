-- tide.lint: checks the SQL a revision would send (recorded by a recording db, see tide.db)
-- for statements that are dangerous on a busy production database:
--
--   index         CREATE INDEX without CONCURRENTLY on an existing table (blocks writes while it builds)
--   not_null      ADD COLUMN ... NOT NULL without a DEFAULT (fails on a table with rows)
--   rewrite       ALTER COLUMN ... TYPE (most type changes rewrite the table under an exclusive lock)
--   not_valid     ADD FOREIGN KEY / CHECK without NOT VALID (validates every row under the lock)
--   destructive   DROP TABLE, DROP SCHEMA, TRUNCATE, DROP COLUMN in an upgrade (data loss; old code
--                 still reads it): M.drops_data, the test the backup's downgrade check uses too
--   concurrently  CONCURRENTLY inside a transactional revision (PostgreSQL refuses it)
--
-- and, for row-level security (RLS):
--
--   rls_missing          a table created without ENABLE and FORCE ROW LEVEL SECURITY in the same
--                        revision (only with `lint = { require_rls = true }` in tide.lua)
--   rls_disable          DISABLE / NO FORCE ROW LEVEL SECURITY in an upgrade
--   definer_search_path  a SECURITY DEFINER function without a pinned search_path
--   definer_public       a SECURITY DEFINER function still executable by PUBLIC when its revision ends
--   view_invoker         a view over an RLS table without security_invoker
--   policy_per_row       a policy calling a function without column arguments outside (SELECT f())
--   grant_public         GRANT ... TO PUBLIC on an RLS table
--   bypassrls            CREATE/ALTER ROLE ... BYPASSRLS
--
-- An RLS table is one the lint run saw ENABLE ROW LEVEL SECURITY for, one the database says has
-- it (options.rls_tables, when tide lints pending revisions with a connection), or, with
-- require_rls, any table. The findings that a revision's end decides (rls_missing, the two
-- definer rules, view_invoker) count as fixed when a later revision of the same run fixes them:
-- a revision applied in the field cannot be edited, a later one is how it gets repaired.
--
-- "Existing table" means any table the same lint run did not create earlier: a table created
-- by a pending revision is empty, and locking it harms nobody.
-- A revision opts out of a rule with a reason: `allow = { destructive = "table unused since v41" }`.
-- Pure: no database, no I/O; tide.checks records the statements, the commands print the findings.
local errors = require "tide.errors"

local M = {}

M.rules = {
  index = "CREATE INDEX without CONCURRENTLY on an existing table blocks writes to it while the index builds: "
    .. "use concurrently = true in a transaction = false revision",
  not_null = "ADD COLUMN ... NOT NULL without a DEFAULT fails on a table that has rows: add a default, "
    .. "or add the column nullable, backfill, then SET NOT NULL",
  rewrite = "a column type change rewrites the table (and its indexes) under an ACCESS EXCLUSIVE lock",
  not_valid = "a foreign key or check constraint added without NOT VALID checks every row while holding a lock: "
    .. "add it NOT VALID, then VALIDATE CONSTRAINT in a later revision",
  destructive = "drops data in an upgrade; code still running against the old schema breaks",
  concurrently = "CONCURRENTLY cannot run inside a transaction block: set transaction = false on the revision",
  rls_missing = "created without ENABLE and FORCE ROW LEVEL SECURITY in the same revision (lint.require_rls): "
    .. 'add rls.enable_rls(db, "<table>", { force = true }) and its policies',
  rls_disable = "turns row-level security off (DISABLE) or off for the table's owner (NO FORCE): keep it enabled "
    .. "and forced, and change the policies instead",
  definer_search_path = "a SECURITY DEFINER function without a pinned search_path resolves names through the "
    .. "caller's search_path: add SET search_path = pg_catalog, pg_temp (and a BEGIN ATOMIC body or qualified names)",
  definer_public = "a SECURITY DEFINER function is executable by PUBLIC (every role) unless revoked: add "
    .. "REVOKE ALL ON FUNCTION <name>(...) FROM PUBLIC and GRANT EXECUTE to the roles that need it, "
    .. "in the same revision",
  view_invoker = "a view over a row-level security table applies the policies as the view's owner, not as the "
    .. "user who queries it (and a table owner without FORCE skips them): create it WITH (security_invoker = true)",
  policy_per_row = "a function called without column arguments in a policy runs once per row: "
    .. "write (SELECT f()) so it runs once per statement",
  grant_public = "GRANT ... TO PUBLIC on a row-level security table lets every role of the cluster in, and "
    .. "any of them can name any application user: grant to the application role instead",
  bypassrls = "BYPASSRLS makes a role skip every policy: the application must connect as a role without it; "
    .. "give it to an operator's role by hand, outside the revisions",
}
M.rule_names = {}
for name in pairs(M.rules) do
  M.rule_names[#M.rule_names + 1] = name
end
table.sort(M.rule_names)

--- Splits SQL text into statements, aware of quotes, dollar quotes and comments.
--- Each statement is returned twice: as written, and "bare" (comments removed, string literals
--- emptied, whitespace collapsed, upper case) for matching.
---@param text string
---@return {text: string, bare: string}[]
function M.split(text)
  local out = {}
  local i, n = 1, #text
  local start = 1
  local bare = {}
  local function finish(stop)
    local s = text:sub(start, stop):gsub("^%s+", ""):gsub("%s+$", "")
    local b = table.concat(bare):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
    if b ~= "" then
      out[#out + 1] = { text = s, bare = b:upper() }
    end
    bare = {}
  end
  while i <= n do
    local c = text:sub(i, i)
    if c == "-" and text:sub(i + 1, i + 1) == "-" then
      local e = text:find("\n", i, true) or n
      bare[#bare + 1] = " "
      i = e + 1
    elseif c == "/" and text:sub(i + 1, i + 1) == "*" then
      local e = select(2, text:find("*/", i + 2, true)) or n
      bare[#bare + 1] = " "
      i = e + 1
    elseif c == "'" then
      local j = i + 1
      while j <= n do
        if text:sub(j, j) == "'" then
          if text:sub(j + 1, j + 1) == "'" then
            j = j + 2
          else
            break
          end
        else
          j = j + 1
        end
      end
      bare[#bare + 1] = "''"
      i = j + 1
    elseif c == '"' then
      local e = text:find('"', i + 1, true) or n
      -- quoted identifiers keep their spelling (lint compares names case-insensitively anyway)
      bare[#bare + 1] = text:sub(i + 1, e - 1)
      i = e + 1
    elseif c == "$" and text:match("^%$[%a_]*[%w_]*%$", i) then
      local tag = text:match("^%$[%a_]*[%w_]*%$", i)
      local e = select(2, text:find(tag, i + #tag, true)) or n
      bare[#bare + 1] = " $$ "
      i = e + 1
    elseif c == ";" then
      finish(i - 1)
      start = i + 1
      i = i + 1
    else
      bare[#bare + 1] = c
      i = i + 1
    end
  end
  finish(n)
  return out
end

-- The last component of a (possibly qualified) name, lower case.
local function base_name(name)
  return (name:match("([^.]+)$") or name):lower()
end

-- Splits "a, b (c, d), e" at top-level commas.
local function actions(text)
  local list, depth, start = {}, 0, 1
  for i = 1, #text do
    local c = text:sub(i, i)
    if c == "(" then
      depth = depth + 1
    elseif c == ")" then
      depth = depth - 1
    elseif c == "," and depth == 0 then
      list[#list + 1] = text:sub(start, i - 1):gsub("^%s+", "")
      start = i + 1
    end
  end
  list[#list + 1] = text:sub(start):gsub("^%s+", "")
  return list
end

local NAME = "([%w_$.]+)"

-- ALTER TABLE [IF EXISTS] [ONLY] name rest -> name, rest (nil for any other statement).
local function alter_table(b)
  for _, head in ipairs { "^ALTER TABLE IF EXISTS ONLY ", "^ALTER TABLE IF EXISTS ", "^ALTER TABLE ONLY ",
    "^ALTER TABLE " } do
    local target, rest = b:match(head .. NAME .. " (.*)$")
    if target then
      return target, rest
    end
  end
end

-- An ALTER TABLE action that loses data: DROP [COLUMN] x (a constraint holds no data).
local function action_drops_data(a)
  return a:match("^DROP ") ~= nil and not a:match("^DROP CONSTRAINT ")
end

-- What a DO block's body (which lint does not parse) must not say for it to keep data.
local DROPS_IN_BODY = { "DROP TABLE", "DROP SCHEMA", "DROP COLUMN", "TRUNCATE" }

--- The one destructive-SQL test, behind lint's `destructive` rule and the backup's refusal of a
--- downgrade without a backup: does this statement (as M.split gives it) lose data? DROP TABLE,
--- DROP SCHEMA (its tables go with it), TRUNCATE, ALTER TABLE ... DROP [COLUMN]; a DO block
--- when its body says any of DROP TABLE, DROP SCHEMA, DROP COLUMN or TRUNCATE (it cannot be
--- read further, so it counts). Words in comments and string literals do not count.
---@param st {text: string, bare: string}
---@return boolean
function M.statement_drops_data(st)
  local b = st.bare
  if b:match("^DROP TABLE ") or b:match("^DROP SCHEMA ") or b:match("^TRUNCATE ") then
    return true
  elseif b:match("^DO ") then
    local body = st.text:upper():gsub("%s+", " ")
    for _, words in ipairs(DROPS_IN_BODY) do
      if body:find(words, 1, true) then
        return true
      end
    end
    return false
  end
  local _, rest = alter_table(b)
  for _, a in ipairs(rest and actions(rest) or {}) do
    if action_drops_data(a) then
      return true
    end
  end
  return false
end

--- Does any statement of sql lose data (M.statement_drops_data)?
---@param sql string one or more statements
---@return boolean
function M.drops_data(sql)
  for _, st in ipairs(M.split(sql)) do
    if M.statement_drops_data(st) then
      return true
    end
  end
  return false
end

-- Findings for one statement (as M.split gives it): list of rule names.
local function check_statement(st, created, transactional)
  local b = st.bare
  local found = {}
  local function hit(rule)
    found[#found + 1] = rule
  end
  local function existing(name)
    return not created[base_name(name)]
  end
  if transactional and b:find("%f[%w]CONCURRENTLY%f[^%w]") then
    hit("concurrently")
  end
  local tname = b:match("^CREATE %a* ?%a* ?TABLE IF NOT EXISTS " .. NAME) or b:match("^CREATE TABLE " .. NAME)
    or b:match("^CREATE %a+ TABLE " .. NAME)
  if tname then
    created[base_name(tname)] = true
    return found
  end
  if b:match("^CREATE UNIQUE INDEX ") or b:match("^CREATE INDEX ") then
    local on = b:match(" ON ONLY " .. NAME) or b:match(" ON " .. NAME)
    if not b:find(" CONCURRENTLY ", 1, true) and on and existing(on) then
      hit("index")
    end
    return found
  end
  if b:match("^DROP ") or b:match("^TRUNCATE ") or b:match("^DO ") then
    if M.statement_drops_data(st) then
      hit("destructive")
    end
    return found
  end
  local target, rest = alter_table(b)
  if not target then
    return found
  end
  local old = existing(target)
  for _, a in ipairs(actions(rest)) do
    if a:match("^ADD ") and not a:match("^ADD CONSTRAINT ") and not a:match("^ADD FOREIGN KEY")
      and not a:match("^ADD CHECK") and not a:match("^ADD PRIMARY KEY") and not a:match("^ADD UNIQUE")
      and not a:match("^ADD EXCLUDE") then
      local defaulted = a:find("%f[%w]DEFAULT%f[^%w]") or a:find("GENERATED ", 1, true)
      if old and a:find("NOT NULL", 1, true) and not defaulted then
        hit("not_null")
      end
    elseif a:match("^ADD ") then
      if old and (a:find("FOREIGN KEY", 1, true) or a:find("CHECK", 1, true)) and not a:find("NOT VALID", 1, true) then
        hit("not_valid")
      end
    elseif a:match("^ALTER COLUMN %S+ TYPE ") or a:match("^ALTER COLUMN %S+ SET DATA TYPE ")
      or a:match("^ALTER %S+ TYPE ") or a:match("^ALTER %S+ SET DATA TYPE ") then
      if old then
        hit("rewrite")
      end
    elseif action_drops_data(a) then
      hit("destructive")
    end
  end
  return found
end

-- Row-level security -------------------------------------------------------------------------

local CALL_KEYWORDS = {}
for word in ([[EXISTS IN ANY ALL SOME USING CHECK VALUES ARRAY ROW NOT AND OR SELECT WHERE ON AS CAST
  OVER FILTER WITHIN WITH LATERAL FROM JOIN THEN ELSE WHEN IS BETWEEN LIKE ILIKE SIMILAR TO]]):gmatch("%S+") do
  CALL_KEYWORDS[word] = true
end

-- Are a call's arguments constants only (nothing of the row): none, '' (an emptied string),
-- numbers, TRUE/FALSE/NULL, casts of those?
local function constant_arguments(args)
  local rest = args:gsub("::%s*[%w_.]+", ""):gsub("''", ""):gsub("%f[%w]TRUE%f[^%w]", "")
    :gsub("%f[%w]FALSE%f[^%w]", ""):gsub("%f[%w]NULL%f[^%w]", ""):gsub("[%d.]+", ""):gsub("[%s,]", "")
  return rest == ""
end

-- Calls in a policy's text that run once per row: a function of no column, not written as the
-- whole of a scalar subquery. Returns the first such call's name, or nil. The scan goes on
-- inside every argument list, so nested calls are seen too.
local function per_row_call(text)
  local pos = 1
  while true do
    local s, e, name = text:find("([%a_][%w_$.]*)%s*%(", pos)
    if not s then
      return nil
    end
    local args = text:match("^%b()", e)
    if args and not CALL_KEYWORDS[name] and constant_arguments(args:sub(2, -2)) then
      -- (SELECT f()), or as PostgreSQL prints it back: ( SELECT f() AS f)
      local after = text:sub(e + #args)
      local wrapped = text:sub(1, s - 1):match("%(%s*SELECT%s*$")
        and (after:match("^%s*%)") or after:match("^%s+AS%s+[%w_$]+%s*%)"))
      if not wrapped then
        return name:lower()
      end
    end
    pos = e + 1
  end
end

-- The names in "a, b(x, y), c" at top level, each without its argument list, lower case.
local function name_list(text)
  local names = {}
  for _, item in ipairs(actions(text)) do
    local name = item:match("^([%w_$.]+)")
    if name then
      names[#names + 1] = base_name(name)
    end
  end
  return names
end

local SECURITY_INVOKER_OFF = { ["FALSE"] = true, OFF = true, ["0"] = true, NO = true }

-- Does a view's WITH (...) list turn security_invoker on?
local function invoker_on(options)
  for _, item in ipairs(actions(options or "")) do
    local key, value = item:match("^([%w_]+)%s*=?%s*([%w_]*)")
    if key == "SECURITY_INVOKER" then
      return not SECURITY_INVOKER_OFF[value]
    end
  end
  return false
end

local NOT_TABLES = {}
for word in ([[FUNCTION PROCEDURE ROUTINE SEQUENCE SCHEMA DATABASE DOMAIN TYPE LANGUAGE LARGE FOREIGN
  TABLESPACE PARAMETER ALL]]):gmatch("%S+") do
  NOT_TABLES[word] = true
end

-- The RLS findings of one statement. state is the lint run's: rls (table -> {enabled, forced}),
-- rls_tables (set), views (set), and the revision's pending checks (pending_tables,
-- pending_definers, pending_paths, pending_views: name -> statement) plus the findings still
-- open from earlier revisions (open: list of {rule, name, finding}). hit(rule, object) reports.
local function check_rls(b, state, hit, fixed)
  local function is_rls(name)
    name = base_name(name)
    return state.rls_tables[name] or (state.require_rls and not state.views[name])
  end
  -- CREATE TABLE (not a temporary one: it lives as long as tide's session)
  if not b:match("^CREATE %a* ?TEMP") and not b:match("^CREATE %a* ?%a* ?TEMPORARY") then
    local tname = b:match("^CREATE %a* ?%a* ?TABLE IF NOT EXISTS " .. NAME) or b:match("^CREATE TABLE " .. NAME)
      or b:match("^CREATE %a+ TABLE " .. NAME)
    if tname then
      tname = base_name(tname)
      state.rls[tname] = { enabled = false, forced = false }
      if state.require_rls then
        state.pending_tables[tname] = true
      end
      return
    end
  end
  local target, rest = b:match("^ALTER TABLE " .. NAME .. " (.*)$")
  if target == "IF" or target == "ONLY" then
    target, rest = rest:gsub("^EXISTS ", ""):gsub("^ONLY ", ""):match("^" .. NAME .. " (.*)$")
  end
  if target then
    local name = base_name(target)
    local t = state.rls[name] or { enabled = false, forced = false }
    state.rls[name] = t
    for _, a in ipairs(actions(rest)) do
      if a == "ENABLE ROW LEVEL SECURITY" then
        t.enabled = true
        state.rls_tables[name] = true
      elseif a == "FORCE ROW LEVEL SECURITY" then
        t.forced = true
      elseif a == "DISABLE ROW LEVEL SECURITY" then
        t.enabled = false
        hit("rls_disable", name)
      elseif a == "NO FORCE ROW LEVEL SECURITY" then
        t.forced = false
        hit("rls_disable", name)
      end
    end
    if t.enabled and t.forced then
      state.pending_tables[name] = nil
      fixed("rls_missing", name)
    end
    return
  end
  -- SECURITY DEFINER functions: search_path pinned in the statement (or by a later ALTER
  -- FUNCTION ... SET search_path), EXECUTE revoked from PUBLIC before the revision ends
  local fname = b:match("^CREATE OR REPLACE FUNCTION " .. NAME) or b:match("^CREATE FUNCTION " .. NAME)
    or b:match("^CREATE OR REPLACE PROCEDURE " .. NAME) or b:match("^CREATE PROCEDURE " .. NAME)
  local altered = b:match("^ALTER FUNCTION " .. NAME) or b:match("^ALTER PROCEDURE " .. NAME)
    or b:match("^ALTER ROUTINE " .. NAME)
  if fname or altered then
    local name = base_name(fname or altered)
    local pinned = b:find("%f[%w]SET SEARCH_PATH%f[^%w]")
    if b:find("%f[%w]SECURITY DEFINER%f[^%w]") then
      state.pending_definers[name] = true
      if fname and not pinned then
        state.pending_paths[name] = true
      end
    end
    if pinned then
      state.pending_paths[name] = nil
      fixed("definer_search_path", name)
    end
    return
  end
  if b:match("^REVOKE ") then
    local privileges, on, from = b:match("^REVOKE (.-) ON (.-) FROM (.*)$")
    if not (privileges and from:find("%f[%w]PUBLIC%f[^%w]")) then
      return
    end
    if not (privileges:find("%f[%w]EXECUTE%f[^%w]") or privileges:find("%f[%w]ALL%f[^%w]")) then
      return
    end
    local names
    if on:match("^ALL FUNCTIONS IN SCHEMA ") or on:match("^ALL ROUTINES IN SCHEMA ")
      or on:match("^ALL PROCEDURES IN SCHEMA ") then
      names = nil
    else
      local list = on:match("^FUNCTION (.*)$") or on:match("^ROUTINE (.*)$") or on:match("^PROCEDURE (.*)$")
      if not list then
        return
      end
      names = name_list(list)
    end
    if names == nil then
      state.pending_definers = {}
      fixed("definer_public", nil)
    else
      for _, name in ipairs(names) do
        state.pending_definers[name] = nil
        fixed("definer_public", name)
      end
    end
    return
  end
  -- Views
  local view, options, query = b:match("^CREATE OR REPLACE %a* ?%a* ?VIEW " .. NAME .. "(.-) AS (.*)$")
  if not view then
    view, options, query = b:match("^CREATE %a* ?%a* ?VIEW " .. NAME .. "(.-) AS (.*)$")
  end
  if view and not b:match("^CREATE MATERIALIZED") and not b:match("^CREATE OR REPLACE MATERIALIZED") then
    local name = base_name(view)
    state.views[name] = true
    local with = options:match("WITH %((.*)%)%s*$")
    if not invoker_on(with) then
      for _, pattern in ipairs { "%f[%w]FROM " .. NAME, "%f[%w]JOIN " .. NAME } do
        for source in query:gmatch(pattern) do
          if is_rls(source) then
            state.pending_views[name] = true
          end
        end
      end
    end
    return
  end
  local altered_view, set = b:match("^ALTER VIEW " .. NAME .. " SET %((.*)%)$")
  if altered_view and invoker_on(set) then
    state.pending_views[base_name(altered_view)] = nil
    fixed("view_invoker", base_name(altered_view))
    return
  end
  -- Policies
  if b:match("^CREATE POLICY ") or b:match("^ALTER POLICY ") then
    local call = per_row_call(b)
    if call then
      hit("policy_per_row", call .. "()")
    end
    return
  end
  -- GRANT ... ON tables TO PUBLIC
  if b:match("^GRANT ") then
    local on, to = b:match("^GRANT .- ON (.-) TO (.*)$")
    if not (on and to:find("%f[%w]PUBLIC%f[^%w]")) then
      return
    end
    if on:match("^ALL TABLES IN SCHEMA ") then
      if state.require_rls or next(state.rls_tables) then
        hit("grant_public", "all tables in schema " .. on:match("^ALL TABLES IN SCHEMA (.*)$"):lower())
      end
      return
    end
    local first = on:match("^(%a+) ")
    if first and NOT_TABLES[first] then
      return
    end
    for _, name in ipairs(name_list((on:gsub("^TABLE ", "")))) do
      if is_rls(name) then
        hit("grant_public", name)
      end
    end
    return
  end
  -- Roles that skip every policy
  if (b:match("^CREATE ROLE ") or b:match("^CREATE USER ") or b:match("^CREATE GROUP ")
      or b:match("^ALTER ROLE ") or b:match("^ALTER USER ")) and b:find("%f[%w]BYPASSRLS%f[^%w]") then
    hit("bypassrls", base_name(b:match("^%a+ %a+ " .. NAME) or "?"))
  end
end

-- What the end of a revision decides: what is still pending becomes a finding.
local PENDING = {
  { "pending_tables", "rls_missing", "table " },
  { "pending_paths", "definer_search_path", "function " },
  { "pending_definers", "definer_public", "function " },
  { "pending_views", "view_invoker", "view " },
}

--- Lints the recorded statements of revisions, in order.
---@param items table[] {rev = revision, statements = {string...}, direction = "upgrade"}
---@param options? {require_rls: boolean?, rls_tables: string[]?} lint.require_rls, and the tables
---  the database already has RLS enabled on
---@return table[] findings {revision, file, rule, message, statement, object, allowed (reason or nil)}
function M.check(items, options)
  options = options or {}
  local findings, created = {}, {}
  local state = { rls = {}, rls_tables = {}, views = {}, require_rls = options.require_rls, open = {} }
  for _, name in ipairs(options.rls_tables or {}) do
    state.rls_tables[base_name(name)] = true
  end
  for _, item in ipairs(items) do
    local rev = item.rev
    local allow = rev.allow or {}
    for rule, reason in pairs(allow) do
      if not M.rules[rule] then
        findings[#findings + 1] = { revision = rev.revision, file = rev.file, rule = "allow",
          message = string.format("allow: unknown lint rule `%s`%s", tostring(rule),
            errors.did_you_mean(tostring(rule), M.rule_names)) }
      elseif type(reason) ~= "string" or reason:match("^%s*$") then
        findings[#findings + 1] = { revision = rev.revision, file = rev.file, rule = "allow",
          message = string.format("allow.%s needs a reason (a non-empty string)", rule) }
      end
    end
    state.pending_tables, state.pending_definers, state.pending_paths, state.pending_views = {}, {}, {}, {}
    local statement_of = {} -- rule .. object -> the statement that left it pending
    local function finding(rule, object, text, reason)
      if (rule == "destructive" or rule == "rls_disable") and item.direction ~= "upgrade" then
        reason = reason or "downgrade" -- a downgrade removes what its upgrade added
      end
      local f = { revision = rev.revision, file = rev.file, rule = rule, object = object,
        message = object and (object .. ": " .. M.rules[rule]) or M.rules[rule],
        statement = text and (#text > 240 and (text:sub(1, 240) .. " ...") or text),
        allowed = type(reason) == "string" and reason ~= "" and reason or nil }
      findings[#findings + 1] = f
      return f
    end
    -- a later revision fixes what an earlier one left open
    local function fixed(rule, name)
      for _, open in ipairs(state.open) do
        if open.rule == rule and (name == nil or open.name == name) and not open.finding.allowed then
          open.finding.allowed = string.format("fixed by revision %s (%s)", rev.revision, rev.file)
        end
      end
    end
    for _, chunk in ipairs(item.statements) do
      for _, st in ipairs(M.split(chunk)) do
        for _, rule in ipairs(check_statement(st, created, rev.transaction)) do
          finding(rule, nil, st.text, allow[rule])
        end
        local before = {}
        for _, p in ipairs(PENDING) do
          for name in pairs(state[p[1]]) do
            before[p[2] .. " " .. name] = true
          end
        end
        check_rls(st.bare, state, function(rule, object)
          finding(rule, object, st.text, allow[rule])
        end, fixed)
        for _, p in ipairs(PENDING) do
          for name in pairs(state[p[1]]) do
            if not before[p[2] .. " " .. name] then
              statement_of[p[2] .. " " .. name] = st.text
            end
          end
        end
      end
    end
    for _, p in ipairs(PENDING) do
      local names = {}
      for name in pairs(state[p[1]]) do
        names[#names + 1] = name
      end
      table.sort(names)
      for _, name in ipairs(names) do
        local f = finding(p[2], p[3] .. name, statement_of[p[2] .. " " .. name], allow[p[2]])
        state.open[#state.open + 1] = { rule = p[2], name = name, finding = f }
      end
    end
  end
  return findings
end

return M
