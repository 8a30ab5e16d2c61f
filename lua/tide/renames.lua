-- tide.renames: the --rename hints of `tide diff` and `tide new --autogenerate`.
--
-- tide never guesses a rename: without a hint a table that is gone and a table that is new are a
-- drop and a create. A hint names the object in the source and its name in the target; apply()
-- renames it in a copy of the source model, rewrites the definitions that mention it (indexes,
-- constraints, policies, triggers, defaults; views for a table) and records the rename change,
-- so that the diff then sees the same object on both sides.
local catalog = require "tide.catalog"
local ddl = require "tide.ddl"
local errors = require "tide.errors"

local M = {}

local ident, qualified = catalog.ident, catalog.qualified

local function deep_copy(v, seen)
  if type(v) ~= "table" then
    return v
  end
  seen = seen or {}
  if seen[v] then
    return seen[v]
  end
  local t = {}
  seen[v] = t
  for k, x in pairs(v) do
    t[deep_copy(k, seen)] = deep_copy(x, seen)
  end
  return t
end

-- Replaces identifier `old` by `new` in SQL text, outside string literals and only as a whole word.
local function replace_ident(text, old, new)
  if not text then
    return text
  end
  local out, i, n = {}, 1, #text
  local q_old, q_new = ident(old), ident(new)
  while i <= n do
    local c = text:sub(i, i)
    if c == "'" then
      local j = i + 1
      while j <= n and not (text:sub(j, j) == "'" and text:sub(j + 1, j + 1) ~= "'") do
        j = j + (text:sub(j, j + 1) == "''" and 2 or 1)
      end
      out[#out + 1] = text:sub(i, j)
      i = j + 1
    elseif c == '"' then
      local j = text:find('"', i + 1, true) or n
      local word = text:sub(i, j)
      out[#out + 1] = word == q_old and q_new or word
      i = j + 1
    elseif c:match("[%a_]") then
      local word = text:match("^[%w_$]+", i)
      out[#out + 1] = word == q_old and q_new or word
      i = i + #word
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return table.concat(out)
end
M.replace_ident = replace_ident

-- Every SQL text of a table's own definitions, for a rename to rewrite.
local function rewrite_table_texts(t, old, new)
  for _, c in pairs(t.constraints) do
    c.definition = replace_ident(c.definition, old, new)
  end
  for _, x in pairs(t.indexes) do
    x.definition = replace_ident(x.definition, old, new)
  end
  for _, p in pairs(t.policies) do
    p.using = replace_ident(p.using, old, new)
    p.with_check = replace_ident(p.with_check, old, new)
  end
  for _, tg in pairs(t.triggers) do
    tg.definition = replace_ident(tg.definition, old, new)
  end
  for _, col in ipairs(t.columns) do
    col.default = replace_ident(col.default, old, new)
    col.generated = replace_ident(col.generated, old, new)
  end
end

local function rename_map(map, old, new)
  map[new], map[old] = map[old], nil
  map[new].name = new
end

-- Applies the --rename hints to a copy of `from`; returns it and the rename changes. A hint
-- names a table ("users=people", "app.users=app.people"), or a column, constraint, index or
-- policy of a table ("users.email=mail", "users.users_email_key=users_mail_key").
function M.apply(from, to, renames, push)
  if not renames or #renames == 0 then
    return from
  end
  from = deep_copy(from)
  local renamed = {} -- a table's old name -> its new qualified name, for hints naming it by the old
  local function find_table(name)
    if renamed[name] then
      return from.tables[renamed[name]], renamed[name]
    end
    if from.tables[name] then
      return from.tables[name], name
    end
    local q = qualified(ddl.default_schema, name)
    if from.tables[q] then
      return from.tables[q], q
    end
  end
  for _, hint in ipairs(renames) do
    local old, new = hint.old, hint.new
    local t, tq = find_table(old)
    if t then
      -- a table: new may be qualified in the same schema or bare
      local new_name = new:match("[^.]+$")
      local nq = qualified(t.schema, new_name)
      if not to.tables[nq] then
        errors.raise("usage", string.format("--rename %s=%s: the target has no table %s", old, new, nq))
      end
      push { action = "rename", kind = "table", name = tq .. " -> " .. nq, statements = ddl.rename_table(t, new_name),
        adds = { "table " .. nq } }
      from.tables[tq] = nil
      renamed[old], renamed[tq] = nq, nq
      t.name, t.qname = new_name, nq
      from.tables[nq] = t
      for _, other in pairs(from.tables) do
        rewrite_table_texts(other, t.name == new_name and old:match("[^.]+$") or old, new_name)
        for _, c in pairs(other.constraints) do
          if c.references == tq then
            c.references = nq
          end
        end
      end
      for _, v in pairs(from.views) do
        v.definition = replace_ident(v.definition, old:match("[^.]+$"), new_name)
      end
    else
      local tname, part = old:match("^(.+)%.([^.]+)$")
      local new_part = new:match("([^.]+)$")
      t = tname and find_table(tname)
      if not t then
        errors.raise("usage", string.format("--rename %s=%s: no table, column, index, constraint or policy %s in "
          .. "the source", old, new, old))
      end
      local target = to.tables[t.qname]
      if t.column[part] then
        if not (target and target.column[new_part]) then
          errors.raise("usage", string.format("--rename %s=%s: the target has no column %s.%s", old, new, t.qname,
            new_part))
        end
        push { action = "rename", kind = "column", name = t.qname .. "." .. part .. " -> " .. new_part,
          statements = ddl.rename_column(t, part, new_part),
          adds = { "column " .. t.qname .. "." .. ident(new_part) } }
        rename_map(t.column, part, new_part)
        rewrite_table_texts(t, part, new_part)
      elseif t.constraints[part] then
        push { action = "rename", kind = "constraint", name = t.qname .. "." .. part .. " -> " .. new_part,
          statements = ddl.rename_constraint(t, part, new_part) }
        rename_map(t.constraints, part, new_part)
        -- a constraint's index carries its name
        t.constraints[new_part].key = "constraint " .. t.qname .. "." .. ident(new_part)
      elseif t.indexes[part] then
        push { action = "rename", kind = "index", name = t.qname .. "." .. part .. " -> " .. new_part,
          statements = ddl.rename_index(t, part, new_part) }
        rename_map(t.indexes, part, new_part)
        local x = t.indexes[new_part]
        x.qname = qualified(t.schema, new_part)
        x.definition = replace_ident(x.definition, part, new_part)
      elseif t.policies[part] then
        push { action = "rename", kind = "policy", name = t.qname .. "." .. part .. " -> " .. new_part,
          statements = ddl.rename_policy(t, part, new_part) }
        rename_map(t.policies, part, new_part)
      else
        errors.raise("usage", string.format("--rename %s=%s: table %s has no column, index, constraint or policy %s",
          old, new, t.qname, part))
      end
    end
  end
  return from
end

return M
