#!/usr/bin/env python3
"""fake_s3.py - a small S3 stand-in for tide's loopback tests (Python 3 stdlib only).

It checks what real S3 checks, so a backup upload that passes here is signed and
framed the way AWS S3 expects. Run it with --self-test to check its own signer
against AWS's published SigV4 example values.

What it does (and s3rver 3.7.1 does not):
  * verifies AWS SigV4 header signatures (wrong secret -> 403 SignatureDoesNotMatch)
  * requires x-amz-content-sha256 (400 InvalidRequest, as AWS S3 does)
  * verifies a hex x-amz-content-sha256, Content-MD5 and x-amz-checksum-sha256 against the body
  * rejects PUT without Content-Length (Transfer-Encoding: chunked) with 501, as AWS S3 does
  * multipart: initiate / upload part / complete (checks part ETags, order, 5 MiB minimum)
    / abort / list in-progress uploads; multipart ETag is md5-of-md5s "-N"
  * GET / HEAD (single byte Range -> 206) / DELETE object, ListObjectsV2 (prefix only), PUT bucket
  * fault injection via POST /__ctl/fault (JSON), request journal via GET /__ctl/log
  * stops by itself after --max-seconds (default 600)

Not implemented: presigned (query) auth, aws-chunked streaming signatures, versioning,
multi-range GET, pagination.

Usage:
  python3 fake-s3.py --port 0 --bucket backups --access-key AK --secret-key SK \
      --region us-east-1 --dir DIR [--min-part-size 5242880] [--max-seconds 600]
  The first stdout line is "PORT <n>".

Fault JSON (all keys optional; counters decrement per matching request):
  {"fail": [{"method": "PUT", "query": "partNumber", "status": 500, "code": "InternalError", "count": 2}],
   # tide's copy: any fault may also carry "path": "/bucket/prefix/" (matches paths containing it)
   "drop": [{"method": "PUT", "after_bytes": 1000, "count": 1}],   # close socket mid-body
   "delay": [{"method": "PUT", "seconds": 3, "count": 1}],
   "stall": [{"method": "PUT", "after_bytes": 1000, "seconds": 5, "count": 1}],  # stop reading mid-body,
                                                                   # then drop (tide's copy: stall detection)
   "complete_200_error": 1}                                        # CompleteMultipartUpload -> 200 + <Error>

tide's copy (spec/support/fake_s3.py) of the project's S3 stand-in adds the "stall" fault,
--bearer TOKEN (plain HTTP PUT/GET/HEAD/DELETE with a bearer token, for http(s):// destinations),
and, for the backup specs:
  * "skip": N on any fault: the first N matching requests pass untouched, later ones take it
  * journal entries numbered in arrival order ("seq")
  * ListMultipartUploads (GET ?uploads) filtered by prefix, with each upload's Initiated time
  * POST /__ctl/age {"path": "/backups/x/", "seconds": 90000}: objects and unfinished uploads
    whose path contains "path" get that much older (LastModified, Initiated)
  * --proxy-auth USER:PASSWORD: also a forward proxy for itself (absolute-form request targets,
    Proxy-Authorization checked, 407 otherwise; journal entries say "proxied")
"""
import argparse, base64, datetime, hashlib, hmac, json, os, re, sys, tempfile, threading, time, uuid
import urllib.parse
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

UNRESERVED = "-_.~"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def uri_encode(s, keep_slash):
    return urllib.parse.quote(s, safe=UNRESERVED + ("/" if keep_slash else ""))


def canonical_query(raw_query):
    pairs = []
    if raw_query:
        for item in raw_query.split("&"):
            if item == "":
                continue
            k, _, v = item.partition("=")
            pairs.append((uri_encode(urllib.parse.unquote(k), False), uri_encode(urllib.parse.unquote(v), False)))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_request(method, raw_path, raw_query, headers, signed_headers, payload_hash):
    path = uri_encode(urllib.parse.unquote(raw_path), True) or "/"
    lines = []
    for h in signed_headers:
        vals = headers.get(h)
        if vals is None:
            return None
        lines.append(h + ":" + ",".join(re.sub(r"\s+", " ", v.strip()) for v in vals))
    return "\n".join([method, path, canonical_query(raw_query), "\n".join(lines) + "\n",
                      ";".join(signed_headers), payload_hash])


def signature(secret, date, region, service, amz_date, creq):
    def h(k, m):
        return hmac.new(k, m.encode(), hashlib.sha256).digest()
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, f"{date}/{region}/{service}/aws4_request",
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = h(h(h(h(("AWS4" + secret).encode(), date), region), service), "aws4_request")
    return hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()


class S3Error(Exception):
    def __init__(self, status, code, msg, extra=None):
        super().__init__(msg)
        self.status, self.code, self.msg, self.extra = status, code, msg, extra or {}


class State:
    def __init__(self, args):
        self.args, self.lock = args, threading.Lock()
        self.faults, self.journal, self.uploads = {}, [], {}
        self.seq = 0
        os.makedirs(os.path.join(args.dir, "objects"), exist_ok=True)
        os.makedirs(os.path.join(args.dir, "parts"), exist_ok=True)
        self.buckets = set(args.bucket or [])
        self.objects = {}  # (bucket, key) -> dict(path, etag, size, meta)

    def take_fault(self, kind, method, query, path=""):
        with self.lock:
            for f in self.faults.get(kind, []):
                if f.get("count", 1) <= 0:
                    continue
                if f.get("method", method) != method:
                    continue
                if f.get("path") is not None and f["path"] not in path:  # tide's copy: scope by path
                    continue
                if f.get("query") is not None and f["query"] not in query:
                    continue
                if f.get("skip", 0) > 0:  # tide's copy: let the first N matching requests through
                    f["skip"] -= 1
                    continue
                f["count"] = f.get("count", 1) - 1
                return f
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-s3-sigv4"

    def log_message(self, fmt, *a):
        if self.server.state.args.verbose:
            sys.stderr.write("fake-s3: " + (fmt % a) + "\n")

    # ---- plumbing -------------------------------------------------------
    def send(self, status, body=b"", headers=None, close=False):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if isinstance(body, str):
            body = body.encode()
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._status = status

    def send_error_xml(self, e):
        extra = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in e.extra.items())
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{e.code}</Code>'
                f"<Message>{escape(e.msg)}</Message>{extra}<RequestId>fake</RequestId></Error>")
        # If the body was not consumed, close the connection (like S3 does after an early error).
        self.send(e.status, body, {"Content-Type": "application/xml"}, close=not self._body_read)

    def drain_body(self):
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0 and not self._body_read:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
        self._body_read = True

    def read_body_to_file(self, after_drop=None, stall=None):
        """Stream the body to a temp file, hashing as we go. Returns (path, size, md5, sha256)."""
        te = self.headers.get("Transfer-Encoding")
        if te and te.lower() != "identity":
            raise S3Error(501, "NotImplemented", "A header you provided implies functionality that is not implemented",
                          {"Header": "Transfer-Encoding"})
        cl = self.headers.get("Content-Length")
        if cl is None:
            raise S3Error(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        remaining = int(cl)
        md5, sha = hashlib.md5(), hashlib.sha256()
        fd, path = tempfile.mkstemp(dir=os.path.join(self.server.state.args.dir, "parts"))
        got = 0
        with os.fdopen(fd, "wb") as out:
            while remaining > 0:
                chunk = self.rfile.read(min(1 << 20, remaining))
                if not chunk:
                    os.unlink(path)
                    self._body_read = True
                    raise S3Error(400, "IncompleteBody",
                                  "You did not provide the number of bytes specified by the Content-Length HTTP header")
                got += len(chunk)
                if stall is not None and got >= stall.get("after_bytes", 0):
                    time.sleep(stall.get("seconds", 5))
                    os.unlink(path)
                    raise ConnectionAbortedError("fault: stall")
                if after_drop is not None and got >= after_drop:
                    os.unlink(path)
                    raise ConnectionAbortedError("fault: drop")
                out.write(chunk); md5.update(chunk); sha.update(chunk)
                remaining -= len(chunk)
        self._body_read = True
        return path, got, md5, sha

    # ---- auth -----------------------------------------------------------
    def authenticate(self, raw_path, raw_query):
        args = self.server.state.args
        auth = self.headers.get("Authorization")
        if args.bearer and auth and auth.startswith("Bearer "):
            # a plain HTTP PUT destination with a bearer token (tide's http(s):// backups)
            if hmac.compare_digest(auth, "Bearer " + args.bearer):
                return
            raise S3Error(403, "AccessDenied", "Access Denied")
        if not auth:
            if args.allow_anonymous:
                return
            raise S3Error(403, "AccessDenied", "Access Denied")
        m = re.match(r"AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
                     r"SignedHeaders=([a-z0-9;\-]+),\s*Signature=([0-9a-f]{64})\s*$", auth)
        if not m:
            raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed.")
        ak, date, region, service, signed, sig = m.groups()
        if ak != args.access_key:
            raise S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
        if region != args.region or service != "s3":
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          f"The authorization header is malformed; the region/service '{region}/{service}' is wrong; "
                          f"expecting '{args.region}/s3'")
        psha = self.headers.get("x-amz-content-sha256")
        if psha is None:
            raise S3Error(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
        if psha.startswith("STREAMING-"):
            raise S3Error(501, "NotImplemented", "aws-chunked streaming signatures are not implemented by this fake")
        if psha != "UNSIGNED-PAYLOAD" and not re.fullmatch(r"[0-9a-f]{64}", psha):
            raise S3Error(400, "InvalidArgument",
                          "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, or a valid sha256 value.")
        amz_date = self.headers.get("x-amz-date")
        try:
            t = datetime.datetime.strptime(amz_date or "", "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            raise S3Error(403, "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
        if abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) > args.max_skew:
            raise S3Error(403, "RequestTimeTooSkewed",
                          "The difference between the request time and the current time is too large.")
        if amz_date[:8] != date:
            raise S3Error(403, "SignatureDoesNotMatch", "credential date does not match x-amz-date")
        hdrs = {}
        for k, v in self.headers.items():
            hdrs.setdefault(k.lower(), []).append(v)
        signed_list = signed.split(";")
        if "host" not in signed_list or signed_list != sorted(signed_list):
            raise S3Error(403, "SignatureDoesNotMatch", "SignedHeaders must include host and be sorted")
        creq = canonical_request(self.command, raw_path, raw_query, hdrs, signed_list, psha)
        if creq is None or not hmac.compare_digest(signature(args.secret_key, date, region, "s3", amz_date, creq), sig):
            raise S3Error(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature you provided. "
                          "Check your key and signing method.",
                          {"CanonicalRequest": creq or "(a signed header is missing)"})

    def check_digests(self, psha, md5, sha):
        if psha and re.fullmatch(r"[0-9a-f]{64}", psha) and psha != sha.hexdigest():
            raise S3Error(400, "XAmzContentSHA256Mismatch",
                          "The provided 'x-amz-content-sha256' header does not match what was computed.")
        cmd5 = self.headers.get("Content-MD5")
        if cmd5 is not None:
            try:
                want = base64.b64decode(cmd5, validate=True)
            except Exception:
                want = b""
            if len(want) != 16:
                raise S3Error(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
            if want != md5.digest():
                raise S3Error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
        csha = self.headers.get("x-amz-checksum-sha256")
        if csha is not None and csha != base64.b64encode(sha.digest()).decode():
            raise S3Error(400, "BadDigest", "The SHA256 you specified did not match the calculated checksum.")

    # ---- dispatch -------------------------------------------------------
    def handle_any(self):
        st = self.server.state
        self._body_read = self.command in ("GET", "HEAD") or self.headers.get("Content-Length") in (None, "0")
        self._status = None
        target, proxied = self.path, False
        if target.startswith("http://"):  # tide's copy: a forward proxy's absolute-form target
            target, proxied = "/" + target[len("http://"):].partition("/")[2], True
        raw_path, _, raw_query = target.partition("?")
        query = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
        with st.lock:
            st.seq += 1
            seq = st.seq
        entry = {"seq": seq, "method": self.command, "path": raw_path, "query": raw_query, "proxied": proxied,
                 "content_length": self.headers.get("Content-Length"),
                 "signed_headers": (re.search(r"SignedHeaders=([^,]+)", self.headers.get("Authorization", "")) or [None, None])[1]}
        try:
            if raw_path.startswith("/__ctl/"):
                return self.control(raw_path)
            if st.args.proxy_auth and proxied:
                want = "Basic " + base64.b64encode(st.args.proxy_auth.encode()).decode()
                if self.headers.get("Proxy-Authorization") != want:
                    self.drain_body()
                    self._status = 407
                    return self.send(407, b"", {"Proxy-Authenticate": 'Basic realm="fake"'})
            d = st.take_fault("delay", self.command, query, raw_path)
            if d:
                time.sleep(d.get("seconds", 1))
            self.authenticate(raw_path, raw_query)
            f = st.take_fault("fail", self.command, query, raw_path)
            if f:
                # An injected server error answers after the request body, as S3's 500s do:
                # answering mid-body would make the client's view (HTTP 500 or a broken pipe)
                # a race, and the specs flaky.
                self.drain_body()
                raise S3Error(f.get("status", 500), f.get("code", "InternalError"), "injected failure")
            parts = urllib.parse.unquote(raw_path).lstrip("/").split("/", 1)
            bucket, key = parts[0], (parts[1] if len(parts) > 1 else "")
            if not bucket:
                raise S3Error(400, "InvalidRequest", "bucket required")
            if self.command == "PUT" and not key:
                st.buckets.add(bucket)
                return self.send(200)
            if bucket not in st.buckets:
                raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist")
            if not key:
                if self.command == "GET" and "uploads" in query:
                    return self.list_uploads(bucket, query.get("prefix", [""])[0])
                if self.command == "GET":
                    return self.list_v2(bucket, query.get("prefix", [""])[0])
                raise S3Error(405, "MethodNotAllowed", "not supported by fake")
            drop = st.take_fault("drop", self.command, query, raw_path)
            self._stall = st.take_fault("stall", self.command, query, raw_path) if self.command == "PUT" else None
            if self.command == "PUT" and "uploadId" in query:
                return self.upload_part(bucket, key, query, drop)
            if self.command == "PUT":
                return self.put_object(bucket, key, drop)
            if self.command == "POST" and "uploads" in query:
                return self.initiate(bucket, key)
            if self.command == "POST" and "uploadId" in query:
                return self.complete(bucket, key, query["uploadId"][0])
            if self.command == "DELETE" and "uploadId" in query:
                return self.abort(query["uploadId"][0])
            if self.command in ("GET", "HEAD"):
                return self.get_object(bucket, key)
            if self.command == "DELETE":
                with st.lock:
                    o = st.objects.pop((bucket, key), None)
                if o:
                    os.unlink(o["path"])
                return self.send(204)
            raise S3Error(405, "MethodNotAllowed", "not supported by fake")
        except S3Error as e:
            self.send_error_xml(e)
        except ConnectionAbortedError:
            self.close_connection = True
            self._status = "dropped"
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
        finally:
            entry["status"] = self._status
            with st.lock:
                st.journal.append(entry)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    # ---- operations -----------------------------------------------------
    def put_object(self, bucket, key, drop):
        path, size, md5, sha = self.read_body_to_file(drop.get("after_bytes", 0) if drop else None, self._stall)
        try:
            self.check_digests(self.headers.get("x-amz-content-sha256"), md5, sha)
        except S3Error:
            os.unlink(path)
            raise
        etag = md5.hexdigest()
        self.store(bucket, key, path, etag, size)
        self.send(200, b"", {"ETag": f'"{etag}"'})

    def store(self, bucket, key, path, etag, size):
        st = self.server.state
        final = os.path.join(st.args.dir, "objects", uuid.uuid4().hex)
        os.replace(path, final)
        meta = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-amz-meta-")}
        now = time.time()
        with st.lock:
            old = st.objects.get((bucket, key))
            st.objects[(bucket, key)] = {"path": final, "etag": etag, "size": size, "meta": meta, "mtime_ts": now,
                                         "mtime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))}
        if old:
            os.unlink(old["path"])

    def get_object(self, bucket, key):
        st = self.server.state
        with st.lock:
            o = st.objects.get((bucket, key))
        if not o:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.", {"Key": key})
        size, status = o["size"], 200
        start, end = 0, size - 1
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if m and (m[1] or m[2]) and not (m[1] and m[2] and int(m[2]) < int(m[1])):
            # one byte range -> 206; multiple ranges or bad syntax are ignored (200, whole object) as S3 does
            if m[1]:
                start, end = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1)
            else:
                start = max(0, size - int(m[2]))
            if start >= size:
                raise S3Error(416, "InvalidRange", "The requested range is not satisfiable",
                              {"RangeRequested": m[0], "ActualObjectSize": size})
            status = 206
        self.send_response(status)
        self.send_header("ETag", f'"{o["etag"]}"')
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Last-Modified", self.date_time_string(o["mtime_ts"]))
        for k, v in o["meta"].items():
            self.send_header(k, v)
        self.end_headers()
        self._status = status
        if self.command == "GET":
            with open(o["path"], "rb") as f:
                f.seek(start)
                remaining = end - start + 1
                while remaining > 0:
                    b = f.read(min(1 << 20, remaining))
                    if not b:
                        break
                    self.wfile.write(b)
                    remaining -= len(b)

    def initiate(self, bucket, key):
        st = self.server.state
        uid = uuid.uuid4().hex
        with st.lock:
            st.uploads[uid] = {"bucket": bucket, "key": key, "parts": {}, "initiated": time.time()}
        self.send(200, f'<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult>'
                       f"<Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key><UploadId>{uid}</UploadId>"
                       f"</InitiateMultipartUploadResult>", {"Content-Type": "application/xml"})

    def upload_part(self, bucket, key, query, drop):
        st = self.server.state
        uid = query["uploadId"][0]
        try:
            n = int(query.get("partNumber", ["0"])[0])
        except ValueError:
            n = 0
        if not 1 <= n <= 10000:
            raise S3Error(400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive")
        with st.lock:
            up = st.uploads.get(uid)
        if not up or up["key"] != key or up["bucket"] != bucket:
            raise S3Error(404, "NoSuchUpload", "The specified upload does not exist.")
        path, size, md5, sha = self.read_body_to_file(drop.get("after_bytes", 0) if drop else None, self._stall)
        try:
            self.check_digests(self.headers.get("x-amz-content-sha256"), md5, sha)
        except S3Error:
            os.unlink(path)
            raise
        with st.lock:
            old = up["parts"].get(n)
            up["parts"][n] = {"path": path, "md5": md5.digest(), "size": size}
        if old:
            os.unlink(old["path"])
        self.send(200, b"", {"ETag": f'"{md5.hexdigest()}"'})

    def complete(self, bucket, key, uid):
        st = self.server.state
        path, size, md5, sha = self.read_body_to_file()
        self.check_digests(self.headers.get("x-amz-content-sha256"), md5, sha)
        with open(path, "rb") as f:
            body = f.read()
        os.unlink(path)
        try:  # child elements may come in any order (botocore sends ETag before PartNumber)
            fields = [{c.tag.rsplit("}", 1)[-1]: (c.text or "").strip() for c in p}
                      for p in ET.fromstring(body) if p.tag.rsplit("}", 1)[-1] == "Part"]
            listed = [(int(f["PartNumber"]), f["ETag"].strip('"')) for f in fields]
        except (ET.ParseError, KeyError, ValueError):
            listed = []
        if not listed:
            raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed or did not validate "
                                               "against our published schema")
        with st.lock:
            up = st.uploads.get(uid)
        if not up or up["key"] != key:
            raise S3Error(404, "NoSuchUpload", "The specified upload does not exist.")
        if [n for n, _ in listed] != sorted({n for n, _ in listed}):
            raise S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order.")
        for i, (n, etag) in enumerate(listed):
            p = up["parts"].get(n)
            if not p or p["md5"].hex() != etag:
                raise S3Error(400, "InvalidPart", "One or more of the specified parts could not be found or the "
                                                  "specified entity tag might not have matched the part's entity tag.")
            if i < len(listed) - 1 and p["size"] < st.args.min_part_size:
                raise S3Error(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size")
        if self._take_simple("complete_200_error"):
            return self.send(200, '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
                                  "<Message>We encountered an internal error. Please try again.</Message></Error>",
                             {"Content-Type": "application/xml"})
        fd, out_path = tempfile.mkstemp(dir=os.path.join(st.args.dir, "parts"))
        total = 0
        with os.fdopen(fd, "wb") as out:
            for n, _ in listed:
                with open(up["parts"][n]["path"], "rb") as f:
                    while True:
                        b = f.read(1 << 20)
                        if not b:
                            break
                        out.write(b); total += len(b)
        etag = hashlib.md5(b"".join(up["parts"][n]["md5"] for n, _ in listed)).hexdigest() + f"-{len(listed)}"
        self.store(bucket, key, out_path, etag, total)
        self.abort(uid, respond=False)
        self.send(200, f'<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult>'
                       f"<Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key><ETag>&quot;{etag}&quot;</ETag>"
                       f"</CompleteMultipartUploadResult>", {"Content-Type": "application/xml"})

    def _take_simple(self, name):
        st = self.server.state
        with st.lock:
            v = st.faults.get(name)
            if isinstance(v, int) and v > 0:
                st.faults[name] = v - 1
                return True
        return False

    def abort(self, uid, respond=True):
        st = self.server.state
        with st.lock:
            up = st.uploads.pop(uid, None)
        if up is None and respond:
            raise S3Error(404, "NoSuchUpload", "The specified upload does not exist.")
        for p in (up or {}).get("parts", {}).values():
            try:
                os.unlink(p["path"])
            except FileNotFoundError:
                pass
        if respond:
            self.send(204)

    def list_uploads(self, bucket, prefix=""):
        st = self.server.state
        with st.lock:
            ups = [(u, v["key"], v["initiated"]) for u, v in st.uploads.items()
                   if v["bucket"] == bucket and v["key"].startswith(prefix)]
        items = "".join(f"<Upload><Key>{escape(k)}</Key><UploadId>{u}</UploadId><Initiated>"
                        f"{time.strftime('%Y-%m-%dT%H:%M:%S.000Z', time.gmtime(t))}</Initiated></Upload>"
                        for u, k, t in ups)
        self.send(200, f'<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult>'
                       f"<Bucket>{escape(bucket)}</Bucket>{items}</ListMultipartUploadsResult>",
                  {"Content-Type": "application/xml"})

    def list_v2(self, bucket, prefix):
        st = self.server.state
        with st.lock:
            objs = sorted((k, o) for (b, k), o in st.objects.items() if b == bucket and k.startswith(prefix))
        items = "".join(f"<Contents><Key>{escape(k)}</Key><LastModified>{o['mtime']}</LastModified>"
                        f"<ETag>&quot;{o['etag']}&quot;</ETag><Size>{o['size']}</Size></Contents>" for k, o in objs)
        self.send(200, f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>{escape(bucket)}</Name>'
                       f"<Prefix>{escape(prefix)}</Prefix><KeyCount>{len(objs)}</KeyCount>"
                       f"<IsTruncated>false</IsTruncated>{items}</ListBucketResult>",
                  {"Content-Type": "application/xml"})

    def control(self, raw_path):
        st = self.server.state
        if raw_path == "/__ctl/fault" and self.command == "POST":
            n = int(self.headers.get("Content-Length", "0"))
            data = json.loads(self.rfile.read(n) or b"{}")
            self._body_read = True
            with st.lock:
                st.faults = data
            return self.send(200, b"ok\n")
        if raw_path == "/__ctl/log":
            with st.lock:
                body = json.dumps({"journal": st.journal, "open_uploads": len(st.uploads)}, indent=1)
            return self.send(200, body, {"Content-Type": "application/json"})
        if raw_path == "/__ctl/age" and self.command == "POST":  # tide's copy: make things older
            n = int(self.headers.get("Content-Length", "0"))
            data = json.loads(self.rfile.read(n) or b"{}")
            self._body_read = True
            part, seconds = data.get("path", ""), float(data.get("seconds", 0))
            with st.lock:
                for (b, k), o in st.objects.items():
                    if part in f"/{b}/{k}":
                        o["mtime_ts"] -= seconds
                        o["mtime"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(o["mtime_ts"]))
                for u in st.uploads.values():
                    if part in f"/{u['bucket']}/{u['key']}":
                        u["initiated"] -= seconds
            return self.send(200, b"ok\n")
        if raw_path == "/__ctl/reset" and self.command == "POST":
            with st.lock:
                st.journal.clear(); st.faults = {}
            return self.send(200, b"ok\n")
        raise S3Error(404, "NoSuchKey", "unknown control path")


def self_test():
    """AWS's published SigV4 examples (GET Object with Range; ListObjects with query)."""
    sk = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    h = {"host": ["examplebucket.s3.amazonaws.com"], "range": ["bytes=0-9"],
         "x-amz-content-sha256": [EMPTY_SHA], "x-amz-date": ["20130524T000000Z"]}
    creq = canonical_request("GET", "/test.txt", "", h, ["host", "range", "x-amz-content-sha256", "x-amz-date"], EMPTY_SHA)
    assert signature(sk, "20130524", "us-east-1", "s3", "20130524T000000Z", creq) == \
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    h = {"host": ["examplebucket.s3.amazonaws.com"], "x-amz-content-sha256": [EMPTY_SHA],
         "x-amz-date": ["20130524T000000Z"]}
    creq = canonical_request("GET", "/", "prefix=J&max-keys=2", h, ["host", "x-amz-content-sha256", "x-amz-date"], EMPTY_SHA)
    assert signature(sk, "20130524", "us-east-1", "s3", "20130524T000000Z", creq) == \
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    print("self-test OK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bucket", action="append")
    ap.add_argument("--access-key", default="AKIDTEST")
    ap.add_argument("--secret-key", default="test-secret")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--min-part-size", type=int, default=5 * 1024 * 1024)
    ap.add_argument("--max-skew", type=int, default=900)
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--allow-anonymous", action="store_true")
    ap.add_argument("--bearer", default=None, help="also accept 'Authorization: Bearer TOKEN' (tide's copy)")
    ap.add_argument("--proxy-auth", default=None, help="USER:PASSWORD a proxied request must carry (tide's copy)")
    ap.add_argument("--tls-cert", default=None, help="serve HTTPS with this certificate (PEM) ...")
    ap.add_argument("--tls-key", default=None, help="... and this key (tide's copy: TLS verification specs)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if args.address not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("refusing to bind outside loopback")
    args.dir = args.dir or tempfile.mkdtemp(prefix="fake-s3-")
    srv = ThreadingHTTPServer((args.address, args.port), Handler)
    srv.daemon_threads = True
    if args.tls_cert:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.state = State(args)
    print(f"PORT {srv.server_address[1]}", flush=True)
    threading.Timer(args.max_seconds, srv.shutdown).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
