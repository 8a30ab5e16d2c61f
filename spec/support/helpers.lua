-- spec/support/helpers.lua: what the database specs share: fresh databases on the sandbox
-- server, throwaway project folders, running the real build/tide binary, and SQL.
--
--   local H = require "spec.support.helpers"
--   local db = H.fresh_db()                       -- {name=, url=}; dropped by H.cleanup()
--   local dir = H.project { ["001_a.lua"] = H.revision { revision = "001", up = "...", down = "..." } }
--   local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })   -- r.code, r.stdout, r.stderr
--   local rows = H.sql(db, "SELECT ...", ...)
local core = require "tide.core"

local H = {}

H.bin = os.getenv("TIDE_BIN") or ((os.getenv("PWD") or ".") .. "/build/tide") -- plain `busted` (.busted)
H.source_dir = os.getenv("TIDE_SOURCE_DIR") or "."

local created_dbs, created_dirs = {}, {}

local function random_name(prefix)
  return prefix .. (core.random_bytes(6):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

--- Quotes one word for /bin/sh.
function H.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- URL of database `name` on the sandbox server (the password comes from PGPASSFILE).
function H.url(name, user, password)
  return string.format("postgresql://%s%s@%s:%s/%s", user or os.getenv("PGUSER"),
    password and (":" .. password) or "", os.getenv("PGHOST"), os.getenv("PGPORT"), name)
end

--- A connection to the sandbox's `postgres` database (or to db).
function H.connect(db)
  return core.connect(db and db.url or H.url("postgres"))
end

--- Runs SQL on db ({name, url} or nil for the maintenance database) and returns rows.
function H.sql(db, sql, ...)
  local conn <close> = H.connect(db)
  if select("#", ...) == 0 and not sql:find("%$1") then
    -- several statements allowed when there are no parameters
    if sql:match(";%s*%S") then
      conn:exec(sql)
      return {}
    end
  end
  return (conn:query(sql, ...))
end

--- A new empty database, dropped by H.cleanup().
function H.fresh_db()
  local name = random_name("tide_spec_")
  H.sql(nil, "CREATE DATABASE " .. name)
  created_dbs[#created_dbs + 1] = name
  return { name = name, url = H.url(name) }
end

--- A temporary folder; files is a table path -> content (subfolders are created).
function H.tmpdir(files)
  local base = os.getenv("TMPDIR") or "/tmp"
  local dir = base .. "/" .. random_name("tide-spec-")
  assert(os.execute("mkdir -p " .. H.shell_quote(dir)))
  created_dirs[#created_dirs + 1] = dir
  for path, content in pairs(files or {}) do
    local sub = path:match("^(.*)/[^/]*$")
    if sub then
      assert(os.execute("mkdir -p " .. H.shell_quote(dir .. "/" .. sub)))
    end
    H.write(dir .. "/" .. path, content)
  end
  return dir
end

--- A project folder: versions/ holding `revisions` (file name -> source), optional tide.lua.
function H.project(revisions, tide_lua)
  local files = { ["versions/.keep"] = "" }
  for name, source in pairs(revisions or {}) do
    files["versions/" .. name] = source
  end
  if tide_lua then
    files["tide.lua"] = tide_lua
  end
  return H.tmpdir(files)
end

--- Source of a revision file whose upgrade and downgrade run the given SQL.
---@param r table {revision, down (parent id or list), message, up = sql, down_sql = sql, extra = "lua fields"}
function H.revision(r)
  local parent = "nil"
  if type(r.down_revision) == "string" then
    parent = string.format("%q", r.down_revision)
  elseif type(r.down_revision) == "table" then
    local q = {}
    for i, p in ipairs(r.down_revision) do
      q[i] = string.format("%q", p)
    end
    parent = "{ " .. table.concat(q, ", ") .. " }"
  end
  return string.format([[
return {
  revision = %q,
  down_revision = %s,
  message = %q,%s
  upgrade = function(db)
    db:exec(%q)
  end,
  downgrade = function(db)
    db:exec(%q)
  end,
}
]], r.revision, parent, r.message or ("revision " .. r.revision), r.extra and ("\n  " .. r.extra) or "",
    r.up or "SELECT 1", r.down_sql or "SELECT 1")
end

--- A chain of n revisions, each creating table t<i> (and dropping it on downgrade).
function H.chain(n, prefix)
  local revs = {}
  for i = 1, n do
    local id = string.format("%03d", i)
    revs[id .. "_t" .. i .. ".lua"] = H.revision {
      revision = id,
      down_revision = i > 1 and string.format("%03d", i - 1) or nil,
      message = "create " .. (prefix or "t") .. i,
      up = string.format("CREATE TABLE %s%d (id int PRIMARY KEY)", prefix or "t", i),
      down_sql = string.format("DROP TABLE %s%d", prefix or "t", i),
    }
  end
  return revs
end

function H.write(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
end

--- The error fn(...) raises (pcall'ed directly, so a string error has no position prefix);
--- fails the spec when fn returns instead.
function H.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then
    error("expected an error, got none", 2)
  end
  return err
end

function H.read(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("a")
  f:close()
  return s
end

--- The shell command that runs tide with args (a list) in dir with extra environment.
function H.command(args, opts)
  opts = opts or {}
  local parts = {}
  for k, v in pairs(opts.env or {}) do
    parts[#parts + 1] = k .. "=" .. H.shell_quote(v)
  end
  parts[#parts + 1] = H.shell_quote(H.bin)
  for _, a in ipairs(args) do
    parts[#parts + 1] = H.shell_quote(a)
  end
  local cmd = table.concat(parts, " ")
  if opts.dir then
    cmd = "cd " .. H.shell_quote(opts.dir) .. " && " .. (next(opts.env or {}) and "env " or "") .. cmd
  end
  return cmd
end

--- Runs build/tide and returns {code, stdout, stderr}. opts: dir, env (table), unset (list).
function H.tide(args, opts)
  opts = opts or {}
  local err_file = os.tmpname()
  local unset = ""
  for _, v in ipairs(opts.unset or { "DATABASE_URL" }) do
    unset = unset .. "unset " .. v .. "; "
  end
  local p = assert(io.popen("(" .. unset .. H.command(args, opts) .. ") 2>" .. H.shell_quote(err_file), "r"))
  local stdout = p:read("a")
  local _, _, code = p:close()
  local stderr = H.read(err_file) or ""
  os.remove(err_file)
  return { code = code, stdout = stdout, stderr = stderr, output = stdout .. stderr }
end

--- Starts tide in the background; returns a handle with :wait() -> {code, stdout, stderr}.
function H.spawn(args, opts)
  local out_file, err_file, code_file = os.tmpname(), os.tmpname(), os.tmpname()
  local cmd = string.format("(unset DATABASE_URL; %s >%s 2>%s; echo $? >%s) & echo $!", H.command(args, opts),
    H.shell_quote(out_file), H.shell_quote(err_file), H.shell_quote(code_file))
  local p = assert(io.popen(cmd, "r"))
  local pid = tonumber(p:read("l"))
  p:close()
  return {
    pid = pid,
    wait = function()
      local deadline = core.now() + 120
      while core.now() < deadline do
        local code = H.read(code_file)
        if code and code:match("%d") then
          local r = { code = tonumber(code), stdout = H.read(out_file), stderr = H.read(err_file) }
          os.remove(out_file)
          os.remove(err_file)
          os.remove(code_file)
          return r
        end
        core.sleep(0.05)
      end
      error("tide did not finish within 120 s", 2)
    end,
  }
end

--- Drops the databases and folders this spec file created.
function H.cleanup()
  for _, name in ipairs(created_dbs) do
    pcall(H.sql, nil, "DROP DATABASE IF EXISTS " .. name .. " WITH (FORCE)")
  end
  created_dbs = {}
  for _, dir in ipairs(created_dirs) do
    os.execute("rm -rf " .. H.shell_quote(dir))
  end
  created_dirs = {}
end

--- Tables in schema public of db, sorted.
function H.tables(db, schema)
  local names = {}
  for _, r in ipairs(H.sql(db, "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    .. "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1", schema or "public")) do
    names[#names + 1] = r.relname
  end
  return names
end

--- Applied revisions recorded by tide, sorted.
function H.applied(db, schema)
  local ids = {}
  local present = H.sql(db, "SELECT to_regclass($1) IS NOT NULL AS p", (schema or "tide") .. ".revision")[1].p
  if not present then
    return ids
  end
  -- Since format 2 a non-transactional revision that stopped half way keeps a row with state
  -- 'partial': only state 'applied' counts as applied.
  local has_state = H.sql(db, "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'state' "
    .. "AND NOT attisdropped", (schema or "tide") .. ".revision")[1] ~= nil
  for _, r in ipairs(H.sql(db, "SELECT revision FROM " .. (schema or "tide") .. ".revision"
    .. (has_state and " WHERE state = 'applied'" or "") .. " ORDER BY revision")) do
    ids[#ids + 1] = r.revision
  end
  return ids
end

--- The sandbox password (from PGPASSFILE), for specs that must put a real password in a URL.
function H.password()
  local text = H.read(os.getenv("PGPASSFILE") or "") or ""
  return (text:match("[^\n]*:([^:\n]+)\n?$"))
end

--- A TCP port on 127.0.0.1 where nothing listens (bound and released by the kernel's choice).
function H.closed_port()
  local p = assert(io.popen("python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); "
    .. "print(s.getsockname()[1]); s.close()' 2>/dev/null || echo 1", "r"))
  local port = tonumber(p:read("l"))
  p:close()
  return port
end

--- Decodes the JSON a `tide --json` run printed on stdout.
function H.json(r)
  return require("tide.json").decode(r.stdout)
end

--- Every process below pid (children, grandchildren ...), as a list of pids.
function H.descendants(pid)
  local parent = {}
  local p = assert(io.popen("ls /proc", "r"))
  for name in p:lines() do
    if name:match("^%d+$") then
      local stat = H.read("/proc/" .. name .. "/stat")
      local ppid = stat and stat:match("^%d+ %b() %S+ (%d+)")
      if ppid then
        parent[tonumber(name)] = tonumber(ppid)
      end
    end
  end
  p:close()
  local out = {}
  for child, pp in pairs(parent) do
    local up, depth = pp, 0
    while up and depth < 20 do
      if up == pid then
        out[#out + 1] = child
        break
      end
      up, depth = parent[up], depth + 1
    end
  end
  return out
end

--- The tide processes (build/tide itself, not a shell around it) below pid. Found by their
--- command line, which stays readable: tide makes itself non-dumpable, so /proc/PID/exe of a
--- running tide is out of reach to anyone but root.
function H.tide_pids(pid)
  local out = {}
  for _, child in ipairs(H.descendants(pid)) do
    local argv0 = (H.read("/proc/" .. child .. "/cmdline") or ""):match("^[^\0]*")
    if argv0 == H.bin then
      out[#out + 1] = child
    end
  end
  return out
end

--- Rows of tide's history table (schema default tide) ordered by id.
function H.history(db, schema)
  return H.sql(db, "SELECT id, revision, direction, outcome, sqlstate, error, run_id FROM "
    .. (schema or "tide") .. ".history ORDER BY id")
end

--- Does db have relation name (schema-qualified or in public)?
function H.exists(db, name)
  return H.sql(db, "SELECT to_regclass($1) IS NOT NULL AS p", name)[1].p
end

return H
