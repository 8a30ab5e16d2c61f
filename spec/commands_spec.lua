-- spec/commands_spec.lua: tide.commands (lua/tide/commands.lua), the registry of the commands
-- declared in lua/tide/commands/*.lua: every command listed is declared the same way, every
-- declared one is listed, and a command loads its own group of verbs and no other.
local H = require "spec.support.helpers"
local commands = require "tide.commands"

-- The files of lua/tide/commands/, by group name.
local function group_files()
  local list = {}
  local p = assert(io.popen("ls " .. H.shell_quote(H.source_dir .. "/lua/tide/commands")))
  for name in p:lines() do
    list[#list + 1] = name:match("^(.*)%.lua$")
  end
  p:close()
  table.sort(list)
  return list
end

describe("tide.commands", function()
  it("lists each command once, and declares every one with usage, summary, run and print", function()
    local seen = {}
    assert.is_true(#commands.names > 20)
    for _, name in ipairs(commands.names) do
      assert.is_nil(seen[name], name .. " is listed twice")
      seen[name] = true
      local spec = commands.get(name)
      assert.are.equal(name, spec.name)
      assert.are.equal(name, spec.usage:match("^[%w-]+"))
      for _, field in ipairs { "summary", "run", "print" } do
        assert.truthy(spec[field], name .. " has no " .. field)
      end
      for _, f in ipairs(spec.flags or {}) do
        assert.are.equal("string", type(f[1]), name)
        assert.are.equal("string", type(f[3]), name)
      end
    end
  end)

  it("lists every command a file of lua/tide/commands/ declares, and every such file", function()
    local groups = {}
    for _, g in ipairs(commands.groups) do
      groups[#groups + 1] = g
    end
    table.sort(groups)
    assert.are.same(group_files(), groups)
    local listed = {}
    for _, name in ipairs(commands.names) do
      listed[name] = true
    end
    for _, group in ipairs(groups) do
      for name, spec in pairs(require("tide.commands." .. group)) do
        if type(spec) == "table" and spec.run then
          assert.is_true(listed[name] or false, "tide.commands." .. group .. " declares " .. name
            .. ", which tide.commands does not list")
        end
      end
    end
  end)

  it("has no command called what it does not list", function()
    assert.is_nil(commands.get("upgade"))
    assert.is_nil(commands.get("__index"))
  end)

  -- A start of `tide upgrade` with nothing to do must stay cheap: it loads the migrating
  -- commands, not lint, the catalog model or the other groups.
  it("loads a command's group of verbs when the command is asked for, and no other", function()
    local script = [[
      local commands = require "tide.commands"
      assert(commands.get("upgrade"))
      local loaded = {}
      for name in pairs(package.loaded) do
        if name:match("^tide%.") then loaded[#loaded + 1] = name end
      end
      table.sort(loaded)
      io.write(table.concat(loaded, " "))
    ]]
    local p = assert(io.popen("lua5.4 -e " .. H.shell_quote(script) .. " 2>&1"))
    local out = p:read("a") .. " "
    p:close()
    assert.truthy(out:find("tide.commands.migrating", 1, true), out)
    for _, absent in ipairs { "tide.commands.inspecting", "tide.commands.authoring", "tide.commands.backups",
      "tide.commands.about", "tide.lint", "tide.catalog", "tide.checks", "tide.script", "tide.sources" } do
      assert.is_nil(out:find(absent .. " ", 1, true), absent .. " is loaded: " .. out)
    end
  end)
end)
