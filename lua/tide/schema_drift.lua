-- tide.schema_drift: `tide check --schema`, the live database against what its applied revisions say it
-- should be.
--
-- The revisions the live database has applied are replayed onto a dev database (tide.sources'
-- scratch database), both are read into catalog models, and every difference is reported, the
-- row-level security regressions first: RLS disabled or no longer forced, a policy dropped,
-- changed or added, a privilege granted that the revisions do not grant. The live database is
-- only read, in one read-only transaction. `tide check --schema` (tide.commands.inspecting) calls M.check.
local catalog = require "tide.catalog"
local diff = require "tide.diff"
local errors = require "tide.errors"
local log = require "tide.log"
local runner = require "tide.runner"
local session = require "tide.session"
local sources = require "tide.sources"

local M = {}

local function set_of(list)
  local s = {}
  for _, x in ipairs(list or {}) do
    s[x] = true
  end
  return s
end

local function widened(expected, live)
  local had, added = set_of(expected), {}
  for _, item in ipairs(live or {}) do
    if not had[item] then
      added[#added + 1] = item
    end
  end
  return added
end

local function policy_text(p)
  return string.format("%s FOR %s TO %s USING (%s) WITH CHECK (%s)", p.permissive and "PERMISSIVE" or "RESTRICTIVE",
    p.command:upper(), p.roles, p.using or "", p.with_check or "")
end

--- The RLS regressions of live against expected: list of {what, object, expected, live}.
function M.rls_findings(expected, live)
  local found = {}
  local function add(what, object, want, have)
    found[#found + 1] = { what = what, object = object, expected = want, live = have }
  end
  for _, q in ipairs(catalog.sorted_keys(expected.tables)) do
    local t, l = expected.tables[q], live.tables[q]
    if l then
      if t.rls and not l.rls then
        add("row-level security disabled", q, "enabled", "disabled")
      end
      if t.force_rls and not l.force_rls then
        add("row-level security no longer forced", q, "forced", "not forced")
      end
      for _, n in ipairs(catalog.sorted_keys(t.policies)) do
        local p, lp = t.policies[n], l.policies[n]
        if not lp then
          add("policy dropped", q .. "." .. n, policy_text(p), nil)
        elseif policy_text(p) ~= policy_text(lp) then
          add("policy changed", q .. "." .. n, policy_text(p), policy_text(lp))
        end
      end
      for _, n in ipairs(catalog.sorted_keys(l.policies)) do
        if not t.policies[n] then
          add("policy added", q .. "." .. n, nil, policy_text(l.policies[n]))
        end
      end
      local grants = widened(t.acl, l.acl)
      if #grants > 0 then
        add("grant widened", q, table.concat(t.acl, ","), table.concat(l.acl, ","))
      end
      for _, col in ipairs(l.columns) do
        local ec = t.column[col.name]
        if ec and #widened(ec.acl, col.acl) > 0 then
          add("grant widened", q .. "." .. col.name, table.concat(ec.acl, ","), table.concat(col.acl, ","))
        end
      end
    end
  end
  for _, kind in ipairs { "views", "sequences", "functions", "schemas", "types" } do
    for _, q in ipairs(catalog.sorted_keys(expected[kind])) do
      local e, l = expected[kind][q], live[kind][q]
      if l and #widened(e.acl, l.acl) > 0 then
        add("grant widened", q, table.concat(e.acl, ","), table.concat(l.acl, ","))
      end
    end
  end
  return found
end

--- tide check --schema: {ok, rls = findings, changes = other differences, exit}.
function M.check(ctx, flags)
  local cfg, graph = ctx.cfg, ctx.graph
  local live
  local targets = {}
  do
    local conn <close> = session.connect(cfg, { setup = false })
    local applied, partial = runner.state(conn, cfg)
    if next(partial) then
      errors.raise("run", "a partially applied revision must be settled before the schema can be compared "
        .. "(`tide status`)")
    end
    local unknown = runner.unknown(graph, applied, partial)
    if #unknown > 0 then
      errors.raise("ahead", string.format("the database has applied revision%s %s, not found in %s: the schema "
        .. "cannot be replayed", #unknown > 1 and "s" or "", table.concat(unknown, ", "), graph.dir))
    end
    for _, rev in ipairs(graph.list) do
      if applied[rev.revision] then
        local covered = false
        for _, child in ipairs(graph.children[rev.revision] or {}) do
          covered = covered or applied[child] ~= nil
        end
        if not covered then
          targets[#targets + 1] = rev.revision
        end
      end
    end
    live = catalog.read(conn, { exclude_schema = cfg.schema, search_path = cfg.search_path })
  end
  local dev <close> = sources.dev_database(cfg, flags["dev-url"] or cfg.dev_url)
  local level = log.level
  log.level = math.min(level, level >= 2 and 2 or 0)
  local ok, err = pcall(function()
    for _, target in ipairs(targets) do
      runner.migrate(dev.cfg, graph, "upgrade", target, {})
    end
  end)
  log.level = level
  if not ok then
    error(err, 0)
  end
  local expected = sources.read_url(cfg, dev.url, "--dev-url")
  local rls = M.rls_findings(expected, live)
  local changes = diff.diff(live, expected) -- what would put the revisions' schema back
  local rls_kinds = { policy = true, rls = true }
  local other = {}
  for _, c in ipairs(diff.plain(changes)) do
    if not rls_kinds[c.kind] and c.kind ~= "privileges" then
      other[#other + 1] = c
    elseif c.kind == "privileges" then
      -- narrowed privileges are drift too; widened ones are in rls already
      local listed = false
      for _, f in ipairs(rls) do
        listed = listed or f.object == c.name
      end
      if not listed then
        other[#other + 1] = c
      end
    end
  end
  local differ = #rls > 0 or #other > 0
  return { ok = not differ, schema = true, applied = targets, rls = rls, changes = other,
    not_compared = live.not_compared, exit = differ and errors.exit_codes.check or 0 }
end

local out = require("tide.text").out

function M.print(result)
  for _, f in ipairs(result.rls) do
    out("RLS: %s: %s%s%s", f.what, f.object, f.expected and ("\n  revisions: " .. f.expected) or "",
      f.live and ("\n  live:      " .. f.live) or "")
  end
  for _, c in ipairs(result.changes) do
    out("drift: %s %s %s (to put it back: %s)", c.kind, c.name, c.action == "drop" and "exists only in the live "
      .. "database" or c.action == "create" and "is missing from the live database" or "differs",
      (c.sql[1] or ""):gsub("\n.*", " ..."))
  end
  for _, item in ipairs(result.not_compared) do
    out("not compared: %s %s", item.kind, item.name)
  end
  if result.ok then
    out("ok: the live schema is what revisions %s give", #result.applied > 0 and table.concat(result.applied, ", ")
      or "(none)")
  else
    out("schema check failed: %d RLS regression%s, %d other difference%s from what revisions %s give", #result.rls,
      #result.rls == 1 and "" or "s", #result.changes, #result.changes == 1 and "" or "s",
      #result.applied > 0 and table.concat(result.applied, ", ") or "(none)")
  end
end

return M
