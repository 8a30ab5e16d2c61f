-- tide.rls: the row-level security part of the schema DSL.
--
--   local rls = require "tide.rls"
--   rls.enable_rls(db, "accounts", { force = true })
--   rls.create_policy(db, "accounts", "accounts_owner", {
--     command = "all", using = "owner_id = app_current_user_id()" })
--
-- Same conventions as tide.schema: `db` first, one statement per call through db:exec, pure
-- builders as `rls.sql.<function>(...) -> string`, identifiers quoted by tide.sql, `using` and
-- `with_check` are SQL expressions written by the revision's author, unknown options raise with
-- a suggestion. A separate module because RLS is a topic of its own (and the part of a schema a
-- reviewer reads hardest); it shares tide.dsl with tide.schema.

local dsl = require "tide.dsl"
local schema = require "tide.schema"

local rls = {}
local build = {}
rls.sql = build

---ALTER TABLE ... ENABLE ROW LEVEL SECURITY [, FORCE ROW LEVEL SECURITY].
---Without `force` the table's owner (usually the role that ran the migration, and too often the
---role the application connects as) bypasses every policy.
---@param table_name string|tide.QualifiedName
---@param options {force: boolean?}?
---@return string
function build.enable_rls(table_name, options)
  options = dsl.check_options("enable_rls", options, { { "force", "boolean" } })
  return ("ALTER TABLE %s ENABLE ROW LEVEL SECURITY%s"):format(dsl.qualified(table_name),
    options.force and ", FORCE ROW LEVEL SECURITY" or "")
end

---ALTER TABLE ... NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY: the inverse of
---enable_rls with or without `force` (NO FORCE on a table that was not forced is harmless).
---@param table_name string|tide.QualifiedName
---@return string
function build.disable_rls(table_name)
  return ("ALTER TABLE %s NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY")
    :format(dsl.qualified(table_name))
end

local COMMANDS = { "all", "select", "insert", "update", "delete" }

---@class tide.PolicyOptions
---@field command ("all"|"select"|"insert"|"update"|"delete")? FOR ...; `["for"]` is accepted too
---@field to (string|string[])? roles the policy applies to (default PUBLIC); "public" is PUBLIC
---@field using string? which existing rows are visible / may be changed (USING expression)
---@field with_check string? which new rows may be written (WITH CHECK expression)
---@field as ("permissive"|"restrictive")? permissive policies are OR-ed, restrictive AND-ed

---CREATE POLICY name ON table [AS ...] [FOR ...] [TO ...] [USING (...)] [WITH CHECK (...)].
---Only the clauses asked for are written, so the statement reads like the call.
---@param table_name string|tide.QualifiedName
---@param name string
---@param options tide.PolicyOptions?
---@return string
function build.create_policy(table_name, name, options)
  options = dsl.check_options("create_policy", options, {
    { "command", "string" }, { "for", "string" }, { "to", "string|table" }, { "using", "string" },
    { "with_check", "string" }, { "as", "string" },
  })
  -- `for` is what SQL calls it, but a Lua keyword: {["for"] = ...} works, `command` reads better.
  if options.command ~= nil and options["for"] ~= nil then
    dsl.fail("create_policy: give `command` or `for`, not both")
  end
  local command = options.command or options["for"]
  local text = ("CREATE POLICY %s ON %s"):format(dsl.ident(name), dsl.qualified(table_name))
  if options.as ~= nil then
    text = text .. " AS " .. dsl.keyword("policy kind (`as`)", options.as,
      { "permissive", "restrictive" })
  end
  if command ~= nil then
    command = dsl.keyword("policy command", command, COMMANDS)
    text = text .. " FOR " .. command
  end
  -- PostgreSQL rejects these too, but only once the statement runs; say it while writing.
  if command == "SELECT" or command == "DELETE" then
    if options.with_check ~= nil then
      dsl.fail("create_policy: a %s policy takes no `with_check` (only `using`)", command)
    end
  elseif command == "INSERT" and options.using ~= nil then
    dsl.fail("create_policy: an INSERT policy takes no `using` (only `with_check`)")
  end
  if options.using == nil and options.with_check == nil then
    dsl.fail("create_policy: give `using` and/or `with_check`")
  end
  if options.to ~= nil then
    text = text .. " TO " .. schema.role_list("create_policy", options.to)
  end
  if options.using ~= nil then
    text = text .. " USING (" .. options.using .. ")"
  end
  if options.with_check ~= nil then
    text = text .. " WITH CHECK (" .. options.with_check .. ")"
  end
  return text
end

---DROP POLICY [IF EXISTS] name ON table.
---@param table_name string|tide.QualifiedName
---@param name string
---@param options {if_exists: boolean?}?
---@return string
function build.drop_policy(table_name, name, options)
  options = dsl.check_options("drop_policy", options, { { "if_exists", "boolean" } })
  return ("DROP POLICY %s%s ON %s"):format(options.if_exists and "IF EXISTS " or "",
    dsl.ident(name), dsl.qualified(table_name))
end

-- What revision files call: check db, build, run (see tide.schema).

---Enables row-level security on a table; `force = true` applies it to the owner as well.
---@param db tide.DB
---@param table_name string|tide.QualifiedName
---@param options {force: boolean?}?
function rls.enable_rls(db, table_name, options)
  dsl.check_db("enable_rls", db)
  db:exec(build.enable_rls(table_name, options))
end

---Disables row-level security (and its forcing) on a table.
---@param db tide.DB
---@param table_name string|tide.QualifiedName
function rls.disable_rls(db, table_name)
  dsl.check_db("disable_rls", db)
  db:exec(build.disable_rls(table_name))
end

---Creates a policy on a table.
---@param db tide.DB
---@param table_name string|tide.QualifiedName
---@param name string
---@param options tide.PolicyOptions
function rls.create_policy(db, table_name, name, options)
  dsl.check_db("create_policy", db)
  db:exec(build.create_policy(table_name, name, options))
end

---Drops a policy from a table.
---@param db tide.DB
---@param table_name string|tide.QualifiedName
---@param name string
---@param options {if_exists: boolean?}?
function rls.drop_policy(db, table_name, name, options)
  dsl.check_db("drop_policy", db)
  db:exec(build.drop_policy(table_name, name, options))
end

dsl.strict(build, "rls.sql")
return dsl.strict(rls, "rls")
