-- tide.recording: a revision's SQL built without a database (a recording db, tide.db's
-- recorder): what `upgrade --sql` scripts hold, what lint reads, and what `tide check --offline`
-- proves can run.
local dbmod = require "tide.db"
local errors = require "tide.errors"
local runner = require "tide.runner"

local M = {}

--- Builds rev's SQL for one direction without a database (a recording db), for --sql, lint,
--- check and test. The result says how that went:
---   statements  what the revision sends, in order (up to where the recording stopped)
---   queries     its db:query/db:one calls {where, statement}: each hands data back, so the
---               revision's SQL may depend on the database, and no script can hold it
---   data        {where, message}: the recording stopped because the revision read data (or
---               failed after a db:query answered it with no rows); not the revision's fault
---   failure     {where, message}: the revision cannot run (a DSL error, a Lua error, anything
---               it raised before reading data); `where` is "file:line"
--- vars: tide.lua's `vars`, which revisions read as db.vars while they are built.
function M.build(rev, direction, vars)
  local fn = direction == "upgrade" and rev.upgrade or rev.downgrade
  if not fn then
    errors.raise("usage", string.format("revision %s (%s) has no %s function", rev.revision, rev.file, direction))
  end
  local db = dbmod.recorder(rev, vars)
  local ok, err = xpcall(fn, runner.on_error, db)
  local built = { statements = db.record, queries = db.queries }
  if ok then
    return built
  end
  -- "versions/003_x.lua:7: unknown option ..." names the place once, in `where`
  local message = tostring(err.message):gsub("^" .. rev.file:gsub("%p", "%%%0") .. ":%d+: ", "")
  if err.data_dependent then
    built.data = { where = err.where, message = message }
  elseif #db.queries > 0 then
    local q = db.queries[#db.queries]
    built.data = { where = q.where, message = string.format("reads data there (db:query), then raised at %s, "
      .. "perhaps because the recording answered no rows: %s", runner.where_in(rev, err), message) }
  else
    built.failure = { where = runner.where_in(rev, err), message = message }
  end
  return built
end

return M
