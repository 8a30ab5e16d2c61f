-- tide.log: every line tide prints about its progress goes to stderr through here, so stdout
-- carries only results (a table, or JSON with --json) and a pipeline can parse it.
--
-- On a terminal, log.live(text) shows a line that rewrites itself in place (the elapsed time of
-- a long statement); the next ordinary line replaces it. Off a terminal live lines are not
-- printed at all: logs and pipes get plain lines, no escape codes.
local M = { level = 1 } -- 0 quiet (errors only), 1 normal, 2 verbose

local live_shown = false
local stderr_is_tty

local function clear_live()
  if live_shown then
    io.stderr:write("\r\027[K")
    live_shown = false
  end
end

local function emit(prefix, fmt, ...)
  local text = select("#", ...) > 0 and string.format(fmt, ...) or fmt
  clear_live()
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

--- Are live lines shown (stderr is a terminal and the level is not quiet)?
function M.live_enabled()
  if stderr_is_tty == nil then
    stderr_is_tty = require("tide.core").isatty(2)
  end
  return M.level >= 1 and stderr_is_tty
end

--- On a terminal: shows text as the live line, replacing the previous one. Elsewhere: nothing.
function M.live(fmt, ...)
  if not M.live_enabled() then
    return
  end
  local text = "tide: " .. (select("#", ...) > 0 and string.format(fmt, ...) or fmt)
  -- A line wider than the terminal would wrap, and "\r" would rewrite only its last row.
  local width = math.max(20, (tonumber(os.getenv("COLUMNS") or "") or 80) - 1)
  if #text > width then
    text = text:sub(1, width - 3)
    for _ = 1, 3 do -- no half UTF-8 sequence at the cut
      if utf8.len(text) then
        break
      end
      text = text:sub(1, -2)
    end
    text = text .. "..."
  end
  io.stderr:write("\r", text, "\027[K")
  io.stderr:flush()
  live_shown = true
end

--- Removes the live line, if one is shown (at the end of what it was about).
M.clear_live = clear_live

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
