-- spec/modules_spec.lua: the Lua library's modules form layers: no module under lua/tide
-- (commands/ included) requires one that requires it back, directly or through others. A pure
-- spec: it reads the files' text and runs none of them.
local source_dir = os.getenv("TIDE_SOURCE_DIR") or "."

-- Module names ("tide.runner", "tide.commands.status") -> the tide modules each requires.
local function scan(folder, prefix, graph)
  local pipe = assert(io.popen("ls -1 '" .. folder .. "' 2>/dev/null"))
  for name in pipe:lines() do
    local module = name:match("^([%w_]+)%.lua$")
    if module then
      local f = assert(io.open(folder .. "/" .. name, "rb"))
      local text = f:read("a")
      f:close()
      local needs = {}
      for line in text:gmatch("[^\n]+") do
        -- require "tide.x", require("tide.x"), require 'tide.x', a lazy one inside a function
        -- too; not in a line comment (a usage example in a module's header)
        local code = line:gsub("%-%-.*$", "")
        for target in code:gmatch("require%s*%(?%s*[\"'](tide%.[%w_.]+)[\"']") do
          needs[#needs + 1] = target
        end
      end
      graph[prefix .. module] = needs
    elseif not name:find("%.") then
      scan(folder .. "/" .. name, prefix .. name .. ".", graph)
    end
  end
  pipe:close()
  return graph
end

-- Every cycle found by a depth-first walk, each as "a -> b -> a".
local function cycles(graph)
  local found, state, stack = {}, {}, {}
  local function walk(module)
    state[module] = "open"
    stack[#stack + 1] = module
    for _, target in ipairs(graph[module] or {}) do
      if state[target] == "open" then
        local path = {}
        for i = #stack, 1, -1 do
          table.insert(path, 1, stack[i])
          if stack[i] == target then
            break
          end
        end
        path[#path + 1] = target
        found[#found + 1] = table.concat(path, " -> ")
      elseif state[target] == nil and graph[target] then
        walk(target)
      end
    end
    stack[#stack] = nil
    state[module] = "done"
  end
  local names = {}
  for module in pairs(graph) do
    names[#names + 1] = module
  end
  table.sort(names)
  for _, module in ipairs(names) do
    if state[module] == nil then
      walk(module)
    end
  end
  return found
end

describe("the tide modules", function()
  it("find the cycles the scan is for (a -> b -> a, and through a third)", function()
    assert.same({ "tide.a -> tide.b -> tide.a" }, cycles { ["tide.a"] = { "tide.b" }, ["tide.b"] = { "tide.a" } })
    assert.same({ "tide.a -> tide.b -> tide.c -> tide.a" },
      cycles { ["tide.a"] = { "tide.b" }, ["tide.b"] = { "tide.c" }, ["tide.c"] = { "tide.a" } })
    assert.same({}, cycles { ["tide.a"] = { "tide.b", "tide.core" }, ["tide.b"] = { "tide.core" } })
  end)

  it("are all read, commands/ included when it exists", function()
    local graph = scan(source_dir .. "/lua/tide", "tide.", {})
    assert.is_table(graph["tide.cli"])
    assert.is_table(graph["tide.errors"])
    assert.truthy(#graph["tide.cli"] > 0, "tide.cli requires nothing: the scan is broken")
  end)

  it("require no module that requires them back", function()
    local found = cycles(scan(source_dir .. "/lua/tide", "tide.", {}))
    assert.same({}, found, "module cycles:\n  " .. table.concat(found, "\n  "))
  end)
end)
