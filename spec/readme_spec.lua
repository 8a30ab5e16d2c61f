-- spec/readme_spec.lua: README.md typed literally. The quick start's shell block runs as written,
-- line by line, in a scratch copy of the seed project against a scratch database on the sandbox
-- server: only the example URL is swapped for the scratch database's, and $EDITOR "types" the
-- example revision of "Writing revisions". Every tide command of the Alembic table exists.
-- The README cannot drift from the program again without this spec going red.
local H = require "spec.support.helpers"

local README = H.read(H.source_dir .. "/README.md")

-- The text of section `title` (a "## " heading), up to the next one.
local function section(title)
  local text = README:match("\n## " .. title:gsub("%p", "%%%0") .. "\n(.-)\n## ")
  assert(text, "README.md has no section " .. title)
  return text
end

-- The first fenced block of `lang` in text.
local function block(text, lang)
  local code = text:match("```" .. lang .. "\n(.-)\n```")
  assert(code, "no ```" .. lang .. " block")
  return code
end

local QUICK_START = block(section("Quick start"), "sh")
local EXAMPLE = block(section("Writing revisions"), "lua")

describe("README.md", function()
  -- Before: a merge left two rows for 5 and none for 4 (the lock), unnoticed.
  it("has one row in its exit code table for each exit code tide uses", function()
    local table_text = section("Exit codes")
    local rows = {}
    for list in table_text:gmatch("\n| ([%d, ]+) |") do -- "| 5 |", "| 130, 143 |"
      for code in list:gmatch("%d+") do
        assert.is_nil(rows[tonumber(code)], "two rows for exit code " .. code)
        rows[tonumber(code)] = true
      end
    end
    local codes = {}
    for _, code in pairs(require("tide.errors").exit_codes) do
      codes[code] = true
    end
    for code in pairs(codes) do
      assert.is_true(rows[code] or false, "no row for exit code " .. code)
    end
    for code in pairs(rows) do
      assert.is_true(codes[code] or false, "a row for exit code " .. code .. " that tide never uses")
    end
  end)
end)

describe("README.md #db", function()
  after_each(H.cleanup)

  it("has a quick start of commands and an example revision to type", function()
    assert.truthy(QUICK_START:find("\nexport DATABASE_URL=", 1, true) or QUICK_START:find("^export DATABASE_URL="))
    assert.truthy(QUICK_START:find("$EDITOR ", 1, true))
    assert.matches('\n  revision = "[^"]+",\n  down_revision = "[^"]+",\n', EXAMPLE)
  end)

  -- Before: `tide downgrade -1` failed (exit 7) after the README's own example, which drops a
  -- table, because no backup was configured; the example created `invoices` as "add billing table".
  it("runs the quick start as written, each line exiting 0", function()
    local db = H.fresh_db()
    -- the seed project as shipped: its revisions and its tide.lua, whose vars.app_role (from
    -- APP_DB_ROLE) the example grants to; roles belong to the cluster, so the spec makes its own
    local project = H.tmpdir {
      ["versions/001_initial.lua"] = H.read(H.source_dir .. "/versions/001_initial.lua"),
      ["versions/002_add_indexes.lua"] = H.read(H.source_dir .. "/versions/002_add_indexes.lua"),
      ["versions/003_harden_rls.lua"] = H.read(H.source_dir .. "/versions/003_harden_rls.lua"),
      ["tide.lua"] = H.read(H.source_dir .. "/tide.lua"),
    }
    local role = "tide_spec_app_" .. tostring(math.random(1, 1e9))
    H.sql(nil, "CREATE ROLE " .. role .. " NOLOGIN")
    finally(function()
      H.cleanup()
      pcall(H.sql, nil, "DROP ROLE IF EXISTS " .. role)
    end)
    -- `tide` on PATH, and an editor that types the example with the ids `tide new` wrote
    local bin = H.tmpdir {
      ["example.lua"] = EXAMPLE,
      ["editor.lua"] = [[
local path = arg[1]
local f = assert(io.open(path))
local written = f:read("a")
f:close()
local id = assert(written:match('\n  revision = "([^"]+)"'), "no revision in " .. path)
local parent = assert(written:match('\n  down_revision = "([^"]+)"'), "no parent in " .. path)
f = assert(io.open((arg[0]:gsub("editor%.lua$", "example.lua"))))
local example = f:read("a")
f:close()
example = example:gsub('\n  revision = "[^"]+"', '\n  revision = "' .. id .. '"', 1)
example = example:gsub('\n  down_revision = "[^"]+"', '\n  down_revision = "' .. parent .. '"', 1)
f = assert(io.open(path, "w"))
f:write(example)
f:close()
]],
    }
    assert(os.execute("ln -s " .. H.shell_quote(H.bin) .. " " .. H.shell_quote(bin .. "/tide")))
    local script = { "set -u", "cd " .. H.shell_quote(project) }
    local ran = 0
    for line in (QUICK_START .. "\n"):gmatch("([^\n]*)\n") do
      if line:match("^export DATABASE_URL=") then
        line = line:gsub("^export DATABASE_URL=%S+", "export DATABASE_URL=" .. H.shell_quote(db.url))
      end
      if line:match("%S") and not line:match("^%s*#") then
        ran = ran + 1
        script[#script + 1] = "echo " .. H.shell_quote("$ " .. line) .. " >&2"
        script[#script + 1] = line
        script[#script + 1] = "code=$?; if [ $code -ne 0 ]; then echo " .. H.shell_quote("FAILED: " .. line)
          .. " \"(exit $code)\" >&2; exit 1; fi"
      end
    end
    assert.is_true(ran >= 6, "the quick start has only " .. ran .. " commands")
    H.write(project .. "/quickstart.sh", table.concat(script, "\n") .. "\n")
    local out = os.tmpname()
    local command = "env -u DATABASE_URL APP_DB_ROLE=%s PATH=%s:\"$PATH\" EDITOR=%s bash %s >%s 2>&1"
    assert(os.execute(string.format(command, role, H.shell_quote(bin), H.shell_quote("lua5.4 " .. bin .. "/editor.lua"),
      H.shell_quote(project .. "/quickstart.sh"), H.shell_quote(out))) or true)
    local transcript = H.read(out) or ""
    os.remove(out)
    assert.is_nil(transcript:find("FAILED: ", 1, true), transcript)

    -- what it did: the example revision, applied and then reverted after a verified backup
    local id = assert(transcript:match("%(revision ([^)]+)%)"), transcript)
    local file = assert(io.popen("ls " .. H.shell_quote(project .. "/versions")):read("a"):match(
      "(%S+_add_invoices_table%.lua)"), transcript)
    assert.matches("^" .. id:gsub("%p", "%%%0") .. "_", file)
    assert.truthy(H.read(project .. "/versions/" .. file):find('schema.create_table(db, "invoices"', 1, true))
    assert.truthy(H.read(project .. "/tide.lua"), "tide init removed tide.lua")
    assert.are.same({ "001", "002", "003" }, H.applied(db))
    assert.is_false(H.exists(db, "invoices"))
    local rows = H.sql(db, "SELECT direction, outcome, backup FROM tide.history WHERE revision = $1 ORDER BY id", id)
    assert.are.equal(2, #rows, transcript)
    assert.are.same({ "upgrade", "applied" }, { rows[1].direction, rows[1].outcome })
    assert.are.same({ "downgrade", "reverted" }, { rows[2].direction, rows[2].outcome })
    assert.truthy(tostring(rows[2].backup):find("file://" .. project .. "/backups/", 1, true), transcript)
    assert.matches("applied 4 revisions in %d+ ms: 001, 002, 003, " .. id:gsub("%p", "%%%0"), transcript)
    assert.matches("reverted 1 revision in %d+ ms: " .. id:gsub("%p", "%%%0") .. "; the database is now at 003",
      transcript)
  end)

  it("names one table for the example everywhere: the message says what the revision creates", function()
    local message = QUICK_START:match('tide new "([^"]+)"')
    assert.are.equal("add invoices table", message)
    assert.truthy(EXAMPLE:find('message = "' .. message .. '"', 1, true), EXAMPLE)
    assert.truthy(EXAMPLE:find('create_table(db, "invoices"', 1, true), EXAMPLE)
    local simple = block(section("Revision files"), "lua")
    assert.truthy(simple:find('message = "' .. message .. '"', 1, true), simple)
    assert.truthy(simple:find("CREATE TABLE invoices", 1, true), simple)
  end)

  -- Before: "the verbs are the same" while revision, show, branches and init did not exist.
  it("has every tide command of its Alembic table", function()
    local table_text = section("Quick start"):match("\n| Alembic | tide |\n(.-)\n\n")
    assert(table_text, "no Alembic table in the quick start")
    local rows = 0
    for alembic, tide in table_text:gmatch("\n| (`alembic[^|]+) | ([^|]+) |") do
      rows = rows + 1
      for command in tide:gmatch("`tide ([^`]+)`") do
        local args = {}
        for word in command:gsub('"x"', "x"):gmatch("%S+") do
          args[#args + 1] = word
        end
        -- the words parse, and the command exists (its --help answers)
        args[#args + 1] = "--help"
        local r = H.tide(args, { dir = "/" })
        assert.are.equal(0, r.code, alembic .. " -> tide " .. command .. ": " .. r.output)
        assert.truthy(r.stdout:find("usage: tide " .. args[1], 1, true), r.stdout)
      end
    end
    assert.is_true(rows >= 12, "only " .. rows .. " rows")
  end)
end)
