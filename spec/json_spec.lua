-- spec/json_spec.lua: tide.json, which --json prints and backup manifests are read back with.
-- Output is stable (sorted keys), decode is strict about what JSON text is (RFC 8259: UTF-8,
-- four-digit \u escapes), and what decode returns encodes back to the same text every time.
local H = require "spec.support.helpers"
local core = require "tide.core"
local json = require "tide.json"

local error_of = H.error_of

-- encode(decode(text)), twice: the second pass must not change what the first printed.
local function settles(text)
  local once = json.encode(json.decode(text))
  assert.equal(once, json.encode(json.decode(once)))
  return once
end

describe("tide.json", function()
  it("encodes objects with sorted keys, arrays in order and null as null", function()
    local value = { b = json.object(), a = { 1, 2.5, "x", true, core.null } }
    assert.equal('{"a":[1,2.5,"x",true,null],"b":{}}', json.encode(value))
    assert.equal("[]", json.encode({}))
  end)

  it("decodes what it encodes, integers staying integers", function()
    local v = json.decode('{"n":3,"f":0.5,"e":1e3,"s":"x\\u00e9\\n","t":[true,false,null]}')
    assert.equal(3, v.n)
    assert.equal("integer", math.type(v.n))
    assert.equal(0.5, v.f)
    assert.equal("float", math.type(v.e))
    assert.equal("xé\n", v.s)
    assert.same({ true, false, core.null }, v.t)
  end)

  it("joins a surrogate pair and turns an unpaired surrogate into U+FFFD", function()
    assert.equal("😀", json.decode('"\\ud83d\\ude00"'))
    assert.equal("\u{FFFD}x", json.decode('"\\ud83dx"'))
    assert.equal("\u{FFFD}", json.decode('"\\ude00"'))
  end)

  it("rejects a \\u escape that is not four hex digits", function()
    for _, bad in ipairs({ '"\\u-001"', '"\\u 1f2"', '"\\u12"', '"\\u12g4"' }) do
      assert.matches("^json: bad \\u escape", error_of(json.decode, bad), 1, false)
    end
  end)

  it("rejects bytes that are not UTF-8, naming where they are", function()
    assert.equal('json: invalid UTF-8 at byte 4 near "\\180b\\""', error_of(json.decode, '"ab\xb4b"'))
    -- the input the fuzzer found: before, two keys repaired to U+FFFD on encode and sorted
    -- differently the second time round
    local found = '{"\xb4\xb4\xb4a":[1,2.5,"x\\u00e9",true,null],"\xdbb":{}}'
    assert.matches("^json: invalid UTF%-8 at byte 3", error_of(json.decode, found))
  end)

  it("encodes bytes that are not UTF-8 as U+FFFD, so its own output is always readable", function()
    local text = json.encode({ msg = "caf\xe9 ok" })
    assert.equal('{"msg":"caf\u{FFFD} ok"}', text)
    assert.equal("caf\u{FFFD} ok", json.decode(text).msg)
  end)

  it("settles after one encode, whatever the keys and escapes", function()
    assert.equal('{"a\\"":1,"a#":2}', settles('{"a#":2,"a\\"":1}'))
    assert.equal('{"\\u0001":[],"é":{}}', settles('{"\\u00e9":{},"\\u0001":[]}'))
  end)

  it("reports malformed text as one json: message", function()
    for _, bad in ipairs({ "", "{", "[1,]", '{"a" 1}', "tru", "01x", '"\x01"', "[1] x" }) do
      assert.matches("^json: ", error_of(json.decode, bad))
    end
  end)
end)
