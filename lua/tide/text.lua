-- tide.text: what tide's human output needs to read right whatever the language of a message:
-- display widths for columns (string.format's %-40s counts bytes, so "café" ends a column
-- early and a CJK message overflows it), counts with the right noun ("1 revision", "2
-- revisions"), file names made from messages (ASCII, Latin letters transliterated), and the
-- one way commands write a line of their output.
local M = {}

--- Writes a line to stdout: fmt formatted with the arguments, or fmt as it is without any.
function M.out(fmt, ...)
  io.stdout:write(select("#", ...) > 0 and string.format(fmt, ...) or fmt, "\n")
end

-- Code points shown two columns wide (East Asian wide and fullwidth, emoji), and ones shown
-- zero wide (combining marks, zero-width spaces and joiners), as [first, last] pairs.
local WIDE = {
  { 0x1100, 0x115F }, { 0x2E80, 0x303E }, { 0x3041, 0x33FF }, { 0x3400, 0x4DBF }, { 0x4E00, 0x9FFF },
  { 0xA000, 0xA4CF }, { 0xAC00, 0xD7A3 }, { 0xF900, 0xFAFF }, { 0xFE30, 0xFE4F }, { 0xFF00, 0xFF60 },
  { 0xFFE0, 0xFFE6 }, { 0x1F300, 0x1F64F }, { 0x1F900, 0x1F9FF }, { 0x20000, 0x3FFFD },
}
local ZERO = {
  { 0x0300, 0x036F }, { 0x0483, 0x0489 }, { 0x0591, 0x05BD }, { 0x0610, 0x061A }, { 0x064B, 0x065F },
  { 0x200B, 0x200F }, { 0x20D0, 0x20FF }, { 0xFE00, 0xFE0F }, { 0xFE20, 0xFE2F },
}

local function within(ranges, c)
  for _, r in ipairs(ranges) do
    if c >= r[1] and c <= r[2] then
      return true
    end
  end
  return false
end

--- The number of terminal columns s takes. Text that is not UTF-8 counts one column a byte.
---@param s string
---@return integer
function M.width(s)
  if not s:find("[\128-\255]") then
    return #s
  end
  if not utf8.len(s) then
    return #s
  end
  local w = 0
  for _, c in utf8.codes(s) do
    if within(ZERO, c) then
      w = w + 0
    elseif c >= 0x1100 and within(WIDE, c) then
      w = w + 2
    else
      w = w + 1
    end
  end
  return w
end

--- s followed by spaces up to width columns (nothing cut: a longer s pushes the line on).
---@param s string
---@param width integer
---@return string
function M.pad(s, width)
  local w = M.width(s)
  return w >= width and s or (s .. string.rep(" ", width - w))
end

--- "1 revision", "3 revisions", "0 revisions"; plural defaults to singular .. "s".
---@param n integer
---@param singular string
---@param plural string|nil
---@return string
function M.count(n, singular, plural)
  return string.format("%d %s", n, n == 1 and singular or (plural or singular .. "s"))
end

-- Latin letters with diacritics and ligatures, as their ASCII spelling (Latin-1 Supplement and
-- Latin Extended-A, which cover the languages written with Latin letters in Europe). Built on
-- first use: only `tide new` needs it, and every start loads this module.
local LATIN

local function latin()
  if LATIN then
    return LATIN
  end
  LATIN = {}
  for ascii, letters in pairs {
    a = "àáâãäåāăąÀÁÂÃÄÅĀĂĄ", c = "çćĉċčÇĆĈĊČ", d = "ďđĎĐ", e = "èéêëēĕėęěÈÉÊËĒĔĖĘĚ", g = "ĝğġģĜĞĠĢ",
    h = "ĥħĤĦ", i = "ìíîïĩīĭįıÌÍÎÏĨĪĬĮİ", j = "ĵĴ", k = "ķĶ", l = "ĺļľŀłĹĻĽĿŁ", n = "ñńņňŉÑŃŅŇ",
    o = "òóôõöøōŏőÒÓÔÕÖØŌŎŐ", r = "ŕŗřŔŖŘ", s = "śŝşšŚŜŞŠ", t = "ţťŧŢŤŦ", u = "ùúûüũūŭůűųÙÚÛÜŨŪŬŮŰŲ",
    w = "ŵŴ", y = "ýÿŷÝŶŸ", z = "źżžŹŻŽ", ae = "æÆ", oe = "œŒ", ss = "ß", th = "þÞ", dh = "ðÐ", ij = "ĳĲ",
  } do
    for _, c in utf8.codes(letters) do
      LATIN[c] = ascii
    end
  end
  return LATIN
end

--- A file-name slug of message: lower-case ASCII words joined by "_", at most 40 bytes. Latin
--- letters lose their accents ("Añadir código" -> "anadir_codigo"); other scripts are dropped.
---@param message string
---@return string
function M.slug(message)
  local ascii = message
  if utf8.len(message) then
    local letters = latin()
    local parts = {}
    for _, c in utf8.codes(message) do
      parts[#parts + 1] = c < 0x80 and string.char(c) or letters[c] or " "
    end
    ascii = table.concat(parts)
  end
  local s = ascii:lower():gsub("[^%w]+", "_"):gsub("^_+", ""):gsub("_+$", "")
  return (s:sub(1, 40):gsub("_+$", ""))
end

return M
