-- spec/text_spec.lua: tide.text (lua/tide/text.lua): display widths and padding for columns,
-- counts with the right noun, and ASCII file names made from messages. No database.
local text = require "tide.text"

describe("tide.text", function()
  describe("width()", function()
    it("counts columns, not bytes", function()
      assert.are.equal(5, text.width("plain"))
      assert.are.equal(4, text.width("café"))
      assert.are.equal(6, text.width("添加表"))
      assert.are.equal(1, text.width("e\u{301}")) -- e and a combining accent
      assert.are.equal(2, text.width("\u{1F600}"))
      assert.are.equal(0, text.width(""))
    end)

    it("counts a byte a column in text that is not UTF-8", function()
      assert.are.equal(4, text.width("caf\xe9"))
    end)
  end)

  describe("pad()", function()
    it("pads to a display width and never cuts", function()
      assert.are.equal("café  |", text.pad("café", 6) .. "|")
      assert.are.equal("添加  |", text.pad("添加", 6) .. "|")
      assert.are.equal("toolong|", text.pad("toolong", 3) .. "|")
    end)
  end)

  describe("count()", function()
    it("uses the singular for one and the plural otherwise", function()
      assert.are.equal("1 revision", text.count(1, "revision"))
      assert.are.equal("0 revisions", text.count(0, "revision"))
      assert.are.equal("2 revisions", text.count(2, "revision"))
      assert.are.equal("3 indexes", text.count(3, "index", "indexes"))
    end)
  end)

  describe("slug()", function()
    it("writes lower-case ASCII words joined by _", function()
      assert.are.equal("add_billing_table", text.slug("Add billing table!"))
      assert.are.equal("", text.slug("!!!"))
    end)

    it("transliterates Latin letters and leaves other scripts out", function()
      assert.are.equal("anadir_codigo_nandu", text.slug("Añadir código ñandú"))
      assert.are.equal("aeroskobing_strasse", text.slug("Ærøskøbing Straße"))
      assert.are.equal("lodz_uber_ecole", text.slug("ŁÓDŹ über École"))
      assert.are.equal("", text.slug("添加发票表"))
      assert.are.equal("v2_x", text.slug("v2 表 x"))
    end)

    it("keeps at most 40 bytes, without a trailing _", function()
      assert.are.equal("aaaaaaaaaa_bbbbbbbbbb_cccccccccc_ddddddd", text.slug(
        "aaaaaaaaaa bbbbbbbbbb cccccccccc ddddddd eeee"))
      assert.is_true(#text.slug(string.rep("é", 100)) <= 40)
    end)

    it("drops the bytes of a message that is not UTF-8", function()
      assert.are.equal("caf", text.slug("caf\xe9"))
    end)
  end)
end)
