-- tide.revisions: loads versions/*.lua, validates every file strictly, builds the revision
-- graph and resolves targets (head, heads, base, an id or unique prefix, +N, -N).
-- Everything here happens before tide connects: a bad file fails the run with file:line and
-- never touches the database.
local cache = require "tide.cache"
local config = require "tide.config"
local core = require "tide.core"
local errors = require "tide.errors"
local log = require "tide.log"

local M = {}

-- The keys a revision file may return, with the Lua types each accepts.
M.fields = {
  revision = { string = true },
  down_revision = { ["nil"] = true, string = true, table = true },
  message = { string = true },
  upgrade = { ["function"] = true },
  downgrade = { ["nil"] = true, ["function"] = true },
  transaction = { ["nil"] = true, boolean = true },
  lock_timeout = { ["nil"] = true, string = true, number = true }, -- a duration (tide.config)
  statement_timeout = { ["nil"] = true, string = true, number = true },
  allow = { ["nil"] = true, table = true }, -- lint opt-outs: rule -> reason (tide.lint)
}
local field_names = {}
for k in pairs(M.fields) do
  field_names[#field_names + 1] = k
end
table.sort(field_names)

-- Checksums cover the source with line endings and trailing whitespace normalised, so a file
-- re-saved by another editor keeps its checksum. The algorithm's version is stored beside each
-- checksum: a later tide adds version 2 instead of changing what version 1 means.
M.checksum_algorithm = 1

---@param source string
---@return string
function M.checksum(source)
  return core.checksum(source)
end

-- The line on which `key =` first appears in source, for messages about a field.
local function line_of(source, key)
  local n = 1
  local k = key:gsub("%p", "%%%0")
  for line in (source .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^%s*" .. k .. "%s*=") or line:match("[{,]%s*" .. k .. "%s*=") then
      return n
    end
    n = n + 1
  end
  return 1
end

local function fail(file, line, message)
  errors.raise("load", string.format("%s:%d: %s", file, line, message), { file = file, line = line })
end

-- t's own keys and values, read without its metatable.
local function copy(t)
  local out = {}
  for k, v in next, t do
    out[k] = v
  end
  return out
end

-- A file this large is collected as soon as it is loaded (a revision holding a 50 MB statement
-- would otherwise keep its text and compiled chunk until the collector gets to them).
local BIG_FILE = 1024 * 1024

-- The longest revision id: an id is printed on every line about its revision.
local MAX_ID = 255

--- What the top level of a revision file may spend (config.load_limits): set by load() from
--- tide.lua's load_instructions and load_memory_mb.
M.limits = config.load_limits()

-- A revision keeps only what planning needs. Its source (for the state row or a drift diff)
-- and its upgrade/downgrade functions are read again from the file when a run needs them, so
-- a history of thousands of revisions costs little memory, and a run with nothing to do
-- never keeps a compiled function. A file edited since tide loaded it is refused rather than
-- run or recorded under the old checksum.
local Revision = {}

local function reread(rev)
  local source = config.read_file(rev.file)
  if not source or M.checksum(source) ~= rev.checksum then
    errors.raise("load", string.format("%s changed or disappeared while tide was running", rev.file),
      { file = rev.file })
  end
  return source
end

Revision.__index = function(rev, key)
  if key == "source" then
    local source = reread(rev)
    rawset(rev, "source", source)
    return source
  elseif (key == "upgrade" or key == "downgrade") and not rawget(rev, "functions_loaded") then
    -- the text the functions come from is the text the state row records: read it once
    local source = rawget(rev, "source") or reread(rev)
    rawset(rev, "source", source)
    local chunk = assert(load(source, "@" .. rev.file, "t", config.sandbox()))
    local t = config.run_bounded(function()
      local t = chunk()
      return { upgrade = rawget(t, "upgrade"), downgrade = rawget(t, "downgrade") }
    end, rev.file, "load", M.limits)
    rawset(rev, "upgrade", t.upgrade)
    rawset(rev, "downgrade", t.downgrade)
    rawset(rev, "functions_loaded", true)
    return t[key]
  end
  return nil
end

--- Drops what a run read again for rev (its source and functions); they are re-read if needed.
function M.release(rev)
  rawset(rev, "source", nil)
  rawset(rev, "upgrade", nil)
  rawset(rev, "downgrade", nil)
  rawset(rev, "functions_loaded", nil)
end

--- Loads and validates one revision file (source: its text, when the caller has read it). The
--- second result says whether its top level ran without calling anything that can differ
--- between runs (see config.sandbox).
---@param path string
---@param source string|nil
---@return table revision {revision, parents, message, has_downgrade, transaction, file, checksum, ...}
---@return boolean pure
function M.load_file(path, source)
  source = source or config.read_file(path)
  if not source then
    fail(path, 1, "cannot read the file")
  end
  local pure = true
  local chunk, err = load(source, "@" .. path, "t", config.sandbox(function()
    pure = false
  end))
  if not chunk then
    -- Lua's syntax errors read "path:line: ..."; a binary chunk's refusal names no file
    errors.raise("load", err:find(path, 1, true) == 1 and err or (path .. ":1: " .. err), { file = path })
  end
  -- The top level, and everything tide reads of what it returned (a metatable's code runs
  -- there), within the load budget.
  local rev = config.run_bounded(function()
    local ok, t = pcall(chunk)
    if not ok then
      local message = errors.cut(t)
      errors.raise("load", message:find(path, 1, true) and message or (path .. ": " .. message), { file = path })
    end
    if type(t) ~= "table" then
      fail(path, 1, "a revision file must return a table, got " .. type(t))
    end
    for k, v in next, t do
      local key = errors.cut(k)
      local accepted = M.fields[k]
      if not accepted then
        fail(path, line_of(source, key), string.format("unknown key `%s`%s", key,
          errors.did_you_mean(key, field_names)))
      elseif not accepted[type(v)] then
        fail(path, line_of(source, key), string.format("`%s` must not be a %s", key, type(v)))
      end
    end
    for _, key in ipairs { "revision", "message", "upgrade" } do
      if rawget(t, key) == nil then
        fail(path, 1, string.format("missing `%s`", key))
      end
    end
    local id = rawget(t, "revision")
    if not id:match("^[%w_.-]+$") then
      fail(path, line_of(source, "revision"),
        string.format("revision id %q: use letters, digits, '.', '_' and '-'", errors.cut(id)))
    elseif #id > MAX_ID then
      fail(path, line_of(source, "revision"), string.format("revision id of %d bytes: at most %d", #id, MAX_ID))
    end
    local parents = {}
    local down = rawget(t, "down_revision")
    if type(down) == "string" then
      parents = { down }
    elseif type(down) == "table" then
      for i = 1, rawlen(down) do
        local p = rawget(down, i)
        if type(p) ~= "string" then
          fail(path, line_of(source, "down_revision"), string.format("down_revision[%d] must be a string", i))
        end
        parents[i] = p
      end
      if #parents == 0 then
        fail(path, line_of(source, "down_revision"), "down_revision is an empty list (use nil for a root)")
      end
    end
    local allow = rawget(t, "allow")
    -- Durations are parsed here, once, into what PostgreSQL is sent ("2000ms"): a bad one is a
    -- load error at its line, before tide connects.
    local timeouts = {}
    for _, key in ipairs { "lock_timeout", "statement_timeout" } do
      local value = rawget(t, key)
      if value ~= nil then
        local ms, why = config.duration(value)
        if not ms then
          fail(path, line_of(source, key), string.format("%s %s: %s", key, type(value) == "string"
            and string.format("%q", value:sub(1, 40)) or tostring(value), why))
        end
        timeouts[key] = config.pg_duration(ms)
      end
    end
    return setmetatable({
      revision = id,
      parents = parents,
      message = errors.cut(rawget(t, "message")), -- what status, logs and the state row show
      has_downgrade = rawget(t, "downgrade") ~= nil,
      transaction = rawget(t, "transaction") ~= false,
      lock_timeout = timeouts.lock_timeout,
      statement_timeout = timeouts.statement_timeout,
      allow = allow and copy(allow),
      file = path,
    }, Revision)
  end, path, "load", M.limits)
  rev.checksum = M.checksum(source)
  return rev, pure
end

-- revisions.fingerprint over a list of revisions.
local function fingerprint_of(revs)
  local lines = {}
  for i, rev in ipairs(revs) do
    lines[i] = rev.revision .. "\t" .. rev.checksum .. "\n"
  end
  table.sort(lines)
  return core.sha256(table.concat(lines))
end

-- Every *.lua in dir as revisions, in name order, running as few files as it can: a file
-- whose stamp is the one dir's cache recorded is not even read, and a file whose bytes hash
-- to the recorded hash (a fresh checkout or container) is read but not run. The cache is
-- rewritten when it learnt something: a file run, a stamp that changed, an entry not used.
local function load_all(dir, names, use_cache)
  local entries, count, fingerprint = {}, 0, ""
  if use_cache then
    entries, count, fingerprint = cache.read(dir)
  end
  -- revs[i] came from the file stamped stamps[i] (or "": unsettled) whose bytes hash to
  -- hashes[i] (or false: not to be cached)
  local revs, stamps, hashes, used, read, learnt = {}, {}, {}, 0, 0, false
  for _, name in ipairs(names) do
    if name:sub(-4) == ".lua" then
      local path = config.join(dir, name)
      local found, stamp, settled = pcall(core.filestamp, path)
      stamp = found and settled and stamp or nil -- an unsettled stamp vouches for nothing
      local hit = entries[name]
      local rev, hash
      if hit and stamp and hit.stamp == stamp then
        rev, hash = hit.meta, hit.hash
      else
        local source = config.read_file(path)
        read = read + 1
        hash = source and core.sha256(source)
        if hit and hash == hit.hash then
          rev = hit.meta
          learnt = learnt or (stamp ~= nil and stamp ~= hit.stamp)
        else
          local pure
          rev, pure = M.load_file(path, source)
          if not (pure and cache.cacheable(rev)) then
            hash = nil
          end
          learnt = learnt or hash ~= nil
          if #source > BIG_FILE then
            -- its text and compiled chunk are garbage now: do not carry them into the run
            source = nil -- luacheck: ignore 311 (a live local would keep the text from the collector)
            collectgarbage()
          end
        end
      end
      if hit and rev == hit.meta then
        used = used + 1
        setmetatable(rev, Revision).file = path
      end
      local i = #revs + 1
      revs[i], stamps[i], hashes[i] = rev, stamp or "", hash or false
    end
  end
  log.debug("revisions: %d of %d files as %s recorded them; %d files read", used, #revs, cache.NAME, read)
  if use_cache and (learnt or used < count) then
    local records = {}
    for i, rev in ipairs(revs) do
      if hashes[i] then
        records[#records + 1] = { name = rev.file:match("[^/]*$"), stamp = stamps[i], hash = hashes[i], rev = rev }
      end
    end
    local ok, err = cache.write(dir, records, #records == #revs and fingerprint_of(revs) or "")
    if not ok then
      log.debug("revision cache not written: %s", err)
    end
    return revs
  end
  -- every file as the cache recorded it, and nothing else: its fingerprint is theirs
  return revs, used == #revs and count == #revs and fingerprint ~= "" and fingerprint or nil
end

-- Revision ids -------------------------------------------------------------------------------
-- `tide new` on two branches must not give two revisions one id (a numbered "008" on each
-- branch fails the run after the merge). A new id is the UTC time to the second and 16 random
-- bits, "20261124T101834-3f2a": it sorts by creation time, so files list in the order they were
-- written (and after numbered ids such as 001), and two developers collide only by writing
-- their revisions in the same second and drawing the same 1-in-65536 suffix.

M.ID_PATTERN = "^%d%d%d%d%d%d%d%dT%d%d%d%d%d%d%-%x%x%x%x$"

--- A new revision id that no revision in graph has and that sorts after every id of graph made
--- in the same second (several `tide new` in one second still list in order).
---@param graph table|nil
---@return string
function M.new_id(graph)
  local stamp = os.date("!%Y%m%dT%H%M%S")
  local floor = ""
  for _, rev in ipairs(graph and graph.list or {}) do
    if rev.revision:sub(1, #stamp) == stamp and rev.revision > floor then
      floor = rev.revision
    end
  end
  for _ = 1, 64 do
    local bytes = core.random_bytes(2)
    local id = string.format("%s-%02x%02x", stamp, bytes:byte(1), bytes:byte(2))
    if id > floor then
      return id
    end
  end
  core.sleep(1) -- this second's suffixes are used up: take the next second's
  return M.new_id(graph)
end

--- Loads every versions/*.lua and builds the graph. opts.cache = false leaves dir's
--- .tide-cache alone (tide.lua's `cache = false`); opts.limits is what a file's top level may
--- spend (config.load_limits).
---@param dir string
---@param opts table|nil
---@return table graph {list (topological order), by_id, heads, children}
function M.load(dir, opts)
  M.limits = opts and opts.limits or M.limits
  local listed, names = pcall(core.listdir, dir)
  if not listed then
    errors.raise("config", "versions directory " .. tostring(names))
  end
  local graph = { list = {}, by_id = {}, children = {}, dir = dir }
  local revs, fingerprint = load_all(dir, names, not opts or opts.cache ~= false)
  graph.fingerprint = fingerprint
  for _, rev in ipairs(revs) do
    local other = graph.by_id[rev.revision]
    if other then
      fail(rev.file, line_of(rev.source, "revision"), string.format("duplicate revision id %q (also in %s:%d)\n"
        .. "  hint: two revisions were given one id, usually by `tide new` on two branches. Give one of them a new "
        .. "id (for example revision = %q in %s) and change down_revision = %q to it in the revisions written on "
        .. "top of that one; if both are heads then, join them with `tide merge`. Ids from this tide's `tide new` "
        .. "do not collide.", rev.revision, other.file, line_of(other.source, "revision"), M.new_id(),
        rev.file, rev.revision))
    end
    graph.by_id[rev.revision] = rev
    graph.list[#graph.list + 1] = rev
  end
  for _, rev in ipairs(graph.list) do
    graph.children[rev.revision] = graph.children[rev.revision] or {}
    for _, p in ipairs(rev.parents) do
      if not graph.by_id[p] then
        fail(rev.file, line_of(rev.source, "down_revision"),
          string.format("down_revision %q is not a known revision%s", p, errors.did_you_mean(p, M.ids(graph))))
      end
      graph.children[p] = graph.children[p] or {}
      table.insert(graph.children[p], rev.revision)
    end
  end
  M.sort(graph)
  graph.heads = {}
  for _, rev in ipairs(graph.list) do
    if #graph.children[rev.revision] == 0 then
      graph.heads[#graph.heads + 1] = rev.revision
    end
  end
  return graph
end

--- The SHA-256 (hex) of "id<TAB>checksum<LF>" for every revision, in byte order of id: what
--- track.fingerprint returns for a database where exactly these files are applied. A graph
--- loaded wholly from the cache has it already.
function M.fingerprint(graph)
  graph.fingerprint = graph.fingerprint or fingerprint_of(graph.list)
  return graph.fingerprint
end

function M.ids(graph)
  local ids = {}
  for _, rev in ipairs(graph.list) do
    ids[#ids + 1] = rev.revision
  end
  return ids
end

--- Orders graph.list so that every parent comes before its children (ties keep file order) and
--- reports a cycle with the revisions on it.
function M.sort(graph)
  local state, order = {}, {}
  local function visit(rev, path)
    local id = rev.revision
    if state[id] == "done" then
      return
    end
    if state[id] == "visiting" then
      local cycle, start = {}, nil
      for i, p in ipairs(path) do
        if p == id then
          start = i
        end
        if start then
          cycle[#cycle + 1] = string.format("%s (%s)", p, graph.by_id[p].file)
        end
      end
      cycle[#cycle + 1] = id
      errors.raise("load", "revision cycle: " .. table.concat(cycle, " -> "), { file = rev.file })
    end
    state[id] = "visiting"
    path[#path + 1] = id
    for _, p in ipairs(rev.parents) do
      visit(graph.by_id[p], path)
    end
    path[#path] = nil
    state[id] = "done"
    order[#order + 1] = rev
  end
  for _, rev in ipairs(graph.list) do
    visit(rev, {})
  end
  graph.list = order
  graph.index = {}
  for i, rev in ipairs(order) do
    graph.index[rev.revision] = i
  end
end

--- rev and every revision it descends from, as a set.
function M.ancestors(graph, id, into)
  into = into or {}
  if into[id] then
    return into
  end
  into[id] = true
  for _, p in ipairs(graph.by_id[id].parents) do
    M.ancestors(graph, p, into)
  end
  return into
end

--- The applied revisions with no applied children, in graph order (ids the files do not know
--- last): what Alembic calls the current revision(s). Empty means base.
---@param graph table
---@param applied table set (or map) of applied ids
---@return string[]
function M.current(graph, applied)
  local current = {}
  for id in pairs(applied) do
    local covered = false
    for _, child in ipairs(graph.children[id] or {}) do
      if applied[child] then
        covered = true
      end
    end
    if not covered then
      current[#current + 1] = id
    end
  end
  table.sort(current, function(a, b)
    local ia, ib = graph.index[a] or math.maxinteger, graph.index[b] or math.maxinteger
    if ia ~= ib then
      return ia < ib
    end
    return a < b
  end)
  return current
end

--- Resolves a revision id or unique prefix to an id.
function M.find(graph, word)
  if word == "" then -- a prefix of every id
    errors.raise("usage", 'unknown target "": give head, heads, base, +N, -N or a revision id')
  end
  if graph.by_id[word] then
    return word
  end
  local found = {}
  for _, rev in ipairs(graph.list) do
    if rev.revision:sub(1, #word) == word then
      found[#found + 1] = rev.revision
    end
  end
  if #found == 1 then
    return found[1]
  elseif #found > 1 then
    errors.raise("usage", string.format("target %q is ambiguous: %s", word, table.concat(found, ", ")))
  end
  errors.raise("usage", string.format("unknown target %q: not head, heads, base, +N, -N or a revision in %s%s",
    errors.cut(word), graph.dir, errors.did_you_mean(word, M.ids(graph))))
end

--- The single head, or a clear refusal naming every head.
function M.head(graph)
  if #graph.heads == 1 then
    return graph.heads[1]
  elseif #graph.heads == 0 then
    errors.raise("load", "no revisions in " .. graph.dir .. " (create one with `tide new \"message\"`)")
  end
  local names = {}
  for _, id in ipairs(graph.heads) do
    names[#names + 1] = string.format("%s (%s)", id, graph.by_id[id].file)
  end
  errors.raise("load", "multiple heads: " .. table.concat(names, ", ")
    .. "; merge them with `tide merge` or name the target (`heads` or a revision)")
end

-- Revisions of `set` in topological order (ascending) or reverse.
local function ordered(graph, set, descending)
  local out = {}
  for _, rev in ipairs(graph.list) do
    if set[rev.revision] then
      out[#out + 1] = rev
    end
  end
  if descending then
    for i = 1, #out // 2 do
      out[i], out[#out + 1 - i] = out[#out + 1 - i], out[i]
    end
  end
  return out
end

--- Revisions to apply, in order, to reach target from the applied set.
---@param graph table
---@param applied table set of applied revision ids
---@param target string
---@return table[] revisions
function M.plan_upgrade(graph, applied, target)
  local n = target:match("^%+(%d+)$")
  if n then
    local pending = {}
    for _, rev in ipairs(graph.list) do
      if not applied[rev.revision] and #pending < tonumber(n) then
        pending[#pending + 1] = rev
      end
    end
    return pending
  end
  if target:match("^%-%d+$") then
    errors.raise("usage", "upgrade target " .. errors.cut(target) .. " goes down: use `tide downgrade "
      .. errors.cut(target) .. "`")
  end
  local wanted = {}
  if target == "head" then
    M.ancestors(graph, M.head(graph), wanted)
  elseif target == "heads" then
    for _, h in ipairs(graph.heads) do
      M.ancestors(graph, h, wanted)
    end
  elseif target ~= "base" then
    M.ancestors(graph, M.find(graph, target), wanted)
  end
  for id in pairs(applied) do
    wanted[id] = nil
  end
  return ordered(graph, wanted)
end

-- `downgrade head` and `downgrade +1` read as "down from head" and "one down": say what a
-- downgrade target is rather than looking them up as revision ids.
local function refuse_upward(target)
  if target:match("^%+%d+$") or target == "head" or target == "heads" then
    errors.raise("usage", string.format("downgrade target %s: a downgrade target is where to stop, below what is "
      .. "applied: a revision (it stays applied), -N (revert the last N applied revisions) or base (revert them "
      .. "all); %s names revisions to apply (`tide upgrade %s`). To revert the latest revision: `tide downgrade -1`",
      errors.cut(target), target:sub(1, 1) == "+" and "+N" or target, errors.cut(target)))
  end
end

--- Revisions to revert, in order (children first), to reach target from the applied set.
function M.plan_downgrade(graph, applied, target)
  local n = target:match("^%-(%d+)$")
  if n then
    local out = {}
    for _, rev in ipairs(ordered(graph, applied, true)) do
      if #out < tonumber(n) then
        out[#out + 1] = rev
      end
    end
    return out
  end
  refuse_upward(target)
  local keep = {}
  if target ~= "base" then
    local id = M.find(graph, target)
    if not applied[id] then
      errors.raise("usage", string.format("downgrade target %q is not applied to the database", id))
    end
    M.ancestors(graph, id, keep)
  end
  local revert = {}
  for id in pairs(applied) do
    if not keep[id] then
      revert[id] = true
    end
  end
  return ordered(graph, revert, true)
end

--- Resolves target against the files alone, so that an unknown target or several heads are
--- refused before tide connects.
function M.check_target(graph, direction, target)
  if direction == "upgrade" then
    M.plan_upgrade(graph, {}, target)
  elseif not target:match("^%-%d+$") and target ~= "base" then
    refuse_upward(target)
    M.plan_downgrade(graph, { [M.find(graph, target)] = true }, target)
  end
end

--- The set of revisions that `stamp target` leaves recorded.
function M.stamp_set(graph, target)
  local set = {}
  if target == "head" then
    M.ancestors(graph, M.head(graph), set)
  elseif target == "heads" then
    for _, h in ipairs(graph.heads) do
      M.ancestors(graph, h, set)
    end
  elseif target ~= "base" then
    M.ancestors(graph, M.find(graph, target), set)
  end
  return set
end

return M
