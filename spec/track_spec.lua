-- spec/track_spec.lua: tide.track (lua/tide/track.lua): the in-place upgrade of an older
-- tracking schema, against the sandbox server.
local H = require "spec.support.helpers"

describe("tide.track #db format upgrade", function()
  after_each(H.cleanup)

  it("upgrades a format 1 tracking schema in place under the lock, keeping its rows", function()
    local db = H.fresh_db()
    -- The layout tide wrote before format 2, with one applied revision.
    H.sql(db, [[
CREATE SCHEMA tide;
CREATE TABLE tide.revision (revision text PRIMARY KEY, message text NOT NULL, checksum text NOT NULL,
  checksum_algorithm integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  applied_by text NOT NULL, duration_ms double precision NOT NULL, source text NOT NULL);
CREATE TABLE tide.history (id bigserial PRIMARY KEY, run_id text NOT NULL, revision text,
  direction text NOT NULL CHECK (direction IN ('upgrade', 'downgrade', 'stamp', 'unstamp')),
  outcome text NOT NULL CHECK (outcome IN ('applied', 'failed')), started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT clock_timestamp(), duration_ms double precision NOT NULL,
  checksum text, error text, sqlstate text, db_user text NOT NULL DEFAULT CURRENT_USER, os_user text NOT NULL,
  host text NOT NULL, tide_version text NOT NULL, backup text, note text);
COMMENT ON SCHEMA tide IS 'tide migration state (format 1)';
CREATE TABLE t1 (id int PRIMARY KEY);
]])
    local dir = H.project(H.chain(2))
    local source = H.read(dir .. "/versions/001_t1.lua")
    local revisions = require "tide.revisions"
    H.sql(db, "INSERT INTO tide.revision VALUES ('001', 'create t1', $1, 1, now(), 'x@y', 1, $2)",
      revisions.checksum(source), source)
    -- the lock-free read of a format 1 schema works (status), then upgrade converts it
    local st = H.tide({ "status", "--url", db.url }, { dir = dir })
    assert.equal(0, st.code, st.stderr)
    assert.matches("%[x%] 001", st.stdout)
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.same({ "001", "002" }, H.applied(db))
    assert.equal("tide migration state (format 3)",
      H.sql(db, "SELECT obj_description('tide'::regnamespace, 'pg_namespace') AS c")[1].c)
    assert.equal(1, #H.sql(db, "SELECT 1 FROM pg_attribute WHERE attrelid = 'tide.revision'::regclass "
      .. "AND attname = 'state'"))
  end)

  it("upgrades a format 2 schema to format 3 (the backup's checksum in history) when something runs", function()
    local db = H.fresh_db()
    local dir = H.project(H.chain(1))
    assert.equal(0, H.tide({ "upgrade", "--url", db.url }, { dir = dir }).code)
    -- back to the layout of format 2: no backup_sha256 and backup_size in history
    H.sql(db, "ALTER TABLE tide.history DROP COLUMN backup_sha256, DROP COLUMN backup_size; "
      .. "COMMENT ON SCHEMA tide IS 'tide migration state (format 2)';")
    -- nothing pending: the lock-free read works with format 2 and changes nothing
    local r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.matches("nothing to do", r.output)
    assert.equal("tide migration state (format 2)",
      H.sql(db, "SELECT obj_description('tide'::regnamespace, 'pg_namespace') AS c")[1].c)
    -- something pending: the upgrade brings the layout to format 3 under the lock
    H.write(dir .. "/versions/002_t2.lua", H.chain(2)["002_t2.lua"])
    r = H.tide({ "upgrade", "--url", db.url }, { dir = dir })
    assert.equal(0, r.code, r.stderr)
    assert.same({ "001", "002" }, H.applied(db))
    assert.equal("tide migration state (format 3)",
      H.sql(db, "SELECT obj_description('tide'::regnamespace, 'pg_namespace') AS c")[1].c)
    assert.equal(2, #H.sql(db, "SELECT 1 FROM pg_attribute WHERE attrelid = 'tide.history'::regclass "
      .. "AND attname IN ('backup_sha256', 'backup_size') AND NOT attisdropped"))
  end)
end)
