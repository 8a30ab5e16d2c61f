-- 002: the seed's Add Indexes Migration: one index per column the seed lists, named
-- ix_<table>_<column> like the Alembic setup tide replaces named them, so a database that
-- setup migrated keeps recognisable names.
--
-- Indexes and constraints of 001 that overlap, decided one by one:
-- * users.username and users.email must be unique. 001 declares no UNIQUE constraint on them,
--   because its index would be exactly the index listed here; the unique indexes below are the
--   uniqueness rule (as Alembic's `create_index(..., unique=True)` was). Downgrading to 001
--   therefore also drops the uniqueness: 001 alone is never the state an application runs on.
-- * vms.proxmox_node_id: 001's UNIQUE (proxmox_node_id, vmid) index leads with this column and
--   could answer these lookups too. The seed's single-column index is kept anyway: it is the
--   smaller of the two, and the unique index exists for a rule, not for these lookups.
-- * whitelist.vm_id: the same for 001's UNIQUE (vm_id, user_id), for the same reason.
-- No other listed column is the leading column of a key or constraint of 001.
--
-- Plain CREATE INDEX inside the revision's transaction: all or nothing, and the tables are
-- empty or small when this runs. On a large live table, write a revision with
-- `transaction = false` and `concurrently = true` instead.
local schema = require "tide.schema"

-- {table, column, unique?} in the seed's order.
local INDEXES = {
  { "accounts", "owner_id" },
  { "accounts", "acc_username" },
  { "accounts", "acc_email_address" },
  { "accounts", "prime" },
  { "accounts", "lock" },
  { "accounts", "perm_lock" },
  { "hardware", "owner_id" },
  { "hardware", "account_id" },
  { "hardware", "type" },
  { "vms", "owner_id" },
  { "vms", "proxmox_node_id" },
  { "vms", "vmid" },
  { "vms", "status" },
  { "proxmox_nodes", "owner_id" },
  { "proxmox_nodes", "status" },
  { "whitelist", "vm_id" },
  { "whitelist", "user_id" },
  { "users", "username", unique = true },
  { "users", "email", unique = true },
  { "users", "is_admin" },
  { "cards", "owner_id" },
  { "cards", "account_id" },
}

local function upgrade(db)
  for _, index in ipairs(INDEXES) do
    schema.create_index(db, index[1], index[2], { unique = index.unique })
  end
end

local function downgrade(db)
  for i = #INDEXES, 1, -1 do
    schema.drop_index(db, schema.index_name(INDEXES[i][1], INDEXES[i][2]))
  end
end

return {
  revision = "002",
  down_revision = "001",
  message = "Add Indexes Migration",
  upgrade = upgrade,
  downgrade = downgrade,
}
