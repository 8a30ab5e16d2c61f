-- tide.log: every line tide prints about its progress goes to stderr through here, so stdout
-- carries only results (a table, or JSON with --json) and a pipeline can parse it.
local M = { level = 1 } -- 0 quiet (errors only), 1 normal, 2 verbose

local function emit(prefix, fmt, ...)
  local text = select("#", ...) > 0 and string.format(fmt, ...) or fmt
  io.stderr:write(prefix, text, "\n")
  io.stderr:flush()
end

function M.error(fmt, ...)
  emit("tide: ", fmt, ...)
end

function M.warn(fmt, ...)
  if M.level >= 1 then
    emit("tide: warning: ", fmt, ...)
  end
end

function M.info(fmt, ...)
  if M.level >= 1 then
    emit("tide: ", fmt, ...)
  end
end

function M.debug(fmt, ...)
  if M.level >= 2 then
    emit("tide: debug: ", fmt, ...)
  end
end

-- Control characters of a server's text, shown rather than sent to the terminal: a notice
-- could otherwise carry escape sequences (colours, a rewritten title, a cleared screen) into
-- an operator's terminal. C0 controls but tab, DEL, and C1 controls as UTF-8 (U+0080..U+009F).
local function visible(text)
  return (text:gsub("[\0-\8\11-\31\127]", function(c)
    return string.format("\\x%02x", c:byte())
  end):gsub("\194([\128-\159])", function(c)
    return string.format("\\u%04x", c:byte())
  end))
end
M.visible = visible

--- Server notices (RAISE NOTICE in a revision, "skipping" from IF EXISTS) arrive here.
function M.notice(text)
  for line in text:gmatch("[^\n]+") do
    M.info("server: %s", visible(line))
  end
end

return M
