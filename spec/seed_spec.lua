-- spec/seed_spec.lua: versions/001, 002 and 003 (the seed's schema) against the real server, run
-- by the real tide binary as a non-superuser migration role that owns the database, the way a
-- production deployment runs it. Then the row-level security rules are exercised through a
-- separate non-superuser, non-owner LOGIN role, the way the application connects: at head, and
-- at 002 with the grants 002's README told deployments to make, where the four weaknesses 003
-- fixes are reproduced one by one and then shown gone after `tide upgrade` to 003.
local H = require "spec.support.helpers"
local core = require "tide.core"
local sql = require "tide.sql"

local TABLES = { "accounts", "cards", "hardware", "proxmox_nodes", "users", "vms", "whitelist" }

-- The seed's index list, written out here rather than read from 002: {index, table, column, unique}.
local SEED_INDEXES = {
  { "ix_accounts_acc_email_address", "accounts", "acc_email_address", false },
  { "ix_accounts_acc_username", "accounts", "acc_username", false },
  { "ix_accounts_lock", "accounts", "lock", false },
  { "ix_accounts_owner_id", "accounts", "owner_id", false },
  { "ix_accounts_perm_lock", "accounts", "perm_lock", false },
  { "ix_accounts_prime", "accounts", "prime", false },
  { "ix_cards_account_id", "cards", "account_id", false },
  { "ix_cards_owner_id", "cards", "owner_id", false },
  { "ix_hardware_account_id", "hardware", "account_id", false },
  { "ix_hardware_owner_id", "hardware", "owner_id", false },
  { "ix_hardware_type", "hardware", "type", false },
  { "ix_proxmox_nodes_owner_id", "proxmox_nodes", "owner_id", false },
  { "ix_proxmox_nodes_status", "proxmox_nodes", "status", false },
  { "ix_users_email", "users", "email", true },
  { "ix_users_is_admin", "users", "is_admin", false },
  { "ix_users_username", "users", "username", true },
  { "ix_vms_owner_id", "vms", "owner_id", false },
  { "ix_vms_proxmox_node_id", "vms", "proxmox_node_id", false },
  { "ix_vms_status", "vms", "status", false },
  { "ix_vms_vmid", "vms", "vmid", false },
  { "ix_whitelist_user_id", "whitelist", "user_id", false },
  { "ix_whitelist_vm_id", "whitelist", "vm_id", false },
}

local function random_password()
  return (core.random_bytes(12):gsub(".", function(c)
    return ("%02x"):format(c:byte())
  end))
end

-- pg_dump --schema-only of db without tide's own bookkeeping schema.
local function schema_dump(db)
  local bindir = os.getenv("PG_BINDIR") or "/usr/lib/postgresql/15/bin"
  local pipe = assert(io.popen(("%s/pg_dump --schema-only --exclude-schema=tide --dbname=%s 2>&1")
    :format(H.shell_quote(bindir), H.shell_quote(db.url))))
  local text = pipe:read("a")
  assert(pipe:close(), "pg_dump failed: " .. text)
  -- pg_dump 15.14 and later fence the script with \restrict KEY / \unrestrict KEY, a random
  -- key per run: not part of the schema.
  return (text:gsub("\n\\restrict %S+\n", "\n"):gsub("\n\\unrestrict %S+\n", "\n"))
end

-- Every privilege on the application's objects, effective (a NULL ACL read as its default),
-- as sorted lines "kind object grantee privilege": tables, sequences, columns, functions, schema.
local PRIVILEGES = [[
WITH objects AS (
  SELECT 'relation ' || c.relname AS object, a.grantee, a.privilege_type
  FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
  WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'S', 'v')
  UNION ALL
  SELECT 'column ' || c.relname || '.' || t.attname, a.grantee, a.privilege_type
  FROM pg_class c JOIN pg_attribute t ON t.attrelid = c.oid, aclexplode(t.attacl) a
  WHERE c.relnamespace = 'public'::regnamespace AND t.attnum > 0
  UNION ALL
  SELECT 'function ' || p.oid::regprocedure::text, a.grantee, a.privilege_type
  FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
  WHERE p.pronamespace = 'public'::regnamespace
  UNION ALL
  SELECT 'schema public', a.grantee, a.privilege_type
  FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
  WHERE n.nspname = 'public'
)
SELECT object || ' ' || CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(grantee) END || ' '
  || privilege_type AS line
FROM objects ORDER BY 1]]

describe("the seed schema (versions 001, 002 and 003) #db", function()
  local db, migrator, app, migrator_url, app_url, migrator_password, app_password

  -- A new empty database owned by the migration role, and tide's URL for it.
  local function database_for_migrator()
    local fresh = H.fresh_db()
    H.sql(nil, ("ALTER DATABASE %s OWNER TO %s"):format(sql.ident(fresh.name), sql.ident(migrator)))
    return fresh, H.url(fresh.name, migrator, migrator_password)
  end

  -- The shipped project (its tide.lua reads the application role from APP_DB_ROLE).
  local function run(url, ...)
    local args = { ... }
    local role = app
    if type(args[#args]) == "table" then -- {role = ...}: another application role
      role = table.remove(args).role
    end
    args[#args + 1] = "--url"
    args[#args + 1] = url
    return H.tide(args, { dir = H.source_dir, env = { APP_DB_ROLE = role } })
  end

  local function tide(url, ...)
    local r = run(url, ...)
    assert.equal(0, r.code, r.output)
    return r
  end

  setup(function()
    local suffix = random_password():sub(1, 8)
    migrator, app = "tide_spec_migrator_" .. suffix, "tide_spec_app_" .. suffix
    migrator_password, app_password = random_password(), random_password()
    -- Neither role is a superuser or may bypass RLS; the migration role owns the database (so
    -- it may create schemas, and public is its own), the application role owns nothing.
    H.sql(nil, ("CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD %s")
      :format(sql.ident(migrator), sql.literal(migrator_password)))
    H.sql(nil, ("CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD %s")
      :format(sql.ident(app), sql.literal(app_password)))
    db, migrator_url = database_for_migrator()
    app_url = H.url(db.name, app, app_password)
  end)

  teardown(function()
    H.cleanup()
    for _, role in ipairs { app, migrator } do
      if role then
        pcall(H.sql, nil, "DROP ROLE IF EXISTS " .. sql.ident(role))
      end
    end
  end)

  describe("after upgrade head", function()
    setup(function()
      tide(migrator_url, "upgrade", "head")
    end)

    it("has the seven tables, all owned by the migration role", function()
      assert.same(TABLES, H.tables(db))
      local rows = H.sql(db, "SELECT c.relname, pg_get_userbyid(c.relowner) AS owner FROM pg_class c "
        .. "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' ORDER BY 1")
      for _, row in ipairs(rows) do
        assert.equal(migrator, row.owner)
      end
    end)

    it("has row-level security enabled and forced on every table", function()
      local rows = H.sql(db, "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
        .. "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1")
      assert.equal(#TABLES, #rows)
      for i, row in ipairs(rows) do
        assert.equal(TABLES[i], row.relname)
        assert.is_true(row.relrowsecurity, row.relname)
        assert.is_true(row.relforcerowsecurity, row.relname)
      end
    end)

    it("has the policies", function()
      local got = {}
      for _, row in ipairs(H.sql(db, "SELECT tablename, policyname, cmd, permissive FROM pg_policies "
        .. "WHERE schemaname = 'public' ORDER BY 1, 2")) do
        got[#got + 1] = table.concat({ row.tablename, row.policyname, row.cmd, row.permissive }, " ")
      end
      assert.same({
        "accounts accounts_owner_or_admin ALL PERMISSIVE",
        "cards cards_owner_or_admin ALL PERMISSIVE",
        "hardware hardware_owner_or_admin ALL PERMISSIVE",
        "proxmox_nodes proxmox_nodes_owner_or_admin ALL PERMISSIVE",
        "users users_insert_admin INSERT RESTRICTIVE",
        "users users_self_or_admin ALL PERMISSIVE",
        "vms vms_owner_or_admin ALL PERMISSIVE",
        "vms vms_whitelisted SELECT PERMISSIVE",
        "whitelist whitelist_grantee SELECT PERMISSIVE",
        "whitelist whitelist_grantee_leave DELETE PERMISSIVE",
        "whitelist whitelist_owner_or_admin ALL PERMISSIVE",
      }, got)
    end)

    it("has each index of 002 on its one column", function()
      local rows = H.sql(db, [[
SELECT i.relname AS index, t.relname AS table, a.attname AS column, x.indisunique AS is_unique,
       x.indnatts AS columns, x.indpred IS NULL AS total
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
WHERE i.relname LIKE 'ix\_%' AND t.relnamespace = 'public'::regnamespace
ORDER BY 1]])
      assert.equal(#SEED_INDEXES, #rows)
      for i, expected in ipairs(SEED_INDEXES) do
        local row = rows[i]
        assert.same(expected, { row.index, row.table, row.column, row.is_unique })
        assert.equal(1, row.columns)
        assert.is_true(row.total)
      end
    end)

    it("creates no two indexes with the same definition", function()
      local rows = H.sql(db, [[
SELECT x.indrelid::regclass::text AS t, x.indkey::text AS k, count(*) AS n
FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid
WHERE t.relnamespace = 'public'::regnamespace
GROUP BY 1, 2 HAVING count(*) > 1]])
      assert.same({}, rows)
    end)

    describe("row-level security for the application role", function()
      local conn
      local ids = {}

      -- Runs fn(conn) in one transaction as application user `user_id`, the way the
      -- application does: set_config(..., true) is local to the transaction.
      local function as_user(user_id, fn)
        conn:exec("BEGIN")
        conn:query("SELECT set_config('app.user_id', $1, true)", tostring(user_id))
        local ok, result = pcall(fn, conn)
        conn:exec(ok and "COMMIT" or "ROLLBACK")
        if not ok then
          error(result, 0)
        end
        return result
      end

      -- The error a statement raises as user_id (the transaction is rolled back).
      local function refused(user_id, statement, ...)
        local params = table.pack(...)
        local ok, err = pcall(as_user, user_id, function(c)
          return c:query(statement, table.unpack(params, 1, params.n))
        end)
        assert.is_false(ok, "expected RLS to refuse: " .. statement)
        return err
      end

      -- {table -> sorted ids} of every table as user_id sees it.
      local function visible(user_id)
        return as_user(user_id, function(c)
          local seen = {}
          for _, name in ipairs(TABLES) do
            seen[name] = {}
            for _, row in ipairs(c:query("SELECT id FROM " .. sql.ident(name) .. " ORDER BY id")) do
              seen[name][#seen[name] + 1] = row.id
            end
          end
          return seen
        end)
      end

      -- One of everything owned by user_id, inserted through RLS as that user.
      local function populate(user_id, prefix)
        return as_user(user_id, function(c)
          local function insert(statement, ...)
            return c:query(statement .. " RETURNING id", ...)[1].id
          end
          local owned = { users = { user_id } }
          owned.accounts = { insert("INSERT INTO accounts (owner_id, acc_username, acc_email_address, prime) "
            .. "VALUES ($1, $2, $3, true)", user_id, prefix .. "_steam", prefix .. "@steam.example") }
          owned.hardware = { insert("INSERT INTO hardware (owner_id, account_id, type, name) "
            .. "VALUES ($1, $2, 'desktop', 'rig')", user_id, owned.accounts[1]) }
          owned.proxmox_nodes = { insert("INSERT INTO proxmox_nodes (owner_id, name, host, status) "
            .. "VALUES ($1, 'pve1', $2, 'online')", user_id, prefix .. ".pve.example") }
          owned.vms = { insert("INSERT INTO vms (owner_id, proxmox_node_id, vmid, name, status) "
            .. "VALUES ($1, $2, 100, 'vm', 'running')", user_id, owned.proxmox_nodes[1]) }
          owned.cards = { insert("INSERT INTO cards (owner_id, account_id, code_hash, amount) "
            .. "VALUES ($1, $2, 'sha256:ab', 20)", user_id, owned.accounts[1]) }
          owned.whitelist = {}
          return owned
        end)
      end

      setup(function()
        -- Application users are created by an operator (a superuser or BYPASSRLS role): with
        -- RLS forced, only an admin may insert users, and the first admin needs someone.
        for _, name in ipairs { "alice", "bob", "carol", "root" } do
          ids[name] = H.sql(db, "INSERT INTO users (username, email, password_hash, is_admin) "
            .. "VALUES ($1, $2, '$argon2id$v=19$stub', $3) RETURNING id", name, name .. "@example.com",
            name == "root")[1].id
        end
        -- The application role's privileges are 003's: nothing is granted by hand.
        conn = core.connect(app_url)
        ids.alice_owns = populate(ids.alice, "alice")
        ids.bob_owns = populate(ids.bob, "bob")
        -- alice and bob each let carol see their VM
        for _, owner in ipairs { "alice", "bob" } do
          local owned = ids[owner .. "_owns"]
          owned.whitelist = { as_user(ids[owner], function(c)
            return c:query("INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3) RETURNING id",
              owned.vms[1], ids[owner], ids.carol)[1].id
          end) }
        end
      end)

      teardown(function()
        if conn then
          conn:close()
        end
      end)

      it("connects as a role that is no superuser, cannot bypass RLS and owns nothing", function()
        local row = conn:query("SELECT rolsuper, rolbypassrls, (SELECT count(*) FROM pg_class "
          .. "WHERE relowner = r.oid) AS owned FROM pg_roles r WHERE rolname = current_user")[1]
        assert.is_false(row.rolsuper)
        assert.is_false(row.rolbypassrls)
        assert.equal(0, row.owned)
      end)

      it("shows nothing when no application user is set", function()
        for _, name in ipairs(TABLES) do
          assert.same({}, conn:query("SELECT id FROM " .. sql.ident(name)), name)
        end
      end)

      it("shows each user exactly their own rows in every table", function()
        assert.same(ids.alice_owns, visible(ids.alice))
        assert.same(ids.bob_owns, visible(ids.bob))
      end)

      it("shows a whitelisted user the VM and nothing else of its owner", function()
        local seen = visible(ids.carol)
        assert.same({ ids.carol }, seen.users)
        assert.same({ ids.alice_owns.vms[1], ids.bob_owns.vms[1] }, seen.vms)
        assert.same({ ids.alice_owns.whitelist[1], ids.bob_owns.whitelist[1] }, seen.whitelist)
        for _, name in ipairs { "accounts", "hardware", "proxmox_nodes", "cards" } do
          assert.same({}, seen[name], name)
        end
      end)

      it("lets a whitelisted user read the VM but not change it", function()
        local updated = as_user(ids.carol, function(c)
          return select(2, c:query("UPDATE vms SET name = 'mine' WHERE id = $1", ids.alice_owns.vms[1]))
        end)
        assert.equal(0, updated)
      end)

      it("shows an admin every row of every table", function()
        local everything = {}
        for _, name in ipairs(TABLES) do
          everything[name] = {}
          for _, row in ipairs(H.sql(db, "SELECT id FROM " .. sql.ident(name) .. " ORDER BY id")) do
            everything[name][#everything[name] + 1] = row.id
          end
        end
        assert.equal(4, #everything.users)
        assert.same(everything, visible(ids.root))
      end)

      it("refuses rows for another owner in every owned table", function()
        local statements = {
          { "INSERT INTO accounts (owner_id, acc_username) VALUES ($1, 'x')", ids.bob },
          { "INSERT INTO hardware (owner_id, type, name) VALUES ($1, 'x', 'x')", ids.bob },
          { "INSERT INTO proxmox_nodes (owner_id, name, host) VALUES ($1, 'x', 'x')", ids.bob },
          { "INSERT INTO vms (owner_id, proxmox_node_id, vmid, name) VALUES ($1, $2, 101, 'x')", ids.bob,
            ids.bob_owns.proxmox_nodes[1] },
          { "INSERT INTO cards (owner_id, code_hash, amount) VALUES ($1, 'x', 1)", ids.bob },
          { "INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3)", ids.bob_owns.vms[1], ids.bob,
            ids.alice },
          { "INSERT INTO users (username, email, password_hash) VALUES ('mallory', 'm@example.com', 'x')" },
          -- moving one's own row to another owner
          { "UPDATE accounts SET owner_id = $1", ids.bob },
          { "UPDATE vms SET owner_id = $1", ids.bob },
        }
        for _, statement in ipairs(statements) do
          local err = refused(ids.alice, table.unpack(statement))
          assert.equal("42501", err.sqlstate, statement[1] .. ": " .. tostring(err))
        end
      end)

      it("refuses attaching one's rows to another owner's account or node", function()
        for _, statement in ipairs {
          { "INSERT INTO hardware (owner_id, account_id, type, name) VALUES ($1, $2, 'x', 'x')" },
          { "INSERT INTO cards (owner_id, account_id, code_hash, amount) VALUES ($1, $2, 'x', 1)" },
        } do
          local err = refused(ids.alice, statement[1], ids.alice, ids.bob_owns.accounts[1])
          assert.equal("42501", err.sqlstate, tostring(err))
        end
        local err = refused(ids.alice, "INSERT INTO vms (owner_id, proxmox_node_id, vmid, name) "
          .. "VALUES ($1, $2, 102, 'x')", ids.alice, ids.bob_owns.proxmox_nodes[1])
        assert.equal("42501", err.sqlstate, tostring(err))
      end)

      it("changes nothing of another owner's rows", function()
        for _, name in ipairs(TABLES) do
          local changed = as_user(ids.alice, function(c)
            local updated = 0
            if name ~= "whitelist" then -- the application has no UPDATE on whitelist
              local column = sql.ident(name == "users" and "email" or "owner_id")
              updated = select(2, c:query(("UPDATE %s SET %s = %s WHERE id = $1"):format(sql.ident(name), column,
                column), ids.bob_owns[name][1]))
            end
            local _, deleted = c:query("DELETE FROM " .. sql.ident(name) .. " WHERE id = $1",
              ids.bob_owns[name][1])
            return updated + deleted
          end)
          assert.equal(0, changed, name)
        end
        assert.same(ids.bob_owns, visible(ids.bob))
      end)

      it("answers the admin check for the application role, and never for the lookup's owner", function()
        assert.is_true(as_user(ids.root, function(c)
          return c:query("SELECT app_current_user_is_admin() AS admin")[1].admin
        end))
        assert.is_false(as_user(ids.alice, function(c)
          return c:query("SELECT app_current_user_is_admin() AS admin")[1].admin
        end))
        -- Running as the owner of app_lookup_is_admin is what the recursion guard detects.
        local owner <close> = core.connect(migrator_url)
        owner:query("SELECT set_config('app.user_id', $1, false)", tostring(ids.root))
        assert.is_false(owner:query("SELECT app_current_user_is_admin() AS admin")[1].admin)
      end)

      it("does not let a user make themselves admin, but lets an admin", function()
        local err = refused(ids.alice, "UPDATE users SET is_admin = true WHERE id = $1", ids.alice)
        assert.equal("42501", err.sqlstate, tostring(err))
        as_user(ids.root, function(c)
          c:query("UPDATE users SET is_admin = true WHERE id = $1", ids.alice)
        end)
        assert.same(visible(ids.root), visible(ids.alice))
        as_user(ids.root, function(c)
          c:query("UPDATE users SET is_admin = false WHERE id = $1", ids.alice)
        end)
        assert.same(ids.alice_owns, visible(ids.alice))
      end)
    end)
  end)

  describe("the application role (003)", function()
    -- What 003 grants, written out here rather than read from 003: the columns the application
    -- may write; SELECT and DELETE on the whole table.
    local WRITABLE = {
      accounts = "acc_email_address,acc_username,lock,owner_id,perm_lock,prime,steam_id",
      cards = "account_id,amount,code_hash,currency,owner_id,redeemed_at",
      hardware = "account_id,name,owner_id,profile,type",
      proxmox_nodes = "host,name,owner_id,port,status",
      users = "email,is_admin,password_hash,username",
      vms = "name,owner_id,proxmox_node_id,status,vmid",
      whitelist = "owner_id,user_id,vm_id",
    }

    it("has SELECT and DELETE on each table, INSERT and UPDATE only on the columns it writes", function()
      local fresh, url = database_for_migrator()
      tide(url, "upgrade", "head")
      local tables = {}
      for _, row in ipairs(H.sql(fresh, "SELECT table_name AS t, string_agg(privilege_type, ',' ORDER BY "
        .. "privilege_type) AS p FROM information_schema.table_privileges WHERE grantee = $1 GROUP BY 1", app)) do
        tables[row.t] = row.p
      end
      local columns = {}
      for _, row in ipairs(H.sql(fresh, "SELECT table_name || ' ' || privilege_type AS k, string_agg(column_name, "
        .. "',' ORDER BY column_name) AS c FROM information_schema.column_privileges WHERE grantee = $1 "
        .. "AND privilege_type IN ('INSERT', 'UPDATE') GROUP BY 1", app)) do
        columns[row.k] = row.c
      end
      for _, name in ipairs(TABLES) do
        assert.equal("DELETE,SELECT", tables[name], name)
        assert.equal(WRITABLE[name], columns[name .. " INSERT"], name)
        assert.equal(name ~= "whitelist" and WRITABLE[name] or nil, columns[name .. " UPDATE"], name)
      end
      assert.same({}, H.sql(fresh, "SELECT relname FROM pg_class WHERE relkind = 'S' AND "
        .. "has_any_column_privilege($1, oid, 'SELECT')", app))
      -- nothing of tide's tracking schema, no other role's rights
      assert.is_false(H.sql(fresh, "SELECT has_schema_privilege($1, 'tide', 'USAGE') AS u", app)[1].u)
      assert.same({}, H.sql(fresh, "SELECT roleid FROM pg_auth_members WHERE member = to_regrole($1)", app))
      for _, fn in ipairs { "app_current_user_id()", "app_lookup_is_admin()", "app_current_user_is_admin()",
        "app_whitelisted_vm_ids()" } do
        local row = H.sql(fresh, "SELECT has_function_privilege('public', $1, 'EXECUTE') AS public, "
          .. "has_function_privilege($2, $1, 'EXECUTE') AS app", fn, app)[1]
        assert.same({ public = false, app = true }, row, fn)
      end
    end)

    it("must exist, and must neither bypass row-level security nor own the tables (exit 6, nothing applied)", function()
      local bypass = app .. "_bypass"
      H.sql(nil, "CREATE ROLE " .. sql.ident(bypass) .. " NOLOGIN BYPASSRLS")
      local ok, err = pcall(function()
        local fresh, url = database_for_migrator()
        tide(url, "upgrade", "002")
        for _, case in ipairs {
          { app .. "_missing", 'the application role ' .. app .. '_missing does not exist',
            "name the role the application connects as in vars.app_role in tide.lua" },
          { bypass, "the application role " .. bypass .. " bypasses row-level security (SUPERUSER or BYPASSRLS)" },
          { migrator, "the application role " .. migrator .. " owns the tables or has their owner's rights" },
        } do
          local r = run(url, "upgrade", "head", { role = case[1] })
          assert.equal(6, r.code, r.output)
          assert.matches("revision 003 (versions/003_harden_rls.lua:", r.stderr, 1, true)
          assert.matches(case[2], r.stderr, 1, true)
          if case[3] then
            assert.matches(case[3], r.stderr, 1, true)
          end
          assert.same({ "001", "002" }, H.applied(fresh))
        end
      end)
      H.sql(nil, "DROP ROLE " .. sql.ident(bypass))
      assert(ok, err)
    end)
  end)

  describe("the weaknesses of 002, gone at 003", function()
    -- Two databases with the same users and rows: one at 002 with the grants 002's README told
    -- deployments to make by hand, one upgraded from there to 003. Every attack runs through
    -- real LOGIN connections of the application role (and of a role with no privileges).
    local at, other, other_password = {}, nil, random_password()

    local function build(head)
      local fresh, url = database_for_migrator()
      tide(url, "upgrade", "002")
      H.sql(fresh, ("SET ROLE %s; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %s;")
        :format(sql.ident(migrator), sql.ident(app)))
      if head then
        tide(url, "upgrade", "head")
      end
      local f = { db = fresh }
      for _, name in ipairs { "root", "alice", "bob", "carol", "dave" } do
        f[name] = H.sql(fresh, "INSERT INTO users (username, email, password_hash, is_admin) "
          .. "VALUES ($1, $2, 'h', $3) RETURNING id", name, name .. "@example.com", name == "root")[1].id
      end
      f.node = H.sql(fresh, "INSERT INTO proxmox_nodes (owner_id, name, host) VALUES ($1, 'pve', 'h') RETURNING id",
        f.alice)[1].id
      f.vm = H.sql(fresh, "INSERT INTO vms (owner_id, proxmox_node_id, vmid, name) VALUES ($1, $2, 100, 'vm') "
        .. "RETURNING id", f.alice, f.node)[1].id
      H.sql(fresh, "INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3)", f.vm, f.alice, f.dave)
      f.account = H.sql(fresh, "INSERT INTO accounts (owner_id, acc_username) VALUES ($1, 'bob') RETURNING id",
        f.bob)[1].id
      f.app = core.connect(H.url(fresh.name, app, app_password))
      f.other = core.connect(H.url(fresh.name, other, other_password))
      return f
    end

    -- What statement answers as the application role in a transaction naming user_id: the
    -- result's first row (or true), or the error. Committed when it succeeds.
    local function as_app(f, user_id, statement, ...)
      f.app:exec("BEGIN")
      f.app:query("SELECT set_config('app.user_id', $1, true)", tostring(user_id))
      local ok, result = pcall(f.app.query, f.app, statement, ...)
      f.app:exec(ok and "COMMIT" or "ROLLBACK")
      if ok then
        return { ok = true, row = result[1] }
      end
      return { sqlstate = result.sqlstate, message = result.message }
    end

    setup(function()
      other = app .. "_other"
      H.sql(nil, ("CREATE ROLE %s LOGIN PASSWORD %s"):format(sql.ident(other), sql.literal(other_password)))
      at["002"], at["003"] = build(false), build(true)
    end)

    teardown(function()
      for _, f in pairs(at) do
        f.app:close()
        f.other:close()
      end
      H.cleanup()
      pcall(H.sql, nil, "DROP ROLE IF EXISTS " .. sql.ident(other))
    end)

    it("1: a role with no privileges asked whether a user is an admin; at 003 it may not call the helpers", function()
      for _, version in ipairs { "002", "003" } do
        local f = at[version]
        f.other:query("SELECT set_config('app.user_id', $1, false)", tostring(f.root))
        local ok, result = pcall(f.other.query, f.other, "SELECT app_lookup_is_admin() AS admin")
        if version == "002" then
          assert.is_true(ok, tostring(result))
          assert.is_true(result[1].admin)
        else
          assert.is_false(ok)
          assert.equal("42501", result.sqlstate)
          assert.matches("permission denied for function app_lookup_is_admin", result.message)
          assert.is_false(pcall(f.other.query, f.other, "SELECT app_current_user_is_admin()"))
        end
        assert.same({}, f.other:query("SELECT 1 FROM information_schema.table_privileges WHERE grantee = "
          .. "current_user"))
      end
    end)

    it("2: explicit ids probed which ids exist and took another user's next id; at 003 id is not writable", function()
      local probe = "INSERT INTO accounts (id, owner_id, acc_username) OVERRIDING SYSTEM VALUE VALUES ($1, $2, 'x')"
      local f = at["002"]
      -- bob's account id exists: the duplicate key says so
      assert.equal("23505", as_app(f, f.alice, probe, f.account, f.alice).sqlstate)
      -- alice sees her next id, takes the one after it, and bob's ordinary insert fails
      local mine = as_app(f, f.alice, "INSERT INTO accounts (owner_id, acc_username) VALUES ($1, 'a') RETURNING id",
        f.alice).row.id
      assert.is_true(as_app(f, f.alice, probe, mine + 1, f.alice).ok)
      local denied = as_app(f, f.bob, "INSERT INTO accounts (owner_id, acc_username) VALUES ($1, 'b')", f.bob)
      assert.equal("23505", denied.sqlstate)
      f = at["003"]
      for _, id in ipairs { f.account, f.account + 1 } do
        local r = as_app(f, f.alice, probe, id, f.alice)
        assert.equal("42501", r.sqlstate)
        assert.equal("permission denied for table accounts", r.message)
      end
      assert.is_true(as_app(f, f.bob, "INSERT INTO accounts (owner_id, acc_username) VALUES ($1, 'b')", f.bob).ok)
    end)

    it("3: a session naming a user that does not exist created it; at 003 only an admin creates users", function()
      local insert = "INSERT INTO users (username, email, password_hash) VALUES ('ghost', 'g@example.com', 'h') "
        .. "RETURNING id"
      for _, version in ipairs { "002", "003" } do
        local f = at[version]
        -- the id the sequence hands out next: no explicit id needed
        local ghost = H.sql(f.db, "SELECT last_value + 1 AS id FROM users_id_seq")[1].id
        local r = as_app(f, ghost, insert)
        if version == "002" then
          assert.is_true(r.ok, r.message)
          assert.equal(ghost, r.row.id)
        else
          assert.equal("42501", r.sqlstate)
          assert.equal('new row violates row-level security policy "users_insert_admin" for table "users"', r.message)
        end
      end
    end)

    it("4: who is on another user's whitelist answered through the unique index; at 003 a refusal first", function()
      local insert = "INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3)"
      local f = at["002"]
      -- carol names alice's VM: dave (on its whitelist) and bob (not) get different answers
      assert.equal("23505", as_app(f, f.carol, insert, f.vm, f.carol, f.dave).sqlstate)
      assert.equal("23503", as_app(f, f.carol, insert, f.vm, f.carol, f.bob).sqlstate)
      f = at["003"]
      for _, user in ipairs { f.dave, f.bob } do
        for _, statement in ipairs { insert, insert .. " ON CONFLICT DO NOTHING" } do
          local r = as_app(f, f.carol, statement, f.vm, f.carol, user)
          assert.equal("42501", r.sqlstate)
          assert.equal('new row violates row-level security policy for table "whitelist"', r.message)
        end
      end
    end)

    it("4: whether a user id exists still answers on one's own VM (a documented oracle of item 5)", function()
      local insert = "INSERT INTO whitelist (vm_id, owner_id, user_id) VALUES ($1, $2, $3)"
      for _, version in ipairs { "002", "003" } do
        local f = at[version]
        assert.is_true(as_app(f, f.alice, insert, f.vm, f.alice, f.carol).ok)
        assert.equal("23503", as_app(f, f.alice, insert, f.vm, f.alice, f.root + 100000).sqlstate)
      end
    end)
  end)

  describe("003's downgrade", function()
    it("restores 002 exactly: the same pg_dump --schema-only and the same privileges", function()
      local fresh, url = database_for_migrator()
      tide(url, "upgrade", "002")
      H.sql(fresh, ("SET ROLE %s; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %s;")
        :format(sql.ident(migrator), sql.ident(app)))
      local function privileges()
        local lines = {}
        for i, row in ipairs(H.sql(fresh, PRIVILEGES)) do
          lines[i] = row.line
        end
        return lines
      end
      local dump, granted = schema_dump(fresh), privileges()
      assert.matches("GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.users TO " .. app, dump, 1, true)
      tide(url, "upgrade", "head")
      assert.are_not.equal(dump, schema_dump(fresh))
      assert.are_not.same(granted, privileges())
      tide(url, "downgrade", "002")
      assert.equal(dump, schema_dump(fresh))
      assert.same(granted, privileges())
    end)
  end)

  describe("tide test with the seed's checks (tests/003_rls.lua)", function()
    -- A scratch database owned by the migration role, which may SET ROLE to the application role.
    local function scratch()
      return database_for_migrator()
    end

    setup(function()
      H.sql(nil, ("GRANT %s TO %s"):format(sql.ident(app), sql.ident(migrator)))
    end)

    teardown(function()
      pcall(H.sql, nil, ("REVOKE %s FROM %s"):format(sql.ident(app), sql.ident(migrator)))
    end)

    it("passes them after 003 and again after its downgrade and upgrade", function()
      local _, url = scratch()
      local r = run(url, "test")
      assert.equal(0, r.code, r.output)
      assert.matches("003%s+ok %(checks: 32 passed, 0 failed%)", r.stdout)
      assert.matches("ok: 3 revisions round%-tripped", r.stdout)
    end)

    it("fails them at 002 exactly where its weaknesses are", function()
      -- the same file, run after 002, with the grants 002 deployments made by hand
      local source = assert(H.read(H.source_dir .. "/tests/003_rls.lua"))
      local grant = 'db:exec("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO " '
        .. ".. sql.ident(db.vars.app_role))"
      source = source:gsub('revision = "003"', 'revision = "002"')
        :gsub("local function setup%(db%)\n", "local function setup(db)\n  " .. grant .. "\n")
      local versions = H.source_dir .. "/versions/"
      local dir = H.tmpdir {
        ["versions/001.lua"] = H.read(versions .. "001_initial.lua"),
        ["versions/002.lua"] = H.read(versions .. "002_add_indexes.lua"),
        ["tests/002_rls.lua"] = source,
        ["tide.lua"] = ("return { vars = { app_role = %q } }"):format(app),
      }
      local _, url = scratch()
      local r = H.tide({ "test", "--url", url }, { dir = dir })
      assert.equal(1, r.code, r.output)
      local failed = {}
      for name in r.stdout:gmatch('problem: revision 002 %(%S+%): check "([^"]+)" failed after upgrade:') do
        failed[#failed + 1] = name
      end
      assert.same({
        "1: the helper functions are the application role's only",
        "2: ids and created_at are the server's",
        "3: only an admin creates users, whatever app.user_id names",
        "4: another user's whitelist answers with a refusal, never a constraint",
        "5: an owner whitelists any user; a grantee can leave, not edit",
      }, failed)
      assert.matches("expected 1 row {{app = true, public = false}}, got 1 {{app = true, public = true}}", r.stdout,
        1, true)
      assert.matches("expected ERROR 42501, got ERROR 23505: duplicate key value violates unique constraint "
        .. '"whitelist_vm_id_user_id_key"', r.stdout, 1, true)
      assert.matches("002%s+ok %(checks: 22 passed, 10 failed%)", r.stdout)
    end)
  end)

  describe("round trip", function()
    it("downgrade base leaves no application objects, and upgrade head rebuilds the same schema", function()
      -- a database of its own: the one above carries the application role's grants
      local fresh, url = database_for_migrator()
      tide(url, "upgrade", "head")
      local first = schema_dump(fresh)
      assert.matches("CREATE TABLE public.users", first, 1, true)
      tide(url, "downgrade", "base", "--no-backup")
      local leftovers = H.sql(fresh, [[
SELECT 'relation ' || c.relname AS object FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
UNION ALL SELECT 'function ' || p.proname FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
UNION ALL SELECT 'type ' || t.typname FROM pg_type t
  JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public'
UNION ALL SELECT 'policy ' || polname FROM pg_policy
UNION ALL SELECT 'schema ' || nspname FROM pg_namespace
  WHERE nspname NOT IN ('public', 'tide', 'information_schema') AND nspname NOT LIKE 'pg\_%']])
      assert.same({}, leftovers)
      tide(url, "upgrade", "head")
      assert.equal(first, schema_dump(fresh))
    end)
  end)
end)
