-- tests/003_rls.lua: the README's row-level security table, checked by `tide test` on its
-- scratch database after 003 is applied and again after its downgrade and upgrade: each kind of
-- user sees and changes exactly what the table says, on every table, as the application role
-- (vars.app_role) with app.user_id set the way the application sets it; and the four
-- weaknesses 003 fixes stay fixed.
--
-- The scratch URL's role must own the tables (the migration role) or be a superuser, and be
-- able to SET ROLE to the application role (a superuser, or GRANT app TO migrator).
local sql = require "tide.sql"

local TABLES = { "accounts", "cards", "hardware", "proxmox_nodes", "users", "vms", "whitelist" }
local OWNED = { "accounts", "cards", "hardware", "proxmox_nodes", "vms" }
-- An UPDATE that changes nothing, with a column the application may update (whitelist: none).
local NO_CHANGE = { users = "email = email", accounts = "prime = prime", cards = "amount = amount",
  hardware = "name = name", proxmox_nodes = "name = name", vms = "name = name" }

local function as_user(db, user_id, fn)
  return db:as(db.vars.app_role, { ["app.user_id"] = user_id }, fn)
end

local function ids(list)
  local rows = {}
  for i, id in ipairs(list or {}) do
    rows[i] = { id = id }
  end
  return rows
end

-- One of everything a user owns, written through the policies as that user.
local function populate(db, user_id, name)
  return as_user(db, user_id, function()
    local function insert(statement, ...)
      return db:query(statement .. " RETURNING id", ...)[1].id
    end
    local owned = { users = { user_id }, whitelist = {} }
    owned.accounts = { insert("INSERT INTO accounts (owner_id, acc_username) VALUES ($1, $2)", user_id, name) }
    owned.hardware = { insert("INSERT INTO hardware (owner_id, account_id, type, name) VALUES ($1, $2, 'pc', 'rig')",
      user_id, owned.accounts[1]) }
    owned.proxmox_nodes = { insert("INSERT INTO proxmox_nodes (owner_id, name, host) VALUES ($1, 'pve', $2)",
      user_id, name .. ".example") }
    owned.vms = { insert("INSERT INTO vms (owner_id, proxmox_node_id, vmid, name) VALUES ($1, $2, 100, 'vm')",
      user_id, owned.proxmox_nodes[1]) }
    owned.cards = { insert("INSERT INTO cards (owner_id, account_id, code_hash, amount) VALUES ($1, $2, 'h', 5)",
      user_id, owned.accounts[1]) }
    return owned
  end)
end

local function setup(db)
  -- Users come from an operator: the first admin cannot be created through the policies. The
  -- table owner lifts FORCE for the inserts, inside this file's transaction, which is rolled back.
  db:exec("ALTER TABLE users NO FORCE ROW LEVEL SECURITY")
  local f = {}
  for _, name in ipairs { "root", "alice", "bob", "carol", "dave" } do
    f[name] = db:query("INSERT INTO users (username, email, password_hash, is_admin) "
      .. "VALUES ($1, $2, '$argon2id$stub', $3) RETURNING id", name, name .. "@example.com", name == "root")[1].id
  end
  db:exec("ALTER TABLE users FORCE ROW LEVEL SECURITY")
  f.alice_owns = populate(db, f.alice, "alice")
  f.bob_owns = populate(db, f.bob, "bob")
  -- alice and bob each let carol see their VM
  for _, owner in ipairs { "alice", "bob" } do
    local owned = f[owner .. "_owns"]
    owned.whitelist[1] = as_user(db, f[owner], function()
      return db:query("INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3) RETURNING id",
        owned.vms[1], f[owner], f.carol)[1].id
    end)
  end
  f.missing = f.dave + 1000 -- no such user
  return f
end

local function sees(db, user_id, expected)
  as_user(db, user_id, function()
    for _, name in ipairs(TABLES) do
      db:expect_rows(ids(expected[name]), "SELECT id FROM " .. sql.ident(name) .. " ORDER BY id")
    end
  end)
end

local checks = {}
local function check(name, fn)
  checks[#checks + 1] = { name, fn }
end

check("without app.user_id every table is empty and every write refused", function(db, f)
  db:as(db.vars.app_role, {}, function()
    for _, name in ipairs(TABLES) do
      db:expect_rows({}, "SELECT id FROM " .. sql.ident(name))
    end
    db:expect_error("42501", "INSERT INTO accounts (owner_id, acc_username) VALUES ($1, 'x')", f.alice)
    db:expect_count(0, "UPDATE accounts SET prime = true")
  end)
end)

check("each user sees exactly their own rows in every table", function(db, f)
  sees(db, f.alice, f.alice_owns)
  sees(db, f.bob, f.bob_owns)
end)

check("a whitelisted user sees the VM and the entry naming them, nothing else of its owner", function(db, f)
  sees(db, f.carol, {
    users = { f.carol },
    vms = { f.alice_owns.vms[1], f.bob_owns.vms[1] },
    whitelist = { f.alice_owns.whitelist[1], f.bob_owns.whitelist[1] },
  })
end)

check("a whitelisted user can neither change nor delete the VM", function(db, f)
  as_user(db, f.carol, function()
    db:expect_count(0, "UPDATE vms SET name = 'mine' WHERE id = $1", f.alice_owns.vms[1])
    db:expect_count(0, "DELETE FROM vms WHERE id = $1", f.alice_owns.vms[1])
  end)
end)

check("an admin sees every row of every table", function(db, f)
  local all = {}
  for _, name in ipairs(TABLES) do
    all[name] = {}
    for _, owner in ipairs { "alice_owns", "bob_owns" } do
      for _, id in ipairs(f[owner][name]) do
        table.insert(all[name], id)
      end
    end
    table.sort(all[name])
  end
  all.users = { f.root, f.alice, f.bob, f.carol, f.dave }
  sees(db, f.root, all)
end)

check("a user cannot write rows for another owner, nor move theirs to one", function(db, f)
  as_user(db, f.alice, function()
    for _, statement in ipairs {
      { "INSERT INTO accounts (owner_id, acc_username) VALUES ($1, 'x')", f.bob },
      { "INSERT INTO hardware (owner_id, type, name) VALUES ($1, 'x', 'x')", f.bob },
      { "INSERT INTO proxmox_nodes (owner_id, name, host) VALUES ($1, 'x', 'x')", f.bob },
      { "INSERT INTO vms (owner_id, proxmox_node_id, vmid, name) VALUES ($1, $2, 101, 'x')", f.bob,
        f.bob_owns.proxmox_nodes[1] },
      { "INSERT INTO cards (owner_id, code_hash, amount) VALUES ($1, 'x', 1)", f.bob },
      { "INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3)", f.bob_owns.vms[1], f.bob, f.dave },
      { "UPDATE accounts SET owner_id = $1", f.bob },
      { "UPDATE vms SET owner_id = $1", f.bob },
    } do
      db:expect_error("42501", table.unpack(statement))
    end
  end)
end)

check("rows point only at an account or node of their own owner", function(db, f)
  as_user(db, f.alice, function()
    db:expect_error("42501", "INSERT INTO hardware (owner_id, account_id, type, name) VALUES ($1, $2, 'x', 'x')",
      f.alice, f.bob_owns.accounts[1])
    db:expect_error("42501", "INSERT INTO cards (owner_id, account_id, code_hash, amount) VALUES ($1, $2, 'x', 1)",
      f.alice, f.bob_owns.accounts[1])
    db:expect_error("42501", "INSERT INTO vms (owner_id, proxmox_node_id, vmid, name) VALUES ($1, $2, 102, 'x')",
      f.alice, f.bob_owns.proxmox_nodes[1])
  end)
end)

check("a user changes and deletes nothing of another owner's rows", function(db, f)
  as_user(db, f.alice, function()
    for _, name in ipairs(TABLES) do
      local id = f.bob_owns[name][1]
      if NO_CHANGE[name] then
        db:expect_count(0, "UPDATE " .. sql.ident(name) .. " SET " .. NO_CHANGE[name] .. " WHERE id = $1", id)
      end
      db:expect_count(0, "DELETE FROM " .. sql.ident(name) .. " WHERE id = $1", id)
    end
  end)
  sees(db, f.bob, f.bob_owns)
end)

check("a user changes and deletes their own rows", function(db, f)
  as_user(db, f.alice, function()
    db:expect_count(1, "UPDATE users SET email = 'alice@example.org' WHERE id = $1", f.alice)
    for _, name in ipairs(OWNED) do
      db:expect_count(1, "UPDATE " .. sql.ident(name) .. " SET owner_id = owner_id WHERE id = $1",
        f.alice_owns[name][1])
    end
    db:expect_count(1, "DELETE FROM cards WHERE id = $1", f.alice_owns.cards[1])
  end)
end)

check("a user cannot make themselves admin; an admin can make one", function(db, f)
  as_user(db, f.alice, function()
    db:expect_error("42501", "UPDATE users SET is_admin = true WHERE id = $1", f.alice)
  end)
  as_user(db, f.root, function()
    db:expect_count(1, "UPDATE users SET is_admin = true WHERE id = $1", f.alice)
  end)
  as_user(db, f.alice, function()
    db:expect_rows({ { n = 5 } }, "SELECT count(*) AS n FROM users")
  end)
end)

check("1: the helper functions are the application role's only", function(db)
  for _, fn in ipairs { "app_current_user_id()", "app_lookup_is_admin()", "app_current_user_is_admin()",
    "app_whitelisted_vm_ids()" } do
    db:expect_rows({ { public = false, app = true } }, "SELECT has_function_privilege('public', $1, 'EXECUTE') "
      .. "AS public, has_function_privilege($2, $1, 'EXECUTE') AS app", fn, db.vars.app_role)
  end
end)

check("2: ids and created_at are the server's", function(db, f)
  as_user(db, f.alice, function()
    for _, name in ipairs(TABLES) do
      db:expect_error("42501", ("INSERT INTO %s (id) OVERRIDING SYSTEM VALUE VALUES (%d)")
        :format(sql.ident(name), f.missing))
      db:expect_error("42501", "SELECT nextval(pg_get_serial_sequence($1, 'id'))", name)
    end
    db:expect_error("42501", "INSERT INTO accounts (owner_id, acc_username, created_at) VALUES ($1, 'x', now())",
      f.alice)
    db:expect_error("42501", "UPDATE accounts SET created_at = now() WHERE id = $1", f.alice_owns.accounts[1])
    db:expect_error("42501", "UPDATE accounts SET id = DEFAULT WHERE id = $1", f.alice_owns.accounts[1])
  end)
end)

check("3: only an admin creates users, whatever app.user_id names", function(db, f)
  -- the id the sequence hands out next: a session naming it needs no explicit id
  local sequence = db:one("SELECT pg_get_serial_sequence('users', 'id') AS s").s
  local ghost = db:one("SELECT last_value + 1 AS id FROM " .. sequence).id
  for _, user in ipairs { ghost, f.missing, f.alice } do
    as_user(db, user, function()
      db:expect_error("42501", "INSERT INTO users (username, email, password_hash) VALUES ('eve', 'e@x.y', 'h')")
    end)
  end
  as_user(db, f.root, function()
    db:expect_count(1, "INSERT INTO users (username, email, password_hash) VALUES ('eve', 'e@x.y', 'h')")
  end)
end)

check("4: another user's whitelist answers with a refusal, never a constraint", function(db, f)
  as_user(db, f.dave, function()
    local vm = f.bob_owns.vms[1]
    -- carol is on bob's VM's whitelist; alice is not: the same refusal for both
    for _, user in ipairs { f.carol, f.alice } do
      db:expect_error("42501", "INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3)", vm, f.dave, user)
      db:expect_error("42501", "INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3) "
        .. "ON CONFLICT DO NOTHING", vm, f.dave, user)
      db:expect_error("42501", "INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3)", vm, f.bob, user)
    end
    db:expect_error("42501", "INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3)", f.missing,
      f.dave, f.carol)
  end)
  -- carol, whitelisted on bob's VM, sees it but cannot add to its whitelist
  as_user(db, f.carol, function()
    db:expect_error("42501", "INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3)",
      f.bob_owns.vms[1], f.carol, f.alice)
    db:expect_error("42501", "INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3)",
      f.bob_owns.vms[1], f.bob, f.alice)
  end)
end)

check("5: an owner whitelists any user; a grantee can leave, not edit", function(db, f)
  local entry = as_user(db, f.alice, function()
    return db:query("INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3) RETURNING id",
      f.alice_owns.vms[1], f.alice, f.dave)[1].id
  end)
  as_user(db, f.dave, function()
    db:expect_rows({ { id = f.alice_owns.vms[1] } }, "SELECT id FROM vms")
    db:expect_error("42501", "UPDATE whitelist SET user_id = $1 WHERE id = $2", f.carol, entry)
    db:expect_count(1, "DELETE FROM whitelist WHERE id = $1", entry)
    db:expect_rows({}, "SELECT id FROM vms")
  end)
  -- an admin may whitelist on anyone's VM
  as_user(db, f.root, function()
    db:expect_count(1, "INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3)",
      f.bob_owns.vms[1], f.bob, f.dave)
  end)
end)

check("the application role has no other way around the policies", function(db, f)
  as_user(db, f.alice, function()
    for _, statement in ipairs {
      "TRUNCATE accounts",
      "ALTER TABLE accounts DISABLE ROW LEVEL SECURITY",
      "CREATE TABLE mine (id int)",
      "CREATE POLICY mine ON accounts USING (true)",
    } do
      db:expect_error("42501", statement)
    end
  end)
end)

return {
  revision = "003",
  setup = setup,
  checks = checks,
}
