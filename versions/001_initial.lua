-- 001: the initial schema of the seed application (Steam accounts, hardware profiles, Proxmox
-- nodes and their VMs, a VM access whitelist, Steam gift cards), with row-level security
-- enabled and forced on all seven tables.
--
-- Who is acting: the application runs each request in a transaction that starts with
--   SELECT set_config('app.user_id', $1, true)      -- or: SET LOCAL app.user_id = '42'
-- and every policy compares rows with app_current_user_id(). An unset or empty app.user_id
-- means "nobody": every policy is false and every table looks empty.
--
-- Admins: users.is_admin of the acting user, read by app_current_user_is_admin(). Reading
-- `users` from inside a policy on `users` would recurse (the policy on users calls the function,
-- whose query on users applies the policy ...), so the read is a SECURITY DEFINER function owned
-- by the migration role, and the function the policies call answers "not admin" when it runs as
-- that role: the nested evaluation of the users policy then falls back to "own row", which is
-- the one row the lookup reads. See docs "The RLS model" for the whole argument.
--
-- Uniqueness of users.username and users.email is declared by 002's unique indexes (see there),
-- so that no index is created twice.
local schema = require "tide.schema"
local rls = require "tide.rls"
local sql = require "tide.sql"

-- Policy expressions. The functions are wrapped in scalar subqueries so PostgreSQL evaluates
-- each once per statement (an InitPlan) instead of once per row.
local ME = "(SELECT app_current_user_id())"
local ADMIN = "(SELECT app_current_user_is_admin())"
local OWNER_OR_ADMIN = ("owner_id = %s OR %s"):format(ME, ADMIN)

local function timestamps()
  return { "created_at", "timestamptz", not_null = true, default = sql.raw("now()") }
end

-- Every owned row points at its owner; deleting a user deletes everything they own.
local function owner()
  return { "owner_id", "bigint", not_null = true, references = "users", on_delete = "cascade" }
end

local function id()
  return { "id", "bigint", identity = "always", primary_key = true }
end

local TABLES_IN_DROP_ORDER = { "whitelist", "cards", "vms", "hardware", "proxmox_nodes", "accounts" }

local function upgrade(db)
  schema.create_table(db, "users", {
    columns = {
      id(),
      { "username", "text", not_null = true, check = "length(username) BETWEEN 1 AND 64" },
      { "email", "text", not_null = true, check = "email LIKE '_%@_%'" },
      -- A PHC string (argon2id, bcrypt ...) made by the application; never the password.
      { "password_hash", "text", not_null = true, check = "password_hash <> ''" },
      { "is_admin", "boolean", not_null = true, default = false },
      timestamps(),
    },
  })

  -- app.user_id as a bigint, NULL when unset or empty. A malformed value raises instead of
  -- silently meaning "nobody".
  schema.execute(db, [[
CREATE FUNCTION app_current_user_id() RETURNS bigint
  LANGUAGE sql STABLE
  SET search_path = pg_catalog, pg_temp
  RETURN nullif(current_setting('app.user_id', true), '')::bigint]])

  -- The lookup: SECURITY DEFINER so that it reads users as its owner (the migration role)
  -- whatever the caller may select. Its SQL-standard body is resolved when it is created (no
  -- name is looked up at call time, so no search_path trick reaches it) and records its
  -- dependency on users; search_path is pinned anyway, with pg_temp last.
  schema.execute(db, [[
CREATE FUNCTION app_lookup_is_admin() RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT coalesce((SELECT u.is_admin FROM users u WHERE u.id = app_current_user_id()), false);
END]])

  -- What the policies call. Under FORCE ROW LEVEL SECURITY the users policy applies to the
  -- lookup's owner too, and that policy calls this function again: running as the lookup's
  -- owner means "inside a lookup" (or a session of the owner itself, which is no application
  -- user), so the answer is false and the nested policy ends at "id = app_current_user_id()",
  -- the one row the lookup reads. Today's executor would not reach the nested call anyway (the
  -- lookup's leakproof id comparison runs before the policy, whose first arm then short-
  -- circuits), but that is a plan choice, not a promise; the guard makes it one. Runs with the
  -- caller's rights.
  schema.execute(db, [[
CREATE FUNCTION app_current_user_is_admin() RETURNS boolean
  LANGUAGE sql STABLE
  SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT CASE
    WHEN current_user = (SELECT pg_get_userbyid(p.proowner) FROM pg_proc p
                         WHERE p.oid = 'app_lookup_is_admin()'::regprocedure) THEN false
    ELSE app_lookup_is_admin()
  END;
END]])

  -- Steam accounts. There is no Steam password column: a secret the application must replay
  -- cannot be stored hashed, so it belongs in a secret store, not in this table.
  schema.create_table(db, "accounts", {
    columns = {
      id(),
      owner(),
      { "acc_username", "text", not_null = true, check = "length(acc_username) BETWEEN 1 AND 64" },
      { "acc_email_address", "text", check = "acc_email_address LIKE '_%@_%'" },
      { "steam_id", "bigint", check = "steam_id > 0" },
      { "prime", "boolean", not_null = true, default = false },
      { "lock", "boolean", not_null = true, default = false },
      { "perm_lock", "boolean", not_null = true, default = false },
      timestamps(),
    },
  })

  -- Hardware profiles; one may outlive the account it was used for.
  schema.create_table(db, "hardware", {
    columns = {
      id(),
      owner(),
      { "account_id", "bigint", references = "accounts", on_delete = "set null" },
      { "type", "text", not_null = true, check = "length(type) BETWEEN 1 AND 32" },
      { "name", "text", not_null = true, check = "length(name) BETWEEN 1 AND 128" },
      { "profile", "jsonb", not_null = true, default = "{}",
        check = "jsonb_typeof(profile) = 'object'" },
      timestamps(),
    },
  })

  schema.create_table(db, "proxmox_nodes", {
    columns = {
      id(),
      owner(),
      { "name", "text", not_null = true, check = "length(name) BETWEEN 1 AND 128" },
      { "host", "text", not_null = true, check = "length(host) BETWEEN 1 AND 253" },
      { "port", "integer", not_null = true, default = 8006, check = "port BETWEEN 1 AND 65535" },
      { "status", "text", not_null = true, default = "unknown",
        check = "status IN ('online', 'offline', 'maintenance', 'unknown')" },
      timestamps(),
    },
  })

  -- A node with VMs cannot be deleted (NO ACTION, checked at the end of the statement, so
  -- deleting the owner, which cascades to both, still works).
  schema.create_table(db, "vms", {
    columns = {
      id(),
      owner(),
      { "proxmox_node_id", "bigint", not_null = true, references = "proxmox_nodes",
        on_delete = "no action" },
      -- Proxmox VE accepts VMIDs from 100 to 999999999.
      { "vmid", "integer", not_null = true, check = "vmid BETWEEN 100 AND 999999999" },
      { "name", "text", not_null = true, check = "length(name) BETWEEN 1 AND 128" },
      { "status", "text", not_null = true, default = "stopped",
        check = "status IN ('running', 'stopped', 'paused', 'suspended', 'unknown')" },
      timestamps(),
    },
    constraints = {
      -- a VMID names one VM on its node
      { unique = { "proxmox_node_id", "vmid" } },
      -- the target of whitelist's (vm_id, owner_id) foreign key
      { unique = { "id", "owner_id" } },
    },
  })

  -- Who may see a VM besides its owner. owner_id repeats the VM's owner, kept equal to it by the
  -- composite foreign key (ON UPDATE CASCADE follows a change of owner): the whitelist policies
  -- then need not look at vms, whose own policy looks at whitelist; a policy on each side
  -- reading the other table is a recursion PostgreSQL refuses.
  schema.create_table(db, "whitelist", {
    columns = {
      id(),
      { "vm_id", "bigint", not_null = true },
      { "owner_id", "bigint", not_null = true },
      { "user_id", "bigint", not_null = true, references = "users", on_delete = "cascade" },
      timestamps(),
    },
    constraints = {
      { foreign_key = { "vm_id", "owner_id" }, references = { table = "vms", columns = { "id", "owner_id" } },
        on_delete = "cascade", on_update = "cascade" },
      { unique = { "vm_id", "user_id" } },
      { check = "user_id <> owner_id" },
    },
  })

  -- Steam gift cards: the code is a bearer secret, kept only as a hash (to recognise a card
  -- seen before); the redeemable code itself lives in the secret store.
  schema.create_table(db, "cards", {
    columns = {
      id(),
      owner(),
      { "account_id", "bigint", references = "accounts", on_delete = "set null" },
      { "code_hash", "text", not_null = true, check = "code_hash <> ''" },
      { "amount", "numeric(12,2)", not_null = true, check = "amount > 0" },
      { "currency", "char(3)", not_null = true, default = "USD", check = "currency ~ '^[A-Z]{3}$'" },
      { "redeemed_at", "timestamptz" },
      timestamps(),
    },
  })

  for _, name in ipairs { "users", "accounts", "hardware", "proxmox_nodes", "vms", "whitelist", "cards" } do
    rls.enable_rls(db, name, { force = true })
  end

  -- Users see and change their own row; admins all rows. Only an admin can make an admin: a
  -- user's own row must keep is_admin false.
  rls.create_policy(db, "users", "users_self_or_admin", {
    command = "all",
    using = ("id = %s OR %s"):format(ME, ADMIN),
    with_check = ("%s OR (id = %s AND NOT is_admin)"):format(ADMIN, ME),
  })

  for _, name in ipairs { "accounts", "proxmox_nodes" } do
    rls.create_policy(db, name, name .. "_owner_or_admin", {
      command = "all", using = OWNER_OR_ADMIN, with_check = OWNER_OR_ADMIN,
    })
  end

  -- Rows that point at an account may only point at one of the same owner. Foreign keys are
  -- checked without RLS, so without this a user could attach a row to someone else's account.
  for _, name in ipairs { "hardware", "cards" } do
    rls.create_policy(db, name, name .. "_owner_or_admin", {
      command = "all",
      using = OWNER_OR_ADMIN,
      with_check = ("(%s) AND (account_id IS NULL OR EXISTS (SELECT 1 FROM accounts a "
        .. "WHERE a.id = %s.account_id AND a.owner_id = %s.owner_id))"):format(OWNER_OR_ADMIN, name, name),
    })
  end

  -- A VM runs on a node of its owner.
  rls.create_policy(db, "vms", "vms_owner_or_admin", {
    command = "all",
    using = OWNER_OR_ADMIN,
    with_check = ("(%s) AND EXISTS (SELECT 1 FROM proxmox_nodes n "
      .. "WHERE n.id = vms.proxmox_node_id AND n.owner_id = vms.owner_id)"):format(OWNER_OR_ADMIN),
  })
  -- A user on a VM's whitelist sees that VM (read only), and nothing else of its owner.
  rls.create_policy(db, "vms", "vms_whitelisted", {
    command = "select",
    using = ("EXISTS (SELECT 1 FROM whitelist w WHERE w.vm_id = vms.id AND w.user_id = %s)"):format(ME),
  })

  -- The VM's owner manages its whitelist; a whitelisted user sees the entries naming them
  -- (which is also what lets vms_whitelisted find them).
  rls.create_policy(db, "whitelist", "whitelist_owner_or_admin", {
    command = "all", using = OWNER_OR_ADMIN, with_check = OWNER_OR_ADMIN,
  })
  rls.create_policy(db, "whitelist", "whitelist_grantee", {
    command = "select", using = ("user_id = %s"):format(ME),
  })
end

local function downgrade(db)
  -- Dropping a table drops its policies. vms_whitelisted reads whitelist while whitelist's
  -- foreign key points at vms, so that policy goes first. The functions go after every policy
  -- that calls them and before users, which the lookup's body depends on.
  rls.drop_policy(db, "vms", "vms_whitelisted")
  for _, name in ipairs(TABLES_IN_DROP_ORDER) do
    schema.drop_table(db, name)
  end
  rls.drop_policy(db, "users", "users_self_or_admin")
  schema.execute(db, "DROP FUNCTION app_current_user_is_admin()")
  schema.execute(db, "DROP FUNCTION app_lookup_is_admin()")
  schema.execute(db, "DROP FUNCTION app_current_user_id()")
  schema.drop_table(db, "users")
end

return {
  revision = "001",
  down_revision = nil,
  message = "Initial Migration",
  upgrade = upgrade,
  downgrade = downgrade,
}
