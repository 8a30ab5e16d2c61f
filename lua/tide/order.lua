-- tide.order: the order of a change list (tide.diff), from the dependencies of both models.
--
-- A change that creates an object comes after the changes creating what it needs (in the target
-- model's pg_depend), a change that removes one after the changes removing what needed it (in
-- the source model's); a name is freed before it is taken again. Where nothing decides: renames,
-- then drops (the last created first), then creates and alters by kind, then by name, so the same
-- two models always give the same list. A cycle (two tables that need each other) is broken by
-- split_cycles, as a person would: the policy or foreign key that closes it becomes a change of
-- its own.
local catalog = require "tide.catalog"
local ddl = require "tide.ddl"

local M = {}

local ident = catalog.ident

-- Creation order where no dependency decides; drops take the reverse.
local RANK = { schema = 1, extension = 2, type = 3, sequence = 4, table = 5, column = 6, constraint = 7, index = 8,
  ["foreign key"] = 9, partition = 9,
  ["sequence owner"] = 10, ["function"] = 11, view = 12, trigger = 13, rls = 14, policy = 15,
  privileges = 16, comment = 17 }

-- Two dropped tables may need each other (a policy on one reads the other, whose foreign key
-- points back), or a table and a function (a policy calls the function, whose body reads the
-- table). For each table drop caught in such a cycle, its policies, foreign keys and triggers
-- that need something else being removed become changes of their own, which the order then
-- puts first, as a person would write `DROP POLICY` before `DROP TABLE`. False when nothing
-- could be split.
local function components(stuck)
  -- Tarjan's strongly connected components over the stuck changes' "must come after" edges
  local index, low, on, stack, comp, n = {}, {}, {}, {}, {}, 0
  local function visit(v)
    n = n + 1
    index[v], low[v] = n, n
    stack[#stack + 1] = v
    on[v] = true
    for w in pairs(stuck[v]) do
      if stuck[w] then
        if not index[w] then
          visit(w)
          low[v] = math.min(low[v], low[w])
        elseif on[w] then
          low[v] = math.min(low[v], index[w])
        end
      end
    end
    if low[v] == index[v] then
      local id = {}
      repeat
        local w = table.remove(stack)
        on[w] = nil
        comp[w] = id
      until w == v
    end
  end
  for v in pairs(stuck) do
    if not index[v] then
      visit(v)
    end
  end
  return comp
end

function M.split_cycles(changes, stuck, from)
  local comp = components(stuck)
  local removed_by = {}
  for c in pairs(stuck) do
    for _, k in ipairs(c.removes) do
      removed_by[k] = c
    end
  end
  local split = false
  for c in pairs(stuck) do
    local t = c.dropped_table
    if c.created_table and c.inline then
      -- two new tables whose foreign keys point at each other: add those keys afterwards
      local new, kept, requires = c.created_table, {}, {}
      for _, x in ipairs(c.inline) do
        local creator
        for d in pairs(stuck) do
          for _, k in ipairs(d.adds) do
            if k == "table " .. (x.references or "") and d ~= c and comp[d] == comp[c] then
              creator = d
            end
          end
        end
        if creator then
          changes[#changes + 1] = { action = "create", kind = "foreign key", name = new.qname .. "." .. x.name,
            statements = ddl.add_constraint(new, x), adds = { x.key }, removes = {} }
          split = true
          for i, k in ipairs(c.adds) do
            if k == x.key then
              table.remove(c.adds, i)
              break
            end
          end
        else
          kept[#kept + 1] = x
          if x.type == "foreign key" and x.references ~= new.qname then
            requires[#requires + 1] = "table " .. x.references
          end
        end
      end
      c.inline, c.requires = kept, requires
      c.statements = ddl.create_table(new, kept)
    end
    if t then
      local kept = {}
      for _, key in ipairs(c.removes) do
        local kind = key:match("^(%a+)")
        local needs_other = false
        for needed in pairs(from.deps[key] or {}) do
          local other = removed_by[needed]
          needs_other = needs_other or (other ~= nil and other ~= c and comp[other] == comp[c])
        end
        if needs_other and (kind == "policy" or kind == "constraint" or kind == "trigger") then
          local name = key:sub(#kind + #t.qname + 3)
          local statements, display_kind
          for n, p in pairs(t.policies) do
            if kind == "policy" and ident(n) == name then
              statements, display_kind = ddl.drop_policy(t, p), "policy"
            end
          end
          for _, x in pairs(t.constraints) do
            if x.key == key then
              statements, display_kind = ddl.drop_constraint(t, x), x.type == "foreign key" and "foreign key"
                or "constraint"
            end
          end
          for n, tg in pairs(t.triggers) do
            if kind == "trigger" and ident(n) == name then
              statements, display_kind = ddl.drop_trigger(t, tg), "trigger"
            end
          end
          changes[#changes + 1] = { action = "drop", kind = display_kind, name = t.qname .. "." .. name,
            statements = statements, removes = { key }, adds = {}, rls = kind == "policy" or nil }
          split = true
        else
          kept[#kept + 1] = key
        end
      end
      c.removes = kept
    end
  end
  return split
end

-- Ordering -------------------------------------------------------------------------------------

local PHASE = { rename = 0, drop = 1, alter = 2, create = 2 }

--- Sorts changes by the dependency edges of both models (see the header); ties by phase, kind
--- and name, so the same two models always give the same list.
function M.order(changes, from, to, force)
  local adders, removers = {}, {}
  for i, c in ipairs(changes) do
    c.index = i
    for _, k in ipairs(c.adds) do
      adders[k] = adders[k] or {}
      table.insert(adders[k], c)
    end
    for _, k in ipairs(c.removes) do
      removers[k] = removers[k] or {}
      table.insert(removers[k], c)
    end
  end
  local after = {} -- change -> set of changes that must come first
  local function edge(first, second)
    if first ~= second then
      after[second] = after[second] or {}
      after[second][first] = true
    end
  end
  -- what depends on each key, in the source model
  local dependents = {}
  for key, needs in pairs(from.deps) do
    for needed in pairs(needs) do
      dependents[needed] = dependents[needed] or {}
      dependents[needed][#dependents[needed] + 1] = key
    end
  end
  for _, c in ipairs(changes) do
    local needs = {}
    for _, k in ipairs(c.adds) do
      for needed in pairs(to.deps[k] or {}) do
        needs[#needs + 1] = needed
      end
    end
    for _, k in ipairs(c.requires or {}) do
      needs[#needs + 1] = k
    end
    for _, k in ipairs(needs) do
      for _, first in ipairs(adders[k] or {}) do
        edge(first, c)
      end
    end
    for _, k in ipairs(c.removes) do
      for _, dep in ipairs(dependents[k] or {}) do
        for _, first in ipairs(removers[dep] or {}) do
          edge(first, c)
        end
      end
      -- a name is freed before it is taken again
      for _, second in ipairs(adders[k] or {}) do
        if PHASE[c.action] < PHASE[second.action] or (c.action == "drop") then
          edge(c, second)
        end
      end
    end
  end
  -- phase, then kind (reversed for drops), then name, then the order the diff made them in, as
  -- one string per change: the heap below compares them with `<` (thousands of changes)
  for _, c in ipairs(changes) do
    local phase, rank = PHASE[c.action], RANK[c.kind] or 50
    c.order_key = string.format("%d%03d%s\0%08d", phase, phase == 1 and (100 - rank) or rank, c.name, c.index)
  end
  local function before(a, b)
    return a.order_key < b.order_key
  end
  -- string comparison goes through strcoll: sort once, then the heap compares integers
  local sorted = { table.unpack(changes) }
  table.sort(sorted, before)
  for i, c in ipairs(sorted) do
    c.order_key = i
  end
  local waiting = {}
  for _, c in ipairs(changes) do
    local n = 0
    for _ in pairs(after[c] or {}) do
      n = n + 1
    end
    waiting[c] = n
  end
  local followers = {}
  for second, firsts in pairs(after) do
    for first in pairs(firsts) do
      followers[first] = followers[first] or {}
      table.insert(followers[first], second)
    end
  end
  -- the changes ready to go, a binary heap by `before`
  local heap = {}
  local function push(c)
    heap[#heap + 1] = c
    local i, key = #heap, c.order_key
    while i > 1 do
      local parent = i // 2
      if heap[parent].order_key <= key then
        break
      end
      heap[i], heap[parent] = heap[parent], c
      i = parent
    end
  end
  local function pop()
    local top = heap[1]
    local last = heap[#heap]
    heap[#heap] = nil
    local n = #heap
    if n == 0 then
      return top
    end
    local i, key = 1, last.order_key
    while true do
      local l = 2 * i
      if l > n then
        break
      end
      local child, ckey = l, heap[l].order_key
      if l + 1 <= n and heap[l + 1].order_key < ckey then
        child, ckey = l + 1, heap[l + 1].order_key
      end
      if key <= ckey then
        break
      end
      heap[i] = heap[child]
      i = child
    end
    heap[i] = last
    return top
  end
  local out = {}
  for _, c in ipairs(changes) do
    if waiting[c] == 0 then
      push(c)
    end
  end
  while #out < #changes do
    if #heap == 0 then
      if not force then
        local stuck = {} -- change -> the changes it waits for
        for _, c in ipairs(changes) do
          if waiting[c] > 0 then
            stuck[c] = after[c]
          end
        end
        for _, c in ipairs(changes) do
          c.index = nil
        end
        return nil, stuck
      end
      -- a cycle nothing could break: take the earliest remaining change by the tie-break order
      local rest = {}
      for _, c in ipairs(changes) do
        if waiting[c] > 0 then
          rest[#rest + 1] = c
        end
      end
      table.sort(rest, before)
      waiting[rest[1]] = 0
      push(rest[1])
    end
    local c = pop()
    waiting[c] = -1
    out[#out + 1] = c
    for _, f in ipairs(followers[c] or {}) do
      if waiting[f] > 0 then
        waiting[f] = waiting[f] - 1
        if waiting[f] == 0 then
          push(f)
        end
      end
    end
  end
  for _, c in ipairs(out) do
    c.index, c.order_key = nil, nil
  end
  return out
end

return M
