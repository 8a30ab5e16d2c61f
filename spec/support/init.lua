-- spec/support/init.lua: busted's --helper, loaded before every spec file. The suite needs the
-- sandbox PostgreSQL (tools/test starts it): without one it fails loudly instead of skipping.
for _, var in ipairs { "PGHOST", "PGPORT", "PGUSER", "TIDE_BIN" } do
  if not os.getenv(var) then
    error(var .. " is not set: run the suite through tools/test (it starts the sandbox PostgreSQL)", 0)
  end
end
