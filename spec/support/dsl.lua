-- spec/support/dsl.lua: what the DSL specs (schema_spec, rls_spec) share.
local M = {}

M.HOSTILE = 'a"b; drop table x'
M.QUOTED = '"a""b; drop table x"'

--- A db that records what the DSL sends, one entry per db:exec call.
function M.recorder()
  local db = { statements = {} }
  function db:exec(statement)
    self.statements[#self.statements + 1] = statement
  end
  return db
end

return M
