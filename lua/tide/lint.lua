-- tide.lint: checks the SQL a revision would send (recorded by a recording db, see tide.db)
-- for statements that are dangerous on a busy production database:
--
--   index         CREATE INDEX without CONCURRENTLY on an existing table (blocks writes while it builds)
--   not_null      ADD COLUMN ... NOT NULL without a DEFAULT (fails on a table with rows)
--   rewrite       ALTER COLUMN ... TYPE (most type changes rewrite the table under an exclusive lock)
--   not_valid     ADD FOREIGN KEY / CHECK without NOT VALID (validates every row under the lock)
--   destructive   DROP TABLE, DROP COLUMN, TRUNCATE in an upgrade (data loss; old code still reads it)
--   concurrently  CONCURRENTLY inside a transactional revision (PostgreSQL refuses it)
--
-- "Existing table" means any table the same lint run did not create earlier: a table created
-- by a pending revision is empty, and locking it harms nobody.
-- A revision opts out of a rule with a reason: `allow = { destructive = "table unused since v41" }`.
-- Pure: no database, no I/O; tide.safety records the statements and prints the findings.
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

-- Findings for one statement: list of rule names.
local function check_statement(b, created, transactional)
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
  if b:match("^DROP TABLE ") or b:match("^TRUNCATE ") then
    hit("destructive")
    return found
  end
  local target, rest = b:match("^ALTER TABLE IF EXISTS ONLY " .. NAME .. " (.*)$")
  if not target then
    target, rest = b:match("^ALTER TABLE IF EXISTS " .. NAME .. " (.*)$")
  end
  if not target then
    target, rest = b:match("^ALTER TABLE ONLY " .. NAME .. " (.*)$")
  end
  if not target then
    target, rest = b:match("^ALTER TABLE " .. NAME .. " (.*)$")
  end
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
    elseif a:match("^DROP ") and not a:match("^DROP CONSTRAINT ") then
      hit("destructive")
    end
  end
  return found
end

--- Lints the recorded statements of revisions, in order.
---@param items table[] {rev = revision, statements = {string...}, direction = "upgrade"}
---@return table[] findings {revision, file, rule, message, statement, allowed (reason or nil)}
function M.check(items)
  local findings, created = {}, {}
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
    for _, chunk in ipairs(item.statements) do
      for _, st in ipairs(M.split(chunk)) do
        for _, rule in ipairs(check_statement(st.bare, created, rev.transaction)) do
          local reason = allow[rule]
          if rule == "destructive" and item.direction ~= "upgrade" then
            reason = reason or "downgrade" -- a downgrade removes what its upgrade added
          end
          findings[#findings + 1] = { revision = rev.revision, file = rev.file, rule = rule, message = M.rules[rule],
            statement = #st.text > 240 and (st.text:sub(1, 240) .. " ...") or st.text,
            allowed = type(reason) == "string" and reason ~= "" and reason or nil }
        end
      end
    end
  end
  return findings
end

return M
