-- spec/support/corpus.lua: schema pairs for spec/autogen_spec.lua. Each pair is a name, the SQL of
-- schema X and of schema Y (after `base`, common to both), the lint rules its upgrade breaks by
-- nature (a drop loses data, a type change rewrites the table), and --rename hints. For every
-- pair the spec generates the revision X -> Y and proves it: upgrade gives Y's model, downgrade
-- gives X's again, lint finds nothing else, and `tide test` round-trips it.
--
-- Roles tide_corpus_app and tide_corpus_auditor exist while the spec runs.
-- luacheck: no max line length (SQL reads better on one line each)
local SEED_001 = [[
CREATE TABLE users (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  username text NOT NULL CHECK (length(username) BETWEEN 1 AND 64),
  email text NOT NULL CHECK (email LIKE '_%@_%'),
  password_hash text NOT NULL CHECK (password_hash <> ''),
  is_admin boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now());
CREATE FUNCTION app_current_user_id() RETURNS bigint LANGUAGE sql STABLE
  SET search_path = pg_catalog, pg_temp
  RETURN nullif(current_setting('app.user_id', true), '')::bigint;
CREATE FUNCTION app_lookup_is_admin() RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT coalesce((SELECT u.is_admin FROM users u WHERE u.id = app_current_user_id()), false);
END;
CREATE FUNCTION app_current_user_is_admin() RETURNS boolean LANGUAGE sql STABLE
  SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT CASE WHEN current_user = (SELECT pg_get_userbyid(p.proowner) FROM pg_proc p
    WHERE p.oid = 'app_lookup_is_admin()'::regprocedure) THEN false ELSE app_lookup_is_admin() END;
END;
CREATE TABLE accounts (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  acc_username text NOT NULL CHECK (length(acc_username) BETWEEN 1 AND 64),
  steam_id bigint CHECK (steam_id > 0),
  prime boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE proxmox_nodes (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  name text NOT NULL, port integer NOT NULL DEFAULT 8006 CHECK (port BETWEEN 1 AND 65535),
  status text NOT NULL DEFAULT 'unknown' CHECK (status IN ('online', 'offline', 'maintenance', 'unknown')));
CREATE TABLE vms (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  proxmox_node_id bigint NOT NULL REFERENCES proxmox_nodes,
  vmid integer NOT NULL CHECK (vmid BETWEEN 100 AND 999999999),
  UNIQUE (proxmox_node_id, vmid), UNIQUE (id, owner_id));
CREATE TABLE whitelist (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  vm_id bigint NOT NULL, owner_id bigint NOT NULL,
  user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  FOREIGN KEY (vm_id, owner_id) REFERENCES vms (id, owner_id) ON DELETE CASCADE ON UPDATE CASCADE,
  UNIQUE (vm_id, user_id), CHECK (user_id <> owner_id));
ALTER TABLE users ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE proxmox_nodes ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE vms ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE whitelist ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY users_self_or_admin ON users
  USING (id = (SELECT app_current_user_id()) OR (SELECT app_current_user_is_admin()))
  WITH CHECK ((SELECT app_current_user_is_admin()) OR (id = (SELECT app_current_user_id()) AND NOT is_admin));
CREATE POLICY accounts_owner_or_admin ON accounts
  USING (owner_id = (SELECT app_current_user_id()) OR (SELECT app_current_user_is_admin()));
CREATE POLICY proxmox_nodes_owner_or_admin ON proxmox_nodes
  USING (owner_id = (SELECT app_current_user_id()) OR (SELECT app_current_user_is_admin()));
CREATE POLICY vms_owner_or_admin ON vms
  USING (owner_id = (SELECT app_current_user_id()) OR (SELECT app_current_user_is_admin()))
  WITH CHECK ((owner_id = (SELECT app_current_user_id()) OR (SELECT app_current_user_is_admin()))
    AND EXISTS (SELECT 1 FROM proxmox_nodes n WHERE n.id = vms.proxmox_node_id AND n.owner_id = vms.owner_id));
CREATE POLICY vms_whitelisted ON vms FOR SELECT
  USING (EXISTS (SELECT 1 FROM whitelist w WHERE w.vm_id = vms.id AND w.user_id = (SELECT app_current_user_id())));
CREATE POLICY whitelist_owner_or_admin ON whitelist
  USING (owner_id = (SELECT app_current_user_id()) OR (SELECT app_current_user_is_admin()));
CREATE POLICY whitelist_grantee ON whitelist FOR SELECT USING (user_id = (SELECT app_current_user_id()));
]]

local SEED_002 = SEED_001 .. [[
CREATE INDEX ix_accounts_owner_id ON accounts (owner_id);
CREATE INDEX ix_accounts_acc_username ON accounts (acc_username);
CREATE INDEX ix_accounts_prime ON accounts (prime);
CREATE INDEX ix_vms_owner_id ON vms (owner_id);
CREATE INDEX ix_vms_proxmox_node_id ON vms (proxmox_node_id);
CREATE INDEX ix_proxmox_nodes_status ON proxmox_nodes (status);
CREATE INDEX ix_whitelist_vm_id ON whitelist (vm_id);
CREATE UNIQUE INDEX ix_users_username ON users (username);
CREATE UNIQUE INDEX ix_users_email ON users (email);
]]

local T = "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, a integer, b text);\n"
local OWNED = [[
CREATE FUNCTION me() RETURNS bigint LANGUAGE sql STABLE RETURN nullif(current_setting('app.user_id', true), '')::bigint;
CREATE TABLE docs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, owner_id bigint NOT NULL, body text,
  secret boolean NOT NULL DEFAULT false);
]]

return {
  -- tables and columns
  { "create a table", x = "", y = T },
  { "drop a table", x = T, y = "", lint = { "destructive" } },
  { "add a nullable column", x = T, y = T .. "ALTER TABLE t ADD COLUMN c timestamptz;" },
  { "add a NOT NULL column with a default", x = T, y = T .. "ALTER TABLE t ADD COLUMN c boolean NOT NULL DEFAULT true;" },
  { "add a NOT NULL column without a default (nullable, then SET NOT NULL)", x = T,
    y = T .. "ALTER TABLE t ADD COLUMN c text NOT NULL;" },
  { "drop a column", x = T, y = "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, a integer);",
    lint = { "destructive" } },
  { "change a column's type", x = T, y = T:gsub("a integer", "a bigint"), lint = { "rewrite" } },
  { "change a column's type to text and back to a number", x = T, y = T:gsub("a integer", "a numeric(12,2)"),
    lint = { "rewrite" } },
  { "set and change defaults", x = T .. "ALTER TABLE t ALTER b SET DEFAULT 'x';",
    y = T .. "ALTER TABLE t ALTER b SET DEFAULT 'it''s'; ALTER TABLE t ALTER a SET DEFAULT 42;" },
  { "drop a default", x = T .. "ALTER TABLE t ALTER a SET DEFAULT -1;", y = T },
  { "set NOT NULL", x = T, y = T .. "ALTER TABLE t ALTER b SET NOT NULL;" },
  { "drop NOT NULL", x = T .. "ALTER TABLE t ALTER b SET NOT NULL;", y = T },
  { "add an identity column", x = "CREATE TABLE t (a integer);",
    y = "CREATE TABLE t (a integer, id bigint GENERATED BY DEFAULT AS IDENTITY);" },
  { "turn a column into an identity", x = "CREATE TABLE t (id bigint NOT NULL);",
    y = "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY);" },
  { "add a generated column", x = T,
    y = T .. "ALTER TABLE t ADD COLUMN a2 integer GENERATED ALWAYS AS (a * 2) STORED;" },
  { "change a column's collation", x = T, y = T:gsub("b text", 'b text COLLATE "C"'), lint = { "rewrite" } },
  { "create a table with serial columns", x = "",
    y = "CREATE TABLE s (id serial PRIMARY KEY, big bigserial, name varchar(40) NOT NULL);" },
  { "unlogged table with storage options", x = "",
    y = "CREATE UNLOGGED TABLE u (id int PRIMARY KEY, v text) WITH (fillfactor = 70);" },
  { "rename a table (hint)", x = T .. "CREATE INDEX t_a ON t (a);",
    y = T:gsub("TABLE t ", "TABLE items ") .. "CREATE INDEX t_a ON items (a);", rename = "t=items" },
  { "rename a column (hint)", x = T .. "CREATE INDEX t_a ON t (a);",
    y = T:gsub("a integer", "amount integer") .. "CREATE INDEX t_a ON t (amount);", rename = "t.a=amount" },
  { "a renamed table without a hint is a drop and a create", x = T, y = T:gsub("TABLE t ", "TABLE items "),
    lint = { "destructive" } },

  -- constraints
  { "add a primary key", x = "CREATE TABLE k (id integer NOT NULL, v text);",
    y = "CREATE TABLE k (id integer PRIMARY KEY, v text);" },
  { "add a unique constraint", x = T, y = T .. "ALTER TABLE t ADD CONSTRAINT t_b_key UNIQUE (b);" },
  { "add a check constraint (NOT VALID, then VALIDATE)", x = T,
    y = T .. "ALTER TABLE t ADD CONSTRAINT t_a_positive CHECK (a > 0);" },
  { "change a check constraint", x = T .. "ALTER TABLE t ADD CONSTRAINT t_a_positive CHECK (a > 0);",
    y = T .. "ALTER TABLE t ADD CONSTRAINT t_a_positive CHECK (a >= 0 AND a < 1000);" },
  { "drop a check constraint", x = T .. "ALTER TABLE t ADD CONSTRAINT t_a_positive CHECK (a > 0);", y = T },
  { "add a foreign key with actions", base = "CREATE TABLE p (id int PRIMARY KEY, code text UNIQUE);", x = T,
    y = T .. "ALTER TABLE t ADD CONSTRAINT t_a_fkey FOREIGN KEY (a) REFERENCES p ON DELETE SET NULL ON UPDATE CASCADE;"
      .. "ALTER TABLE t ADD CONSTRAINT t_b_fkey FOREIGN KEY (b) REFERENCES p (code) MATCH FULL "
      .. "DEFERRABLE INITIALLY DEFERRED;" },
  { "change a foreign key's action", base = "CREATE TABLE p (id int PRIMARY KEY);",
    x = T .. "ALTER TABLE t ADD CONSTRAINT t_a_fkey FOREIGN KEY (a) REFERENCES p ON DELETE CASCADE;",
    y = T .. "ALTER TABLE t ADD CONSTRAINT t_a_fkey FOREIGN KEY (a) REFERENCES p ON DELETE RESTRICT;" },
  { "drop a foreign key", base = "CREATE TABLE p (id int PRIMARY KEY);",
    x = T .. "ALTER TABLE t ADD CONSTRAINT t_a_fkey FOREIGN KEY (a) REFERENCES p;", y = T },
  { "a NOT VALID constraint", x = T, y = T .. "ALTER TABLE t ADD CONSTRAINT t_b_len CHECK (length(b) < 10) NOT VALID;" },
  { "an exclusion constraint", x = "CREATE TABLE r (id int PRIMARY KEY, during tstzrange);",
    y = "CREATE TABLE r (id int PRIMARY KEY, during tstzrange, EXCLUDE USING gist (during WITH &&));" },
  { "rename a constraint (hint)", x = T .. "ALTER TABLE t ADD CONSTRAINT t_a_check CHECK (a > 0);",
    y = T .. "ALTER TABLE t ADD CONSTRAINT t_a_positive CHECK (a > 0);", rename = "t.t_a_check=t_a_positive" },
  { "new tables whose foreign keys point at each other", x = "",
    y = "CREATE TABLE a (id int PRIMARY KEY, b_id int); CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);"
      .. "ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b;" },

  -- indexes
  { "create an index on an existing table (CONCURRENTLY, transaction = false)", x = T,
    y = T .. "CREATE INDEX ix_t_a ON t (a);" },
  { "a unique partial index", x = T, y = T .. "CREATE UNIQUE INDEX t_b_live ON t (b) WHERE a IS NOT NULL;" },
  { "expression, DESC, opclass and INCLUDE indexes", x = T,
    y = T .. "CREATE INDEX t_lower_b ON t (lower(b)); CREATE INDEX t_a_desc ON t (a DESC NULLS LAST) INCLUDE (b);"
      .. "CREATE INDEX t_b_pattern ON t (b text_pattern_ops);" },
  { "a GIN index on jsonb", x = "CREATE TABLE j (id int PRIMARY KEY, doc jsonb);",
    y = "CREATE TABLE j (id int PRIMARY KEY, doc jsonb); CREATE INDEX j_doc ON j USING gin (doc jsonb_path_ops);" },
  { "drop an index", x = T .. "CREATE INDEX ix_t_a ON t (a);", y = T },
  { "change an index", x = T .. "CREATE INDEX t_ab ON t (a);", y = T .. "CREATE INDEX t_ab ON t (a, b);" },
  { "rename an index (hint)", x = T .. "CREATE INDEX t_a_idx ON t (a);", y = T .. "CREATE INDEX ix_t_a ON t (a);",
    rename = "t.t_a_idx=ix_t_a" },

  -- views
  { "create a view", x = T, y = T .. "CREATE VIEW tv AS SELECT id, a FROM t WHERE a > 0;" },
  { "change a view, adding a column (OR REPLACE)", x = T .. "CREATE VIEW tv AS SELECT id, a FROM t;",
    y = T .. "CREATE VIEW tv AS SELECT id, a, b FROM t;" },
  { "change a view's columns (dropped and created again)", x = T .. "CREATE VIEW tv AS SELECT id, a, b FROM t;",
    y = T .. "CREATE VIEW tv AS SELECT b, id FROM t;" },
  { "drop a view", x = T .. "CREATE VIEW tv AS SELECT id FROM t;", y = T },
  { "a security_invoker view", x = T .. "CREATE VIEW tv AS SELECT id FROM t;",
    y = T .. "CREATE VIEW tv WITH (security_invoker = true) AS SELECT id FROM t;" },
  -- lint's `index` rule knows the tables a revision creates, not its materialized views
  { "a materialized view with an index", x = T, lint = { "index" },
    y = T .. "CREATE MATERIALIZED VIEW tm AS SELECT a, count(*) AS n FROM t GROUP BY a; CREATE UNIQUE INDEX tm_a ON tm (a);" },
  { "a view around a column whose type changes", x = T .. "CREATE VIEW tv AS SELECT id, a FROM t;",
    y = T:gsub("a integer", "a bigint") .. "CREATE VIEW tv AS SELECT id, a FROM t;", lint = { "rewrite" } },
  { "views on views, the inner one changed", x = T .. "CREATE VIEW v1 AS SELECT id, a FROM t;"
      .. "CREATE VIEW v2 AS SELECT id FROM v1;",
    y = T .. "CREATE VIEW v1 AS SELECT a, id FROM t; CREATE VIEW v2 AS SELECT id FROM v1;" },

  -- functions and procedures
  { "create a plpgsql function", x = "",
    y = "CREATE FUNCTION add_one(i integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $$\nBEGIN\n  RETURN i + 1;\nEND\n$$;" },
  { "replace a function's body", x = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
    y = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 2';" },
  { "change a function's result type", x = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
    y = "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql AS 'SELECT 1';" },
  { "SECURITY DEFINER with a pinned search_path", x = T,
    y = T .. "CREATE FUNCTION count_t() RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER "
      .. "SET search_path = pg_catalog, public BEGIN ATOMIC SELECT count(*) FROM t; END;"
      .. "REVOKE EXECUTE ON FUNCTION count_t() FROM PUBLIC;" },
  { "a procedure", x = T, y = T .. "CREATE PROCEDURE purge(keep integer) LANGUAGE sql "
    .. "AS $$ DELETE FROM t WHERE a < keep $$;" },
  { "drop a function", x = "CREATE FUNCTION f(a int, b text DEFAULT 'x') RETURNS int LANGUAGE sql AS 'SELECT a';",
    y = "" },
  { "a function used by a column default", x = T,
    y = "CREATE FUNCTION next_code() RETURNS text LANGUAGE sql VOLATILE RETURN md5(random()::text);\n" .. T
      .. "ALTER TABLE t ALTER b SET DEFAULT next_code();" },
  { "a function whose result changes under a column default that calls it",
    x = "CREATE FUNCTION next_code() RETURNS text LANGUAGE sql VOLATILE RETURN md5(random()::text);\n" .. T
      .. "ALTER TABLE t ALTER b SET DEFAULT next_code();",
    y = "CREATE FUNCTION next_code() RETURNS varchar LANGUAGE sql VOLATILE RETURN md5(random()::text);\n" .. T
      .. "ALTER TABLE t ALTER b SET DEFAULT next_code();" },
  { "a function whose result changes under a policy that calls it", base = OWNED .. "ALTER TABLE docs ENABLE ROW LEVEL SECURITY;",
    x = "CREATE FUNCTION level() RETURNS int LANGUAGE sql STABLE RETURN 1;"
      .. "CREATE POLICY docs_level ON docs USING (level() > 0);",
    y = "CREATE FUNCTION level() RETURNS bigint LANGUAGE sql STABLE RETURN 1;"
      .. "CREATE POLICY docs_level ON docs USING (level() > 0);", lint = { "policy_per_row" } },

  -- triggers
  { "create a trigger and its function", x = T,
    y = T .. "CREATE FUNCTION t_touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.b := 'x'; RETURN NEW; END$$;"
      .. "CREATE TRIGGER t_touch BEFORE INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION t_touch();" },
  { "drop a trigger", base = T .. "CREATE FUNCTION t_touch() RETURNS trigger LANGUAGE plpgsql AS "
      .. "$$BEGIN RETURN NEW; END$$;",
    x = "CREATE TRIGGER t_touch BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION t_touch();", y = "" },
  { "change a trigger's WHEN", base = T .. "CREATE FUNCTION t_touch() RETURNS trigger LANGUAGE plpgsql AS "
      .. "$$BEGIN RETURN NEW; END$$;",
    x = "CREATE TRIGGER t_touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION t_touch();",
    y = "CREATE TRIGGER t_touch BEFORE UPDATE OF a ON t FOR EACH ROW WHEN (OLD.a IS DISTINCT FROM NEW.a) "
      .. "EXECUTE FUNCTION t_touch();" },
  { "disable a trigger", base = T .. "CREATE FUNCTION t_touch() RETURNS trigger LANGUAGE plpgsql AS "
      .. "$$BEGIN RETURN NEW; END$$; CREATE TRIGGER t_touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION t_touch();",
    x = "", y = "ALTER TABLE t DISABLE TRIGGER t_touch;" },

  -- row-level security
  { "enable RLS", x = OWNED, y = OWNED .. "ALTER TABLE docs ENABLE ROW LEVEL SECURITY;" },
  { "enable and force RLS with a policy", x = OWNED,
    y = OWNED .. "ALTER TABLE docs ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;"
      .. "CREATE POLICY docs_owner ON docs USING (owner_id = (SELECT me()));" },
  { "stop forcing RLS", x = OWNED .. "ALTER TABLE docs ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;",
    y = OWNED .. "ALTER TABLE docs ENABLE ROW LEVEL SECURITY;", lint = { "rls_disable" } },
  { "disable RLS", x = OWNED .. "ALTER TABLE docs ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;", y = OWNED,
    lint = { "rls_disable" } },
  { "change a policy's USING and WITH CHECK (ALTER POLICY)",
    base = OWNED .. "ALTER TABLE docs ENABLE ROW LEVEL SECURITY;",
    x = "CREATE POLICY docs_owner ON docs USING (owner_id = (SELECT me()));",
    y = "CREATE POLICY docs_owner ON docs USING (owner_id = (SELECT me()) AND NOT secret) "
      .. "WITH CHECK (owner_id = (SELECT me()));" },
  { "change a policy's command (dropped and created again)",
    base = OWNED .. "ALTER TABLE docs ENABLE ROW LEVEL SECURITY;",
    x = "CREATE POLICY docs_read ON docs USING (true);", y = "CREATE POLICY docs_read ON docs FOR SELECT USING (true);" },
  { "a restrictive policy for roles", base = OWNED .. "ALTER TABLE docs ENABLE ROW LEVEL SECURITY;"
      .. "CREATE POLICY docs_owner ON docs USING (owner_id = (SELECT me()));", x = "",
    y = "CREATE POLICY docs_no_secrets ON docs AS RESTRICTIVE FOR SELECT TO tide_corpus_app, tide_corpus_auditor "
      .. "USING (NOT secret);" },
  { "drop a policy", base = OWNED .. "ALTER TABLE docs ENABLE ROW LEVEL SECURITY;",
    x = "CREATE POLICY docs_owner ON docs USING (owner_id = (SELECT me()));", y = "" },
  { "a policy calling a new function (the function first)",
    base = OWNED .. "ALTER TABLE docs ENABLE ROW LEVEL SECURITY;", x = "",
    y = "CREATE FUNCTION is_auditor() RETURNS boolean LANGUAGE sql STABLE RETURN current_user = 'tide_corpus_auditor';"
      .. "CREATE POLICY docs_auditor ON docs FOR SELECT USING ((SELECT is_auditor()));" },
  { "a policy dropped before the column it reads",
    base = "CREATE TABLE docs (id int PRIMARY KEY, owner_id bigint NOT NULL); ALTER TABLE docs ENABLE ROW LEVEL SECURITY;",
    x = "ALTER TABLE docs ADD COLUMN secret boolean; CREATE POLICY docs_open ON docs USING (NOT secret);",
    y = "", lint = { "destructive" } },
  { "a policy around a column whose type changes", base = OWNED .. "ALTER TABLE docs ENABLE ROW LEVEL SECURITY;",
    x = "CREATE POLICY docs_owner ON docs USING (owner_id = (SELECT me()));",
    y = "ALTER TABLE docs ALTER owner_id TYPE numeric; CREATE POLICY docs_owner ON docs USING (owner_id = (SELECT me()));",
    lint = { "rewrite" } },
  { "rename a policy (hint)", base = OWNED .. "ALTER TABLE docs ENABLE ROW LEVEL SECURITY;",
    x = "CREATE POLICY p1 ON docs USING (true);", y = "CREATE POLICY docs_all ON docs USING (true);",
    rename = "docs.p1=docs_all" },

  -- types, domains, sequences
  { "an enum and a column of it", x = T,
    y = "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');\n" .. T .. "ALTER TABLE t ADD COLUMN m mood DEFAULT 'ok';" },
  { "add enum values used by a default (transaction = false)",
    x = "CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE TABLE e (id int PRIMARY KEY, m mood);",
    y = "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'ecstatic'); "
      .. "CREATE TABLE e (id int PRIMARY KEY, m mood DEFAULT 'ecstatic');" },
  { "remove an enum value (the type created again)",
    x = "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); CREATE TABLE e (id int PRIMARY KEY, m mood DEFAULT 'ok', "
      .. "ms mood[]);",
    y = "CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE TABLE e (id int PRIMARY KEY, m mood DEFAULT 'happy', ms mood[]);",
    lint = { "rewrite" } },
  { "drop an enum", x = "CREATE TYPE mood AS ENUM ('a');", y = "" },
  { "a domain and a column of it", x = T,
    y = "CREATE DOMAIN email AS text CHECK (VALUE LIKE '_%@_%');\n" .. T .. "ALTER TABLE t ADD COLUMN e email;" },
  { "change a domain", x = "CREATE DOMAIN code AS text CHECK (length(VALUE) = 3);",
    y = "CREATE DOMAIN code AS text NOT NULL DEFAULT 'AAA' CONSTRAINT code_upper CHECK (VALUE ~ '^[A-Z]+$');" },
  { "a sequence with options", x = "",
    y = "CREATE SEQUENCE invoice_no AS integer START 1000 INCREMENT 10 MINVALUE 1000 MAXVALUE 999999 CACHE 5 CYCLE;" },
  { "change a sequence", x = "CREATE SEQUENCE invoice_no START 1000;",
    y = "CREATE SEQUENCE invoice_no START 5000 INCREMENT 2;" },
  { "a sequence owned by a column", x = T,
    y = T .. "CREATE SEQUENCE t_seq_counter; ALTER SEQUENCE t_seq_counter OWNED BY t.a;"
      .. "ALTER TABLE t ALTER a SET DEFAULT nextval('t_seq_counter');" },

  -- schemas and extensions
  { "a schema with a table", x = "",
    y = "CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY, name text NOT NULL);"
      .. "CREATE INDEX items_name ON app.items (name);" },
  { "drop a schema with a table", x = "CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY);", y = "",
    lint = { "destructive" } },
  { "an extension and a column of its type", x = T,
    y = "CREATE EXTENSION citext;\n" .. T .. "ALTER TABLE t ADD COLUMN email citext;" },

  -- privileges
  { "grant on a table", x = T, y = T .. "GRANT SELECT, INSERT, UPDATE ON t TO tide_corpus_app;" },
  { "revoke on a table", x = T .. "GRANT SELECT, INSERT, UPDATE, DELETE ON t TO tide_corpus_app;",
    y = T .. "GRANT SELECT ON t TO tide_corpus_app;" },
  { "a column privilege", x = T, y = T .. "GRANT SELECT (id, a), UPDATE (b) ON t TO tide_corpus_auditor;" },
  { "with grant option", x = T .. "GRANT SELECT ON t TO tide_corpus_app;",
    y = T .. "GRANT SELECT ON t TO tide_corpus_app WITH GRANT OPTION;" },
  { "EXECUTE revoked from PUBLIC", x = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
    y = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'; REVOKE EXECUTE ON FUNCTION f() FROM PUBLIC;"
      .. "GRANT EXECUTE ON FUNCTION f() TO tide_corpus_app;" },
  { "schema and sequence privileges", x = "CREATE SCHEMA app; CREATE SEQUENCE app.s;",
    y = "CREATE SCHEMA app; CREATE SEQUENCE app.s; GRANT USAGE ON SCHEMA app TO tide_corpus_app;"
      .. "GRANT USAGE, SELECT ON SEQUENCE app.s TO tide_corpus_app;" },

  -- comments
  { "comments", x = T .. "COMMENT ON COLUMN t.b IS 'old';",
    y = T .. "COMMENT ON TABLE t IS 'things'; COMMENT ON COLUMN t.b IS 'the thing''s name';"
      .. "COMMENT ON CONSTRAINT t_pkey ON t IS 'key';" },

  -- partitioning
  { "a partitioned table and partitions", x = "",
    y = "CREATE TABLE ev (id bigint NOT NULL, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);"
      .. "CREATE TABLE ev_2026 PARTITION OF ev FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');" },
  { "logged and storage options of an existing table", x = "CREATE UNLOGGED TABLE u (id int PRIMARY KEY);",
    y = "CREATE TABLE u (id int PRIMARY KEY) WITH (fillfactor = 80, autovacuum_enabled = false);" },
  { "attach a table as a partition", base = "CREATE TABLE ev (id bigint NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);",
    x = "CREATE TABLE ev_old (id bigint NOT NULL, at date NOT NULL);",
    y = "CREATE TABLE ev_old PARTITION OF ev FOR VALUES FROM ('2020-01-01') TO ('2026-01-01');" },
  { "add a partition", base = "CREATE TABLE ev (id bigint NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);",
    x = "CREATE TABLE ev_2026 PARTITION OF ev FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
    y = "CREATE TABLE ev_2026 PARTITION OF ev FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"
      .. "CREATE TABLE ev_2027 PARTITION OF ev FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');" },

  -- the seed application (001's SECURITY DEFINER helper is executable by PUBLIC until 003)
  { "seed: base -> 001", x = "", y = SEED_001, lint = { "definer_public" } },
  { "seed: 001 -> 002", x = SEED_001, y = SEED_002 },
  { "seed: base -> 002", x = "", y = SEED_002, lint = { "definer_public" } },
  { "seed: 002 -> a billing table with RLS, grants and a lookup function", x = SEED_002,
    y = SEED_002 .. [[
CREATE TABLE invoices (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  amount numeric(12,2) NOT NULL CHECK (amount > 0),
  created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ix_invoices_owner_id ON invoices (owner_id);
ALTER TABLE invoices ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE FUNCTION invoice_total(u bigint) RETURNS numeric LANGUAGE sql STABLE
  BEGIN ATOMIC SELECT coalesce(sum(amount), 0) FROM invoices WHERE owner_id = u; END;
CREATE POLICY invoices_owner_or_admin ON invoices
  USING (owner_id = (SELECT app_current_user_id()) OR (SELECT app_current_user_is_admin()))
  WITH CHECK (owner_id = (SELECT app_current_user_id()) OR (SELECT app_current_user_is_admin()));
GRANT SELECT, INSERT ON invoices TO tide_corpus_app;
REVOKE EXECUTE ON FUNCTION invoice_total(bigint) FROM PUBLIC;
]] },
  { "seed: 002 -> whitelist policy tightened, users' RLS no longer forced", x = SEED_002,
    y = (SEED_002:gsub("ALTER TABLE users ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;",
      "ALTER TABLE users ENABLE ROW LEVEL SECURITY;")
      :gsub("CREATE POLICY whitelist_grantee ON whitelist FOR SELECT USING %(user_id = %(SELECT app_current_user_id%(%)%)%);",
        "CREATE POLICY whitelist_grantee ON whitelist FOR SELECT TO tide_corpus_app USING "
          .. "(user_id = (SELECT app_current_user_id()) AND owner_id <> user_id);")), lint = { "rls_disable" } },
  { "seed: 002 -> vms.vmid becomes bigint under vms' policies", x = SEED_002,
    y = SEED_002:gsub("vmid integer NOT NULL", "vmid bigint NOT NULL"), lint = { "rewrite" } },
  { "seed: 002 -> base", x = SEED_002, y = "", lint = { "destructive" } },

  -- in combination
  { "a column, its index and a policy reading it", base = OWNED .. "ALTER TABLE docs ENABLE ROW LEVEL SECURITY;",
    x = "", y = "ALTER TABLE docs ADD COLUMN team_id bigint; CREATE INDEX docs_team ON docs (team_id);"
      .. "CREATE POLICY docs_team ON docs FOR SELECT USING (team_id = (SELECT me()));" },
  { "drop two tables that need each other",
    x = "CREATE TABLE a (id int PRIMARY KEY, b_id int); CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);"
      .. "ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b; ALTER TABLE a ENABLE ROW LEVEL SECURITY;"
      .. "CREATE POLICY a_b ON a USING (EXISTS (SELECT 1 FROM b WHERE b.a_id = a.id));", y = "",
    lint = { "destructive" } },
  { "rename a table that a foreign key and a view use (hint)",
    base = "CREATE TABLE p (id int PRIMARY KEY);",
    x = "CREATE TABLE c (id int PRIMARY KEY, p_id int REFERENCES p); CREATE VIEW cv AS SELECT id FROM c;",
    y = "CREATE TABLE child (id int PRIMARY KEY, p_id int REFERENCES p); CREATE VIEW cv AS SELECT id FROM child;",
    rename = "c=child" },
  { "many kinds at once", x = T,
    y = "CREATE SCHEMA rep; CREATE TYPE state AS ENUM ('new', 'done');\n"
      .. T:gsub("b text", "b text NOT NULL DEFAULT '', s state NOT NULL DEFAULT 'new'")
      .. "CREATE INDEX t_s ON t (s) WHERE s = 'new'; CREATE VIEW rep.open AS SELECT id, a FROM public.t WHERE s = 'new';"
      .. "GRANT USAGE ON SCHEMA rep TO tide_corpus_auditor; GRANT SELECT ON rep.open TO tide_corpus_auditor;"
      .. "COMMENT ON VIEW rep.open IS 'open items';" },
}
