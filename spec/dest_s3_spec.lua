-- spec/dest_s3_spec.lua: engine/dest_s3.c's multipart upload against the S3 stand-in
-- (spec/support/fake_s3.py): parts go up a bounded number at a time (libcurl's multi interface),
-- a failing part is retried on its own while the others stay in flight, and a part that fails
-- for good stops the others and aborts the upload. The journal of the stand-in numbers requests
-- as they arrive (seq) and lists them as they finish, which is what the order checks read.
local H = require "spec.support.helpers"
local core = require "tide.core"
local S3 = require "spec.support.s3"

local MiB = 1024 * 1024

-- A 22 MiB file of random bytes (five parts of 5 MiB) and its digests.
local function archive()
  local path = H.tmpdir() .. "/archive.dump"
  assert(os.execute(string.format("head -c %d /dev/urandom > %s", 22 * MiB, H.shell_quote(path))))
  local d = core.file_digest(path)
  return path, { sha256 = d.sha256, md5 = d.md5, size = d.size }
end

local function dest(prefix, parallel)
  return core.destination { url = "s3://backups/" .. prefix .. "/", endpoint = S3.endpoint,
    access_key_id = S3.AK, secret_access_key = S3.SK, region = "us-east-1", deadline = 30,
    backoff_base = 0.05, backoff_cap = 0.2, max_attempts = 4, multipart_threshold = 5 * MiB,
    part_size = 5 * MiB, parallel = parallel }
end

-- The part PUTs under prefix as the stand-in finished them: {part =, seq =, status =, done =}.
local function parts(prefix)
  local out = {}
  for i, e in ipairs(S3.log().journal) do
    local n = e.method == "PUT" and e.path:find("/backups/" .. prefix .. "/", 1, true)
      and e.query:match("partNumber=(%d+)")
    if n then
      out[#out + 1] = { part = tonumber(n), seq = e.seq, status = e.status, done = i }
    end
  end
  return out
end

-- The part the stand-in held: the first to arrive (the parts start together, in any order).
local function held(log)
  local first
  for _, p in ipairs(log) do
    if not first or p.seq < first.seq then
      first = p
    end
  end
  return first
end

local function find(list, pred)
  for _, x in ipairs(list) do
    if pred(x) then
      return x
    end
  end
end

-- The first part to arrive is held back 3 s by the stand-in before it reads it: whatever else
-- finishes meanwhile went up beside it.
local function hold_first_part(prefix, extra)
  local faults = { delay = { { method = "PUT", query = "partNumber", seconds = 3, count = 1,
    path = "/backups/" .. prefix .. "/" } } }
  for k, v in pairs(extra or {}) do
    v[1].path = "/backups/" .. prefix .. "/"
    faults[k] = v
  end
  S3.fault(faults)
end

describe("s3:// multipart upload", function()
  setup(function()
    S3.start()
  end)

  teardown(function()
    S3.stop()
    H.cleanup()
  end)

  after_each(function()
    S3.ctl("/__ctl/reset")
  end)

  it("sends the parts side by side: others finish while the first is held", function()
    local path, digests = archive()
    hold_first_part("side")
    local d <close> = dest("side", 4)
    local etag = d:put_file("b/archive.dump", path, digests)
    assert.matches("^%x+%-5$", etag)
    local log = parts("side")
    local first = held(log)
    -- a part that arrived after the first and finished before it
    assert.truthy(find(log, function(p)
      return p.part ~= first.part and p.seq > first.seq and p.done < first.done
    end), "no part went up beside the held one")
    local copy = H.tmpdir() .. "/copy"
    assert.are.equal(digests.sha256, d:get_file("b/archive.dump", copy).sha256)
  end)

  it("sends one part at a time with parallel = 1", function()
    local path, digests = archive()
    hold_first_part("serial")
    local d <close> = dest("serial", 1)
    d:put_file("b/archive.dump", path, digests)
    local log = parts("serial")
    assert.are.equal(5, #log)
    for i, p in ipairs(log) do
      assert.are.equal(i, p.part)
      assert.are.equal(i, p.seq - log[1].seq + 1, "each part arrives after the one before finished")
    end
  end)

  it("retries a failing part on its own while the others stay in flight", function()
    local path, digests = archive()
    hold_first_part("retry", { fail = { { method = "PUT", query = "partNumber", status = 500,
      code = "InternalError", count = 1 } } })
    local d <close> = dest("retry", 4)
    d:put_file("b/archive.dump", path, digests)
    local log = parts("retry")
    local first = held(log)
    local failed = assert(find(log, function(p)
      return p.status == 500
    end), "the injected 500")
    local retried = assert(find(log, function(p)
      return p.part == failed.part and p.status == 200
    end), "the failed part again")
    assert.are_not.equal(first.part, failed.part)
    assert.truthy(retried.seq > failed.seq)
    -- the retry went up and finished while the first part was still held
    assert.truthy(retried.seq > first.seq and retried.done < first.done)
    assert.truthy(first.seq < failed.seq)
    assert.are.equal(digests.size, d:head("b/archive.dump").size)
    assert.are.equal(0, S3.log().open_uploads)
  end)

  it("stops the parts in flight and aborts the upload when one fails for good", function()
    local path, digests = archive()
    hold_first_part("abort", { fail = { { method = "PUT", query = "partNumber", status = 403,
      code = "AccessDenied", count = 1 } } })
    local d <close> = dest("abort", 4)
    local ok, err = pcall(d.put_file, d, "b/archive.dump", path, digests)
    assert.is_false(ok)
    assert.are.equal("backup", err.kind)
    assert.matches("PUT part %d/5 of s3://backups/abort/b/archive%.dump: HTTP 403 AccessDenied", err.message)
    assert.matches("; the multipart upload was aborted$", err.message)
    local journal = S3.log().journal
    local abort_at
    for i, e in ipairs(journal) do
      if e.method == "DELETE" and e.query:find("uploadId=", 1, true) and e.path:find("/abort/", 1, true) then
        abort_at = abort_at or i
      end
    end
    assert.truthy(abort_at, "the upload was aborted")
    -- the abort did not wait for the held part: that one had not finished when the abort had
    local seen = {}
    for _, p in ipairs(parts("abort")) do
      if p.done < abort_at then
        seen[p.part] = true
      end
    end
    assert.truthy(not (seen[1] and seen[2] and seen[3] and seen[4] and seen[5]), "a part was still held")
    assert.are.equal(0, S3.log().open_uploads)
    assert.are.same({}, d:list())
  end)
end)
