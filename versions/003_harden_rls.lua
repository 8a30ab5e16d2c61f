-- 003: row-level security hardened, and the application role's privileges in version control.
--
-- A new revision, not an edit of 001 or 002: those are applied in the field, where tide
-- refuses a changed applied file (drift, exit 9) and would never run the edit anyway. Fixed
-- here, found by trying 002 as an attacker would (spec/seed_spec.lua reproduces each against
-- 002 and shows it gone here):
--
-- 1. The helper functions were executable by PUBLIC: any role of the cluster, with no table
--    privilege at all, could set app.user_id to any id and ask app_lookup_is_admin() whether
--    that user is an admin. Now EXECUTE belongs to the application role only.
-- 2. With table-level INSERT the application role could write `id` itself (OVERRIDING SYSTEM
--    VALUE): probe which ids exist through duplicate-key errors, and take the id the sequence
--    hands out next, so another user's ordinary insert fails. Now INSERT and UPDATE are granted
--    per column, without id and created_at (both the server's).
-- 3. A session naming a user that does not exist (a deleted user's, say) could insert that
--    user into `users`: the self-or-admin policy lets a row with id = app.user_id through. Now a
--    restrictive INSERT policy needs an admin.
-- 4. The whitelist's WITH CHECK only compared owner_id with the acting user, so an insert naming
--    someone else's VM got as far as the unique index, whose error told who is on that VM's
--    whitelist. Now the check also needs the VM to be the row owner's (read from vms under the
--    acting user's policies), and it runs before any constraint. vms_whitelisted used to read
--    whitelist directly, and whitelist cannot read vms back (a recursion PostgreSQL refuses):
--    it now asks app_whitelisted_vm_ids(), a SECURITY DEFINER function like the admin lookup.
-- 5. (decided, not a weakness) A VM's owner may put any user on its whitelist without asking:
--    that is the application's sharing feature, and it gives the grantee read access to one
--    VM, nothing of the grantee to the owner. A grantee may now take themselves off it.
--
-- The application role: its name is `vars.app_role` in tide.lua (read as db.vars.app_role). It
-- must exist before this revision runs: roles belong to the cluster, not to the database, and
-- creating one needs CREATEROLE, which the migration role should not have. The upgrade refuses
-- a role that is missing, a superuser, BYPASSRLS, or the owner of the tables (any of these
-- would skip or could switch off the policies).
--
-- The downgrade restores 002 as a deployment ran it: the policies and functions of 001, the
-- functions executable by PUBLIC again, and the application role back to the table-level
-- SELECT, INSERT, UPDATE, DELETE the README told 002 deployments to grant by hand, so the
-- application that ran on 002 keeps working after a rollback.
local rls = require "tide.rls"
local schema = require "tide.schema"
local sql = require "tide.sql"

local ME = "(SELECT app_current_user_id())"
local ADMIN = "(SELECT app_current_user_is_admin())"
local OWNER_OR_ADMIN = ("owner_id = %s OR %s"):format(ME, ADMIN)

local TABLES = { "users", "accounts", "hardware", "proxmox_nodes", "vms", "whitelist", "cards" }

-- The columns the application writes: all but id and created_at. whitelist gets no UPDATE: an
-- entry is removed and added, not edited.
local WRITABLE = {
  users = { "username", "email", "password_hash", "is_admin" },
  accounts = { "owner_id", "acc_username", "acc_email_address", "steam_id", "prime", "lock", "perm_lock" },
  hardware = { "owner_id", "account_id", "type", "name", "profile" },
  proxmox_nodes = { "owner_id", "name", "host", "port", "status" },
  vms = { "owner_id", "proxmox_node_id", "vmid", "name", "status" },
  whitelist = { "vm_id", "owner_id", "user_id" },
  cards = { "owner_id", "account_id", "code_hash", "amount", "currency", "redeemed_at" },
}
local NOT_UPDATED = { whitelist = true }

-- 001's helpers; the policies call them with the acting role's rights.
local FUNCTIONS = "app_current_user_id(), app_lookup_is_admin(), app_current_user_is_admin()"

-- 001's policies that 003 replaces, as 001 wrote them (the downgrade puts them back).
local POLICIES_001 = {
  { "whitelist", "whitelist_owner_or_admin", { command = "all", using = OWNER_OR_ADMIN, with_check = OWNER_OR_ADMIN } },
  { "vms", "vms_whitelisted", {
    command = "select",
    using = ("EXISTS (SELECT 1 FROM whitelist w WHERE w.vm_id = vms.id AND w.user_id = %s)"):format(ME),
  } },
}

-- Refuses an application role that would make the policies moot. The role's name reaches the
-- block as a string literal, and PL/pgSQL quotes it again where it names it.
local function require_app_role(db, role)
  local body = ([[
DECLARE
  app_role constant text := %s;
  r pg_catalog.pg_roles%%ROWTYPE;
BEGIN
  SELECT * INTO r FROM pg_catalog.pg_roles WHERE rolname = app_role;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the application role %% does not exist', pg_catalog.quote_ident(app_role)
      USING ERRCODE = 'undefined_object',
        HINT = 'create it first (CREATE ROLE ... LOGIN, as a role with CREATEROLE), or name the role the '
          'application connects as in vars.app_role in tide.lua';
  END IF;
  IF r.rolsuper OR r.rolbypassrls THEN
    RAISE EXCEPTION 'the application role %% bypasses row-level security (SUPERUSER or BYPASSRLS)',
      pg_catalog.quote_ident(app_role)
      USING ERRCODE = 'invalid_parameter_value',
        HINT = 'the application must connect as a role that the policies apply to';
  END IF;
  IF pg_catalog.pg_has_role(r.oid, (SELECT c.relowner FROM pg_catalog.pg_class c
                                    WHERE c.oid = 'users'::pg_catalog.regclass), 'USAGE') THEN
    RAISE EXCEPTION 'the application role %% owns the tables or has their owner''s rights: it could switch '
      'row-level security off', pg_catalog.quote_ident(app_role)
      USING ERRCODE = 'invalid_parameter_value',
        HINT = 'let the application connect as a role of its own, not as the migration role';
  END IF;
END]]):format(sql.literal(role))
  schema.execute(db, "DO " .. sql.literal(body))
end

local function upgrade(db)
  local role = db.vars.app_role
  require_app_role(db, role)

  -- 2. The application's privileges, per column where it writes.
  schema.revoke(db, "all", { table = TABLES }, role)
  schema.grant(db, { "select", "delete" }, { table = TABLES }, role)
  for _, name in ipairs(TABLES) do
    local privileges = { { "insert", columns = WRITABLE[name] } }
    if not NOT_UPDATED[name] then
      privileges[2] = { "update", columns = WRITABLE[name] }
    end
    schema.grant(db, privileges, name, role)
  end

  -- 4. Who is on a VM's whitelist, for vms_whitelisted: read as the migration role, so that
  -- the whitelist policy can read vms in turn. It answers only for the acting user, exactly
  -- what the whitelist_grantee policy shows them anyway.
  schema.execute(db, [[
CREATE FUNCTION app_whitelisted_vm_ids() RETURNS SETOF bigint
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT w.vm_id FROM whitelist w WHERE w.user_id = app_current_user_id();
END]])

  -- 1. The helpers: the application role only.
  schema.execute(db, ("REVOKE ALL ON FUNCTION %s, app_whitelisted_vm_ids() FROM PUBLIC"):format(FUNCTIONS))
  schema.execute(db, ("GRANT EXECUTE ON FUNCTION %s, app_whitelisted_vm_ids() TO %s"):format(FUNCTIONS,
    sql.ident(role)))

  -- 3. Only an admin creates users (restrictive: AND-ed with users_self_or_admin).
  rls.create_policy(db, "users", "users_insert_admin", {
    as = "restrictive", command = "insert", with_check = ADMIN,
  })

  -- 4. The VMs the acting user is whitelisted on, without reading whitelist here: an
  -- uncorrelated subquery, hashed once per statement.
  rls.drop_policy(db, "vms", "vms_whitelisted")
  rls.create_policy(db, "vms", "vms_whitelisted", {
    command = "select", using = "id IN (SELECT app_whitelisted_vm_ids())",
  })
  -- 4. An entry names a VM of its owner, checked before the unique index or a foreign key can
  -- answer: vms under the acting user's policies shows their own VMs (an admin's: all).
  rls.drop_policy(db, "whitelist", "whitelist_owner_or_admin")
  rls.create_policy(db, "whitelist", "whitelist_owner_or_admin", {
    command = "all",
    using = OWNER_OR_ADMIN,
    with_check = ("(%s) AND EXISTS (SELECT 1 FROM vms v WHERE v.id = whitelist.vm_id "
      .. "AND v.owner_id = whitelist.owner_id)"):format(OWNER_OR_ADMIN),
  })
  -- 5. A grantee may leave a whitelist.
  rls.create_policy(db, "whitelist", "whitelist_grantee_leave", {
    command = "delete", using = ("user_id = %s"):format(ME),
  })
end

local function downgrade(db)
  local role = db.vars.app_role
  rls.drop_policy(db, "whitelist", "whitelist_grantee_leave")
  for _, policy in ipairs(POLICIES_001) do
    rls.drop_policy(db, policy[1], policy[2])
    rls.create_policy(db, policy[1], policy[2], policy[3])
  end
  rls.drop_policy(db, "users", "users_insert_admin")
  schema.execute(db, "DROP FUNCTION app_whitelisted_vm_ids()")
  schema.execute(db, ("REVOKE ALL ON FUNCTION %s FROM %s"):format(FUNCTIONS, sql.ident(role)))
  schema.execute(db, ("GRANT EXECUTE ON FUNCTION %s TO PUBLIC"):format(FUNCTIONS))
  schema.revoke(db, "all", { table = TABLES }, role)
  schema.grant(db, { "select", "insert", "update", "delete" }, { table = TABLES }, role)
end

return {
  revision = "003",
  down_revision = "002",
  message = "Harden RLS; the application role",
  upgrade = upgrade,
  downgrade = downgrade,
}
