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

--- Server notices (RAISE NOTICE in a revision, "skipping" from IF EXISTS) arrive here.
function M.notice(text)
  for line in text:gmatch("[^\n]+") do
    M.info("server: %s", line)
  end
end

return M
