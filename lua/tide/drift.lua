-- tide.drift: applied revisions whose file changed since, and what changed: a unified diff of
-- the source the database recorded against the file (for `tide check`, `tide accept` and the
-- runner's refusal to upgrade over drift).
local revisions = require "tide.revisions"
local track = require "tide.track"

local M = {}

--- Applied revisions whose file changed since: list of {rev, row}, in graph order. A partial
--- revision is not drift: fixing its file before resuming it is the normal way forward.
--- Rows checksummed by another algorithm version than this tide's are compared only when this
--- tide knows that algorithm (today there is one).
function M.drifted(graph, applied)
  local out = {}
  for _, rev in ipairs(graph.list) do
    local row = applied[rev.revision]
    if row and row.checksum_algorithm == revisions.checksum_algorithm and row.checksum ~= rev.checksum then
      out[#out + 1] = { rev = rev, row = row }
    end
  end
  return out
end

local function lines_of(text)
  local list = {}
  if (text or "") == "" then
    return list
  end
  for line in ((text or ""):gsub("\r\n?", "\n"):gsub("\n$", "") .. "\n"):gmatch("([^\n]*)\n") do
    list[#list + 1] = line
  end
  return list
end

--- A unified diff of a against b, as `diff -u` writes it: `---`/`+++` labels, then hunks with
--- `@@ -start,count +start,count @@` headers, `context` unchanged lines around each change
--- (default 3), and in each change the removed lines ("-") before the added ones ("+"), so
--- `patch` applies it. Empty string when equal.
---@param a string
---@param b string
---@param label_a string
---@param label_b string
---@param context integer|nil
---@return string
function M.diff(a, b, label_a, label_b, context)
  context = context or 3
  local x, y = lines_of(a), lines_of(b)
  local n, m = #x, #y
  -- LCS table from the end; revision files are small, so O(n*m) is fine.
  local L = {}
  for i = n + 1, 1, -1 do
    L[i] = {}
    for j = m + 1, 1, -1 do
      if i > n or j > m then
        L[i][j] = 0
      elseif x[i] == y[j] then
        L[i][j] = L[i + 1][j + 1] + 1
      else
        L[i][j] = math.max(L[i + 1][j], L[i][j + 1])
      end
    end
  end
  -- the edit script, each run of changes written as its removals, then its additions
  local ops, removed, added = {}, {}, {}
  local function flush()
    table.move(removed, 1, #removed, #ops + 1, ops)
    table.move(added, 1, #added, #ops + 1, ops)
    removed, added = {}, {}
  end
  local i, j = 1, 1
  while i <= n or j <= m do
    if i <= n and j <= m and x[i] == y[j] then
      flush()
      ops[#ops + 1] = { " ", x[i] }
      i, j = i + 1, j + 1
    elseif j <= m and (i > n or L[i][j + 1] >= L[i + 1][j]) then
      added[#added + 1] = { "+", y[j] }
      j = j + 1
    else
      removed[#removed + 1] = { "-", x[i] }
      i = i + 1
    end
  end
  flush()
  -- lines of a and of b before each op, for the hunk headers
  local a_before, b_before, ai, bj = {}, {}, 0, 0
  for k, op in ipairs(ops) do
    a_before[k], b_before[k] = ai, bj
    ai = ai + (op[1] ~= "+" and 1 or 0)
    bj = bj + (op[1] ~= "-" and 1 or 0)
  end
  local hunks = {}
  for k, op in ipairs(ops) do
    if op[1] ~= " " then
      local first, last = math.max(1, k - context), math.min(#ops, k + context)
      local h = hunks[#hunks]
      if h and first <= h.last + 1 then
        h.last = math.max(h.last, last)
      else
        hunks[#hunks + 1] = { first = first, last = last }
      end
    end
  end
  if #hunks == 0 then
    return ""
  end
  local function range(before, count)
    local start = count == 0 and before or before + 1
    return count == 1 and tostring(start) or (start .. "," .. count)
  end
  local outl = { "--- " .. label_a, "+++ " .. label_b }
  for _, h in ipairs(hunks) do
    local a_count, b_count = 0, 0
    for k = h.first, h.last do
      a_count = a_count + (ops[k][1] ~= "+" and 1 or 0)
      b_count = b_count + (ops[k][1] ~= "-" and 1 or 0)
    end
    outl[#outl + 1] = string.format("@@ -%s +%s @@", range(a_before[h.first], a_count),
      range(b_before[h.first], b_count))
    for k = h.first, h.last do
      outl[#outl + 1] = ops[k][1] .. ops[k][2]
    end
  end
  return table.concat(outl, "\n")
end

--- Text naming each drifted revision with a diff of the applied source against the file.
function M.report(conn, cfg, drifted)
  local ids = {}
  for i, d in ipairs(drifted) do
    ids[i] = d.rev.revision
  end
  local stored = track.sources(conn, cfg.schema, ids)
  local parts = {}
  for _, d in ipairs(drifted) do
    local row = stored[d.rev.revision] or {}
    local difference
    if row.source == "" then -- applied by an `upgrade --sql` script made without --embed-sources
      difference = string.format("  its source was not stored when it was applied (an `upgrade --sql` script made "
        .. "without --embed-sources), so there is no diff: applied checksum %s, file checksum %s",
        d.row.checksum:sub(1, 12), d.rev.checksum:sub(1, 12))
    else
      difference = M.diff(row.source or "", d.rev.source, "applied source (" .. d.row.checksum:sub(1, 12) .. ")",
        d.rev.file .. " (" .. d.rev.checksum:sub(1, 12) .. ")")
    end
    parts[#parts + 1] = string.format("revision %s (%s) changed since it was applied on %s:\n%s", d.rev.revision,
      d.rev.file, d.row.applied_at or "?", difference)
  end
  return table.concat(parts, "\n")
end

return M
