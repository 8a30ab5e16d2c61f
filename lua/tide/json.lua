-- tide.json: the JSON that --json prints, the backup manifests, and the specs read back.
-- encode(value) -> string; decode(string) -> value. Objects have sorted keys so output is
-- stable; a table is an array when its keys are exactly 1..n (an empty table is `[]` unless
-- marked with json.object({})). core.null encodes as null and null decodes to core.null.
local core = require "tide.core"

local M = {}

local object_mt = { __name = "tide.json.object" }

--- Marks t to encode as a JSON object even when empty.
function M.object(t)
  return setmetatable(t or {}, object_mt)
end

local escapes = {
  ['"'] = '\\"',
  ["\\"] = "\\\\",
  ["\b"] = "\\b",
  ["\f"] = "\\f",
  ["\n"] = "\\n",
  ["\r"] = "\\r",
  ["\t"] = "\\t",
}

-- JSON text is UTF-8: a byte that starts no valid sequence (a Latin-1 message, say) becomes
-- U+FFFD instead of making the whole document unreadable for jq and friends.
local function valid_utf8(s)
  if utf8.len(s) then
    return s
  end
  local out, i = {}, 1
  while i <= #s do
    local n, bad = utf8.len(s, i)
    if n then
      out[#out + 1] = s:sub(i)
      break
    end
    out[#out + 1] = s:sub(i, bad - 1) .. "\u{FFFD}"
    i = bad + 1
  end
  return table.concat(out)
end

local function encode_string(s)
  return '"' .. valid_utf8(s):gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function is_array(t)
  if getmetatable(t) == object_mt then
    return false
  end
  local n = 0
  for _ in pairs(t) do
    n = n + 1
  end
  for i = 1, n do
    if t[i] == nil then
      return false
    end
  end
  return true
end

local encode

local function encode_table(t, out, depth)
  if depth > 100 then
    error("json: nesting too deep", 0)
  end
  if is_array(t) then
    out[#out + 1] = "["
    for i, v in ipairs(t) do
      if i > 1 then
        out[#out + 1] = ","
      end
      encode(v, out, depth + 1)
    end
    out[#out + 1] = "]"
    return
  end
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" then
      error("json: object keys must be strings, got " .. type(k), 0)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then
      out[#out + 1] = ","
    end
    out[#out + 1] = encode_string(k)
    out[#out + 1] = ":"
    encode(t[k], out, depth + 1)
  end
  out[#out + 1] = "}"
end

function encode(v, out, depth)
  local t = type(v)
  if v == nil or v == core.null then
    out[#out + 1] = "null"
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      out[#out + 1] = "null"
    elseif math.type(v) == "integer" then
      out[#out + 1] = tostring(v)
    else
      out[#out + 1] = string.format("%.17g", v)
    end
  elseif t == "string" then
    out[#out + 1] = encode_string(v)
  elseif t == "table" then
    encode_table(v, out, depth)
  else
    error("json: cannot encode a " .. t, 0)
  end
end

---@param value any
---@return string
function M.encode(value)
  local out = {}
  encode(value, out, 0)
  return table.concat(out)
end

-- Decoder: a small recursive descent parser over the string.
-- The text near pos is quoted with every byte outside printable ASCII as \ddd, so the message
-- stays one readable line whatever the input held.
local function decode_error(s, pos, what)
  local near = s:sub(pos, pos + 10):gsub('[^ -~]', function(c)
    return "\\" .. c:byte()
  end):gsub('"', '\\"')
  error(string.format('json: %s at byte %d near "%s"', what, pos, near), 0)
end

local function skip(s, pos)
  return s:find("[^ \t\r\n]", pos) or #s + 1
end

local decode_value

-- The four hex digits of a \\u escape at pos, or nil (tonumber alone would take " -1f").
local function hex4(s, pos)
  local hex = s:match("^%x%x%x%x", pos)
  return hex and tonumber(hex, 16)
end

-- JSON text is UTF-8 (RFC 8259): what decode returns is valid UTF-8, so encoding it again
-- changes nothing, and bytes that are not UTF-8 are reported where they are.
local function decode_string(s, pos)
  local out, i = {}, pos + 1
  while true do
    local c = s:sub(i, i)
    if c == "" then
      decode_error(s, pos, "unterminated string")
    elseif c:byte() < 0x20 then
      decode_error(s, i, "control character in string")
    elseif c == '"' then
      return table.concat(out), i + 1
    elseif c == "\\" then
      local e = s:sub(i + 1, i + 1)
      local simple = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
      if simple[e] then
        out[#out + 1] = simple[e]
        i = i + 2
      elseif e == "u" then
        local code = hex4(s, i + 2) or decode_error(s, i, "bad \\u escape")
        i = i + 6
        if code >= 0xD800 and code <= 0xDBFF and s:sub(i, i + 1) == "\\u" then
          local low = hex4(s, i + 2)
          if low and low >= 0xDC00 and low <= 0xDFFF then
            code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
            i = i + 6
          end
        end
        -- A surrogate left unpaired has no UTF-8 form: it becomes U+FFFD, as the encoder does.
        out[#out + 1] = utf8.char((code >= 0xD800 and code <= 0xDFFF) and 0xFFFD or code)
      else
        decode_error(s, i, "bad escape")
      end
    else
      local j = s:find('["\\%c]', i) or #s + 1
      local run = s:sub(i, j - 1)
      local _, bad = utf8.len(run)
      if bad then
        decode_error(s, i + bad - 1, "invalid UTF-8")
      end
      out[#out + 1] = run
      i = j
    end
  end
end

function decode_value(s, pos, depth)
  if depth > 200 then
    decode_error(s, pos, "nesting too deep")
  end
  pos = skip(s, pos)
  local c = s:sub(pos, pos)
  if c == "{" then
    local t = M.object({})
    pos = skip(s, pos + 1)
    if s:sub(pos, pos) == "}" then
      return t, pos + 1
    end
    while true do
      if s:sub(pos, pos) ~= '"' then
        decode_error(s, pos, "expected a string key")
      end
      local k
      k, pos = decode_string(s, pos)
      pos = skip(s, pos)
      if s:sub(pos, pos) ~= ":" then
        decode_error(s, pos, "expected ':'")
      end
      t[k], pos = decode_value(s, pos + 1, depth + 1)
      pos = skip(s, pos)
      local d = s:sub(pos, pos)
      if d == "}" then
        return t, pos + 1
      elseif d ~= "," then
        decode_error(s, pos, "expected ',' or '}'")
      end
      pos = skip(s, pos + 1)
    end
  elseif c == "[" then
    local t, n = {}, 0
    pos = skip(s, pos + 1)
    if s:sub(pos, pos) == "]" then
      return t, pos + 1
    end
    while true do
      n = n + 1
      t[n], pos = decode_value(s, pos, depth + 1)
      pos = skip(s, pos)
      local d = s:sub(pos, pos)
      if d == "]" then
        return t, pos + 1
      elseif d ~= "," then
        decode_error(s, pos, "expected ',' or ']'")
      end
      pos = pos + 1
    end
  elseif c == '"' then
    return decode_string(s, pos)
  elseif s:sub(pos, pos + 3) == "true" then
    return true, pos + 4
  elseif s:sub(pos, pos + 4) == "false" then
    return false, pos + 5
  elseif s:sub(pos, pos + 3) == "null" then
    return core.null, pos + 4
  else
    -- JSON's number grammar: -?int(.digits)?([eE][-+]?digits)?
    local int = s:match("^-?%d+", pos)
    if not int then
      decode_error(s, pos, "unexpected character")
    end
    local stop = pos + #int
    local frac = s:match("^%.%d+", stop)
    stop = stop + (frac and #frac or 0)
    local exp = s:match("^[eE][-+]?%d+", stop)
    stop = stop + (exp and #exp or 0)
    local text = s:sub(pos, stop - 1)
    local n = tonumber(text)
    if not n then
      decode_error(s, pos, "bad number")
    end
    return (not frac and not exp) and math.tointeger(n) or n, stop
  end
end

---@param s string
---@return any
function M.decode(s)
  local value, pos = decode_value(s, 1, 0)
  pos = skip(s, pos)
  if pos <= #s then
    decode_error(s, pos, "trailing characters")
  end
  return value
end

return M
