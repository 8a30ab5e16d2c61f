-- spec/support/init.lua: busted's --helper, loaded before every spec file. The #db specs need the
-- sandbox PostgreSQL (tools/test starts it): without one they fail loudly instead of skipping.
-- `busted` alone (the default task in .busted) runs the pure specs only and passes "pure": it
-- says so first, so that nobody takes a pure run for the whole suite.
local pure = false
for _, a in ipairs(arg or {}) do
  pure = pure or a == "pure"
end
if pure then
  io.stderr:write("spec: pure specs only; the #db specs are left out (`busted --run=all` with the "
    .. "sandbox PostgreSQL, or `ctest --test-dir build`, runs them)\n")
  return
end
for _, var in ipairs { "PGHOST", "PGPORT", "PGUSER", "TIDE_BIN" } do
  if not os.getenv(var) then
    error(var .. " is not set: run the suite through tools/test (it starts the sandbox PostgreSQL)", 0)
  end
end
