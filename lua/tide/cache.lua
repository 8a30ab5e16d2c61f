-- tide.cache: what tide learnt from each revision file (its id, parents, message, flags and
-- checksum), kept in versions/.tide-cache so a start with nothing to do runs no revision file.
-- Loading a thousand revision files costs more CPU than everything else such a start does;
-- checking a thousand file stamps costs a fraction of it, and hashing a thousand files about a
-- quarter of it.
--
-- An entry stands in for running its file only when all of these hold, and otherwise the file
-- is run as if there were no cache (a cache can make tide faster, never different):
--   - the cache was written by this exact Lua library (tide.build's library_id);
--   - either the file's stamp (size, mtime, ctime, inode, device: core.filestamp) is the one
--     recorded, and was settled when recorded (no write since can have kept it unchanged), or
--     the SHA-256 of the file's bytes is the one recorded (a fresh checkout, a container
--     started from an image whose build ran tide once: stamps differ, contents do not);
--   - evaluating the file's top level called nothing that can differ between runs (os.*,
--     math.random, print): load_file reports that, and such files are never cached.
-- Writing is best effort: a read-only versions/ folder just means no cache.
local config = require "tide.config"
local core = require "tide.core"

local M = {}

M.NAME = ".tide-cache"
local MAGIC = "tide-cache 3\n" -- then the library id, the fingerprint, one record per file

local HAS_DOWNGRADE, TRANSACTION, LOCK_TIMEOUT, STATEMENT_TIMEOUT, ALLOW = 1, 2, 4, 8, 16

-- The id of the Lua library this binary carries, or nil (tide.core loaded as a plain module,
-- as the specs do: nothing vouches for the library then, so nothing is cached).
local function library_id()
  local loader = package.preload["tide.build"]
  return loader and loader().library_id
end

-- Lists are written as their items joined by NUL bytes, so a record is one string.unpack:
-- parents and `allow` (rule, reason, rule, reason ...) are cached only when no item holds a NUL
-- and every `allow` rule and reason is a string; anything else makes the file uncacheable.
local function joinable(list)
  for _, item in ipairs(list) do
    if type(item) ~= "string" or item:find("\0", 1, true) then
      return false
    end
  end
  return true
end

local function allow_items(allow)
  local items = {}
  for k, v in pairs(allow) do
    items[#items + 1] = k
    items[#items + 1] = v
  end
  return items
end

local function split(text)
  local items = {}
  for item in (text .. "\0"):gmatch("([^%z]*)%z") do
    items[#items + 1] = item
  end
  return items
end

--- Whether rev's metadata can be written down and read back as it is.
function M.cacheable(rev)
  for _, p in ipairs(rev.parents) do
    if p == "" then -- would read back as no parent at all
      return false
    end
  end
  return joinable(rev.parents) and (rev.allow == nil or joinable(allow_items(rev.allow)))
end

local RECORD = "<s4s4s4s4s4s4Bs4s4s4s4"

local function pack(name, stamp, hash, rev)
  local flags = (rev.has_downgrade and HAS_DOWNGRADE or 0)
    | (rev.transaction and TRANSACTION or 0)
    | (rev.lock_timeout and LOCK_TIMEOUT or 0)
    | (rev.statement_timeout and STATEMENT_TIMEOUT or 0)
    | (rev.allow and ALLOW or 0)
  return string.pack(RECORD, name, stamp, hash, rev.checksum, rev.revision, rev.message, flags,
    rev.lock_timeout or "", rev.statement_timeout or "", table.concat(rev.parents, "\0"),
    rev.allow and table.concat(allow_items(rev.allow), "\0") or "")
end

-- One record at pos -> name, stamp, hash, metadata, next pos (string.unpack raises on a short
-- file).
local function unpack(data, pos)
  local name, stamp, hash, checksum, revision, message, flags, lock_timeout, statement_timeout, parents, allow
  name, stamp, hash, checksum, revision, message, flags, lock_timeout, statement_timeout, parents, allow, pos =
    string.unpack(RECORD, data, pos)
  local rules
  if flags & ALLOW ~= 0 then
    rules = {}
    local items = allow ~= "" and split(allow) or {}
    for i = 1, #items - 1, 2 do
      rules[items[i]] = items[i + 1]
    end
  end
  return name, stamp, hash, {
    revision = revision,
    -- most revisions have one parent: no split for them
    parents = parents == "" and {} or parents:find("\0", 1, true) and split(parents) or { parents },
    message = message,
    has_downgrade = flags & HAS_DOWNGRADE ~= 0,
    transaction = flags & TRANSACTION ~= 0,
    lock_timeout = flags & LOCK_TIMEOUT ~= 0 and lock_timeout or nil,
    statement_timeout = flags & STATEMENT_TIMEOUT ~= 0 and statement_timeout or nil,
    allow = rules,
    checksum = checksum,
  }, pos
end

--- Reads dir's cache: name -> {stamp, hash, meta}, how many entries, and the fingerprint
--- (revisions.fingerprint) of exactly those entries, or "". Empty when there is none, it is
--- damaged, or another library wrote it.
---@param dir string
---@return table entries
---@return integer count
---@return string fingerprint
function M.read(dir)
  local id = library_id()
  local data = id and config.read_file(config.join(dir, M.NAME))
  local entries, count, fingerprint = {}, 0, ""
  if not data or data:sub(1, #MAGIC) ~= MAGIC then
    return entries, 0, ""
  end
  local ok = pcall(function()
    local written_by, recorded, pos = string.unpack("<s1s1", data, #MAGIC + 1)
    if written_by ~= id then
      return
    end
    fingerprint = recorded
    while pos <= #data do
      local name, stamp, hash, meta
      name, stamp, hash, meta, pos = unpack(data, pos)
      entries[name] = { stamp = stamp, hash = hash, meta = meta }
      count = count + 1
    end
  end)
  if not ok then
    return {}, 0, ""
  end
  return entries, count, fingerprint
end

--- Writes dir's cache from records {name, stamp, hash, rev}, in that order, with the fingerprint
--- of exactly those revisions (or ""), replacing the old one in one rename. Returns true, or nil
--- and why not (tide goes on without a cache).
---@param dir string
---@param records table
---@param fingerprint string
function M.write(dir, records, fingerprint)
  local id = library_id()
  if not id then
    return nil, "no library id"
  end
  local out = { MAGIC, string.pack("<s1s1", id, fingerprint) }
  for _, r in ipairs(records) do
    out[#out + 1] = pack(r.name, r.stamp, r.hash, r.rev)
  end
  local path = config.join(dir, M.NAME)
  local tmp = string.format("%s.%d", path, core.pid())
  local f, err = io.open(tmp, "wb")
  if not f then
    return nil, err
  end
  local ok, werr = f:write(table.concat(out))
  local closed, cerr = f:close()
  if not (ok and closed) then
    os.remove(tmp)
    return nil, werr or cerr
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    return nil, rerr
  end
  return true
end

return M
