-- tide.dsl: internals shared by the schema DSL modules (tide.schema, tide.rls).
--
-- Not for revision files. It holds what both DSL modules need to behave the same way: strict
-- checking of option tables with a "did you mean" suggestion, checking of enumerated words
-- (ON DELETE actions, index methods, policy commands ...), and the single place where a built
-- statement is handed to `db`.

local dsl = {}

---Levenshtein distance between two short words (option names, type names).
---@param a string
---@param b string
---@return integer
function dsl.distance(a, b)
  local previous = {}
  for j = 0, #b do
    previous[j] = j
  end
  for i = 1, #a do
    local current = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      current[j] = math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
    end
    previous = current
  end
  return previous[#b]
end

---The candidate closest to `word`, or nil when none is close enough to be a plausible typo.
---Ties go to the first candidate in `candidates` order, so callers list common words first.
---@param word string
---@param candidates string[]
---@return string?
function dsl.suggest(word, candidates)
  local best, best_distance
  for _, candidate in ipairs(candidates) do
    local d = dsl.distance(word, candidate)
    if best_distance == nil or d < best_distance then
      best, best_distance = candidate, d
    end
  end
  -- a third of the word, but at least 2: `were`→`where`, `uniqe`→`unique`, `intger`→`integer`
  if best_distance and best_distance <= math.max(2, #word // 3) then
    return best
  end
  return nil
end

---"did you mean `x`?" or the list of valid words when nothing is close.
---@param word string
---@param candidates string[]
---@return string
function dsl.hint(word, candidates)
  local best = dsl.suggest(word, candidates)
  if best then
    return ("did you mean `%s`?"):format(best)
  end
  return ("expected one of: %s"):format(table.concat(candidates, ", "))
end

---Checks an option table against a schema of allowed keys and their Lua types.
---`allowed` is an array of `{key, type}` pairs (type: "boolean", "string", "table",
---"string|table", "value" for anything sql.literal or sql.raw accepts, "any").
---Raises "unknown option `were` to create_index: did you mean `where`?" for an unknown key and
---"option `unique` to create_index must be a boolean, got string" for a wrong type.
---@param what string the function name used in messages, e.g. "create_index"
---@param options table|nil
---@param allowed {[1]: string, [2]: string}[]
---@param level integer? error level relative to the caller of check_options
---@return table options (an empty table when nil was passed)
function dsl.check_options(what, options, allowed, level)
  level = (level or 1) + 1
  if options == nil then
    return {}
  end
  if type(options) ~= "table" then
    error(("%s: options must be a table, got %s"):format(what, type(options)), level)
  end
  local types, names = {}, {}
  for _, pair in ipairs(allowed) do
    types[pair[1]] = pair[2]
    names[#names + 1] = pair[1]
  end
  for key, value in pairs(options) do
    if type(key) ~= "string" then
      error(("%s: unexpected positional value %s in options"):format(what, tostring(value)), level)
    end
    local expected = types[key]
    if expected == nil then
      error(("unknown option `%s` to %s: %s"):format(key, what,
        dsl.hint(key, names)), level)
    end
    if not dsl.has_type(value, expected) then
      error(("option `%s` to %s must be %s, got %s"):format(key, what,
        dsl.describe_type(expected), type(value)), level)
    end
  end
  return options
end

---@param value any
---@param expected string
---@return boolean
function dsl.has_type(value, expected)
  local actual = type(value)
  if expected == "any" then
    return true
  elseif expected == "value" then
    return actual == "string" or actual == "number" or actual == "boolean"
      or require("tide.sql").is_raw(value)
  end
  for alternative in expected:gmatch("[^|]+") do
    if actual == alternative then
      return true
    end
  end
  return false
end

---@param expected string
---@return string
function dsl.describe_type(expected)
  if expected == "value" then
    return "a string, number, boolean or sql.raw(...)"
  end
  local words = {}
  for alternative in expected:gmatch("[^|]+") do
    words[#words + 1] = "a " .. alternative
  end
  return table.concat(words, " or ")
end

---Normalizes an enumerated word (case and runs of spaces) and checks it against `allowed`.
---@param what string context for the message, e.g. "on_delete of column `owner_id`"
---@param word any
---@param allowed string[] lower-case words
---@param level integer?
---@return string word the normalized lower-case word
function dsl.check_word(what, word, allowed, level)
  level = (level or 1) + 1
  if type(word) ~= "string" then
    error(("%s must be a string, got %s"):format(what, type(word)), level)
  end
  local normalized = word:lower():gsub("[%s_]+", " ")
  for _, candidate in ipairs(allowed) do
    if candidate == normalized then
      return normalized
    end
  end
  error(("unknown %s `%s`: %s"):format(what, word, dsl.hint(normalized, allowed)), level)
end

---Checks that `db` looks like the object the engine passes to upgrade/downgrade, so that
---`schema.create_table("users", ...)` (a missing db) fails with a message saying so.
---@param what string
---@param db any
---@param level integer?
function dsl.check_db(what, db, level)
  local kind = type(db)
  if (kind ~= "table" and kind ~= "userdata") or db.exec == nil then
    error(("%s: first argument must be the db object passed to upgrade/downgrade, got %s")
      :format(what, kind), (level or 1) + 1)
  end
end

---Checks an array of names (or a single name) and returns it as an array.
---@param what string
---@param names string|string[]
---@param level integer?
---@return string[]
function dsl.name_list(what, names, level)
  level = (level or 1) + 1
  if type(names) == "string" then
    return { names }
  end
  if type(names) ~= "table" or #names == 0 then
    error(("%s must be a name or a non-empty list of names"):format(what), level)
  end
  for i = 1, #names do
    if type(names[i]) ~= "string" then
      error(("%s: entry %d must be a string, got %s"):format(what, i, type(names[i])), level)
    end
  end
  return names
end

return dsl
