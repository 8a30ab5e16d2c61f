/* dest_s3.c: the s3://bucket/prefix/ destination: the HTTP transport (http.c) with tide's own
 * SigV4 (sigv4.c) on every request, a signed payload hash and Content-MD5 on every body, a
 * multipart upload above a threshold (equal parts, a bounded number in flight at once, each
 * retried on its own, aborted on failure), 200-with-<Error> taken as the failure it is, and
 * listings through ListObjectsV2 (s3xml.c). AWS_ENDPOINT_URL selects a non-AWS endpoint with
 * path-style addressing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "http.h"
#include "s3xml.h"

typedef struct s3_dest {
  tide_http http;
  char *base_path; /* decoded: /prefix/ or /bucket/prefix/ (path style) */
  char *bucket;
  char *list_path, *key_prefix; /* the bucket's path and the keys' prefix, for ListObjectsV2 */
  char *access_key, *secret_key, *session_token, *region, *ca_file;
} s3_dest;

static char *dupz(const char *s) {
  return s && *s ? strdup(s) : NULL;
}

static char *object_path(const s3_dest *s, const char *name, tide_error *err) {
  size_t n = strlen(s->base_path) + strlen(name) + 1;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s%s", s->base_path, name);
  else
    tide_error_set(err, NULL, "out of memory");
  return p;
}

/* ---- every request: signature and error documents ------------------------------------------- */

static int sign(void *ud, const tide_http_request *rq, struct curl_slist **hdrs, tide_error *err) {
  s3_dest *s = ud;
  tide_sigv4_header sh[6];
  size_t n = 0;
  tide_sigv4_request sr;
  tide_sigv4_credentials cred = {s->access_key, s->secret_key, s->region, "s3"};
  tide_sigv4_result sig = {0};
  const char *payload = rq->payload_sha256
                            ? rq->payload_sha256
                            : "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  char amz_date[17], line[2048];
  int rc = -1;
  tide_sigv4_amz_date(time(NULL), amz_date);
  sh[n++] = (tide_sigv4_header){"host", s->http.host};
  sh[n++] = (tide_sigv4_header){"x-amz-date", amz_date};
  sh[n++] = (tide_sigv4_header){"x-amz-content-sha256", payload};
  if (rq->content_md5)
    sh[n++] = (tide_sigv4_header){"content-md5", rq->content_md5};
  if (s->session_token)
    sh[n++] = (tide_sigv4_header){"x-amz-security-token", s->session_token};
  sr = (tide_sigv4_request){rq->method, rq->path, rq->query, sh, n, payload, amz_date, 0};
  if (tide_sigv4_sign(&sr, &cred, &sig, err) != 0)
    goto cleanup;
#define ADD_HEADER(...)                                                                            \
  do {                                                                                             \
    struct curl_slist *l_;                                                                         \
    snprintf(line, sizeof line, __VA_ARGS__);                                                      \
    if (!(l_ = curl_slist_append(*hdrs, line)))                                                    \
      goto oom;                                                                                    \
    *hdrs = l_;                                                                                    \
  } while (0)
  ADD_HEADER("Host: %s", s->http.host);
  ADD_HEADER("x-amz-date: %s", amz_date);
  ADD_HEADER("x-amz-content-sha256: %s", payload);
  if (s->session_token) {
    struct curl_slist *l_;
    size_t len = strlen(s->session_token) + 32;
    char *t = malloc(len);
    if (!t)
      goto oom;
    snprintf(t, len, "x-amz-security-token: %s", s->session_token);
    l_ = curl_slist_append(*hdrs, t);
    memset(t, 0, len);
    free(t);
    if (!l_)
      goto oom;
    *hdrs = l_;
  }
  ADD_HEADER("Authorization: %s", sig.authorization);
#undef ADD_HEADER
  rc = 0;
  goto cleanup;
oom:
  tide_error_set(err, NULL, "out of memory");
cleanup:
  memset(line, 0, sizeof line);
  tide_sigv4_result_free(&sig);
  return rc;
}

/* Whether a 2xx response is an S3 error document in disguise: S3 answers a late failure of
 * CompleteMultipartUpload with 200 and an <Error> body. Only a request that is not a GET or
 * HEAD can get one, and only a body whose root element is <Error>: an object read back (a
 * manifest naming a database "<Error>") is data, whatever it says. */
static int error_in_2xx(const tide_http_request *rq, const tide_http_response *rs) {
  const char *p = rs->body.p;
  if (!p || rs->status / 100 != 2 || strcmp(rq->method, "GET") == 0 ||
      strcmp(rq->method, "HEAD") == 0)
    return 0;
  p += strspn(p, " \t\r\n");
  if (strncmp(p, "<?xml", 5) == 0 && (p = strstr(p, "?>")))
    p += 2 + strspn(p + 2, " \t\r\n");
  return p && strncmp(p, "<Error>", 7) == 0;
}

/* An S3 error document's Code; a successful GET's body is the object, not XML. */
static int error_code(void *ud, const tide_http_request *rq, const tide_http_response *rs,
                      char *code, size_t codesz) {
  int disguised = error_in_2xx(rq, rs);
  (void)ud;
  code[0] = '\0';
  if (rs->body.p && (rs->status / 100 != 2 || disguised))
    tide_xml_value(rs->body.p, "Code", code, codesz, NULL);
  return disguised;
}

/* ---- open and close -------------------------------------------------------------------------- */

static void s3_close(tide_dest *dst) {
  s3_dest *s = dst->state;
  if (!s)
    return;
  tide_http_free(&s->http);
  if (s->secret_key)
    memset(s->secret_key, 0, strlen(s->secret_key));
  if (s->session_token)
    memset(s->session_token, 0, strlen(s->session_token));
  free(s->base_path);
  free(s->bucket);
  free(s->list_path);
  free(s->key_prefix);
  free(s->access_key);
  free(s->secret_key);
  free(s->session_token);
  free(s->region);
  free(s->ca_file);
  free(s);
}

static int s3_open(tide_dest *dst, const char *url, tide_error *err) {
  const tide_dest_opts *o = dst->given;
  const char *b = url + strlen("s3://"), *slash = strchr(b, '/');
  const char *prefix = slash ? slash + 1 : "", *sep;
  size_t plen = strlen(prefix);
  char *tmp;
  s3_dest *s = calloc(1, sizeof *s);
  if (!(dst->state = s))
    return -1;
  s->access_key = o->access_key ? strdup(o->access_key) : NULL;
  s->secret_key = o->secret_key ? strdup(o->secret_key) : NULL;
  s->session_token = dupz(o->session_token);
  s->region = strdup(o->region && *o->region ? o->region : "us-east-1");
  s->ca_file = dupz(o->ca_file);
  if (!s->region || (o->access_key && !s->access_key) || (o->secret_key && !s->secret_key) ||
      (o->session_token && *o->session_token && !s->session_token) ||
      (o->ca_file && *o->ca_file && !s->ca_file))
    return -1;
  sep = plen && prefix[plen - 1] != '/' ? "/" : "";
  s->bucket = slash ? strndup(b, (size_t)(slash - b)) : strdup(b);
  if (!s->bucket || !*s->bucket || strchr(s->bucket, '?')) {
    tide_error_set(err, NULL, "s3 destinations look like s3://bucket/prefix/");
    return -1;
  }
  if (o->endpoint && *o->endpoint) {
    /* a non-AWS endpoint: path-style addressing, /bucket/prefix/... */
    if (tide_http_parse_url(o->endpoint, &s->http.origin, &s->http.host, &s->base_path, err) != 0) {
      tide_error_set(err, NULL, "AWS_ENDPOINT_URL is not a valid http(s) URL");
      return -1;
    }
    tmp = malloc(strlen(s->base_path) + strlen(s->bucket) + plen + 4);
    s->list_path = malloc(strlen(s->base_path) + strlen(s->bucket) + 1);
    if (!tmp || !s->list_path) {
      free(tmp);
      return -1;
    }
    sprintf(tmp, "%s%s/%s%s", s->base_path, s->bucket, prefix, sep);
    sprintf(s->list_path, "%s%s", s->base_path, s->bucket);
  } else {
    size_t n = strlen(s->bucket) + strlen(s->region) + 40;
    s->http.host = malloc(n);
    s->http.origin = malloc(n + 8);
    if (!s->http.host || !s->http.origin)
      return -1;
    snprintf(s->http.host, n, "%s.s3.%s.amazonaws.com", s->bucket, s->region);
    snprintf(s->http.origin, n + 8, "https://%s", s->http.host);
    tmp = malloc(plen + 3);
    s->list_path = strdup("/");
    if (!tmp || !s->list_path) {
      free(tmp);
      return -1;
    }
    sprintf(tmp, "/%s%s", prefix, sep);
  }
  free(s->base_path);
  s->base_path = tmp;
  if (!(s->key_prefix = malloc(plen + 2)))
    return -1;
  sprintf(s->key_prefix, "%s%s", prefix, sep);
  if (!(dst->display = malloc(strlen(s->bucket) + plen + 8)))
    return -1;
  sprintf(dst->display, "s3://%s/%s%s", s->bucket, prefix, sep);
  if (!s->access_key || !*s->access_key || !s->secret_key || !*s->secret_key) {
    tide_error_set(err, NULL,
                   "%s: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                   "backup.access_key_id / backup.secret_access_key)",
                   dst->display);
    return -1;
  }
  s->http.hooks = (tide_http_hooks){sign, error_code, s};
  return tide_http_init(&s->http, &dst->o, s->ca_file, err);
}

/* ---- multipart ------------------------------------------------------------------------------- */

/* Aborts one multipart upload; note says why when that fails too. */
static void abort_upload(tide_dest *dst, const char *path, const char *upload_id, char *note,
                         size_t notesz) {
  s3_dest *s = dst->state;
  char query[1100];
  tide_http_request rq;
  tide_http_response rs;
  tide_error err = {0};
  char *enc = tide_sigv4_uri_encode(upload_id, 0);
  memset(&rs, 0, sizeof rs);
  snprintf(query, sizeof query, "uploadId=%s", enc ? enc : "");
  tide_http_request_init(&rq, "DELETE", path, query);
  /* a short deadline of its own: the main one may be spent already */
  if (!enc || tide_http_perform(&s->http, &rq, &rs, tide_now() + 60, 1,
                                "abort of the multipart upload", &err) != 0)
    snprintf(note, notesz,
             "; the abort failed too (%.600s): remove the upload's parts with a lifecycle rule",
             enc ? err.message : "out of memory");
  free(enc);
  tide_http_response_free(&rs);
}

typedef struct part {
  char sha[65], md5_b64[32], etag[128];
  unsigned char md5[16];
  char *query;
} part;

typedef struct upload {
  tide_dest *dst;
  const char *path, *enc_id;
  int fd;
  unsigned long long size, part_size, nparts;
  part *parts;
} upload;

static int prepare_part(void *ud, size_t i, tide_http_request *rq, char *what, size_t whatsz,
                        tide_error *err) {
  upload *up = ud;
  s3_dest *s = up->dst->state;
  part *p = &up->parts[i];
  off_t off = (off_t)(i * up->part_size);
  unsigned long long len = i + 1 < up->nparts ? up->part_size : up->size - i * up->part_size;
  size_t qlen = strlen(up->enc_id) + 48;
  if (tide_digest_range(up->fd, NULL, off, len, p->sha, p->md5, err) != 0)
    return -1;
  tide_base64(p->md5, 16, p->md5_b64);
  if (!(p->query = malloc(qlen))) {
    tide_error_set(err, NULL, "out of memory");
    return -1;
  }
  snprintf(p->query, qlen, "partNumber=%zu&uploadId=%s", i + 1, up->enc_id);
  snprintf(what, whatsz, "PUT part %zu/%llu of %s%s", i + 1, up->nparts, up->dst->display,
           up->path + strlen(s->base_path));
  rq->method = "PUT";
  rq->path = up->path;
  rq->query = p->query;
  rq->fd = up->fd;
  rq->offset = off;
  rq->length = len;
  rq->has_body = 1;
  rq->payload_sha256 = p->sha;
  rq->content_md5 = p->md5_b64;
  rq->progress_base = i * up->part_size;
  rq->progress_total = up->size;
  return 0;
}

static int part_done(void *ud, size_t i, const tide_http_response *rs, const char *what,
                     tide_error *err) {
  upload *up = ud;
  part *p = &up->parts[i];
  free(p->query);
  p->query = NULL;
  if (!rs->etag[0]) {
    tide_error_set(err, NULL, "%s: no ETag in the response", what);
    return -1;
  }
  snprintf(p->etag, sizeof p->etag, "%s", rs->etag);
  return 0;
}

static int multipart(tide_dest *dst, const char *path, const tide_dest_stream *st, char *etag_out,
                     size_t etag_sz, tide_error *err) {
  int fd = st->fd;
  unsigned long long size = st->size;
  s3_dest *s = dst->state;
  upload up = {dst, path, NULL, fd, size, dst->o.part_size, 0, NULL};
  tide_http_batch batch = {0, dst->o.parallel, prepare_part, part_done, &up};
  char upload_id[1024] = "", *enc_id = NULL, *query = NULL, what[700], sha[65], md5_b64[32],
       note[900] = "";
  const char *name = path + strlen(s->base_path);
  unsigned char md5[16];
  char(*etags)[128] = NULL;
  tide_buf xml = {0};
  tide_http_request rq;
  tide_http_response rs;
  double deadline = tide_now() + dst->o.deadline;
  int rc = -1, started = 0;
  EVP_MD_CTX *mm = NULL;

  memset(&rs, 0, sizeof rs);
  /* equal parts; at most 10000 of them */
  if ((size + up.part_size - 1) / up.part_size > 10000)
    up.part_size = (size + 9999) / 10000;
  up.nparts = batch.n = (size + up.part_size - 1) / up.part_size;
  if (!(up.parts = calloc(up.nparts, sizeof *up.parts)) ||
      !(etags = calloc(up.nparts, sizeof *etags)))
    goto oom;

  tide_http_request_init(&rq, "POST", path, "uploads");
  snprintf(what, sizeof what, "starting the multipart upload of %s%s", dst->display, name);
  if (tide_http_perform(&s->http, &rq, &rs, deadline, 0, what, err) != 0)
    goto cleanup;
  if (!tide_xml_value(rs.body.p, "UploadId", upload_id, sizeof upload_id, NULL) || !upload_id[0]) {
    tide_error_set(err, NULL, "%s: the response carries no UploadId", what);
    goto cleanup;
  }
  started = 1;
  if (!(up.enc_id = enc_id = tide_sigv4_uri_encode(upload_id, 0)))
    goto oom;

  if (tide_http_perform_many(&s->http, &batch, deadline, err) != 0)
    goto cleanup;

  /* every part is stored: the object appears once the gate passes and the parts are joined */
  if (tide_dest_gate_pass(st, err) != 0)
    goto cleanup;
  for (unsigned long long i = 0; i < up.nparts; i++)
    memcpy(etags[i], up.parts[i].etag, sizeof etags[i]);
  if (tide_s3_complete_xml(&xml, etags, up.nparts) != 0)
    goto oom;
  if (tide_digest_range(-1, xml.p, 0, xml.len, sha, md5, err) != 0)
    goto cleanup;
  tide_base64(md5, 16, md5_b64);
  if (!(query = malloc(strlen(enc_id) + 16)))
    goto oom;
  sprintf(query, "uploadId=%s", enc_id);
  snprintf(what, sizeof what, "completing the multipart upload of %s%s", dst->display, name);
  tide_http_request_init(&rq, "POST", path, query);
  rq.data = xml.p;
  rq.length = xml.len;
  rq.has_body = 1;
  rq.payload_sha256 = sha;
  rq.content_md5 = md5_b64;
  rq.content_type = "application/xml";
  if (tide_http_perform(&s->http, &rq, &rs, deadline, 0, what, err) != 0)
    goto cleanup;
  {
    /* the multipart ETag S3 computes: MD5 of the parts' MD5s, "-N" */
    unsigned char m[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;
    char hex[33];
    if (!(mm = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(mm, EVP_md5(), NULL))
      goto oom;
    for (unsigned long long i = 0; i < up.nparts; i++)
      EVP_DigestUpdate(mm, up.parts[i].md5, 16);
    if (!EVP_DigestFinal_ex(mm, m, &mlen))
      goto oom;
    tide_hex(m, 16, hex);
    if (etag_sz)
      snprintf(etag_out, etag_sz, "%s-%llu", hex, up.nparts);
  }
  rc = 0;
  goto cleanup;
oom:
  tide_error_set(err, NULL, "out of memory");
cleanup:
  if (rc != 0 && started) {
    const char *tail = note;
    size_t used = strlen(err->message), room = sizeof err->message - 1 - used;
    abort_upload(dst, path, upload_id, note, sizeof note);
    if (!note[0])
      tail = "; the multipart upload was aborted";
    strncat(err->message, tail, room);
  }
  EVP_MD_CTX_free(mm);
  for (unsigned long long i = 0; up.parts && i < up.nparts; i++)
    free(up.parts[i].query);
  free(up.parts);
  free(enc_id);
  free(query);
  free(etags);
  free(xml.p);
  tide_http_response_free(&rs);
  return rc;
}

/* ---- operations ------------------------------------------------------------------------------ */

static int s3_put(tide_dest *dst, const char *name, const tide_dest_stream *st, char *etag,
                  size_t etag_sz, tide_error *err) {
  s3_dest *s = dst->state;
  char *path = object_path(s, name, err);
  int rc = -1;
  if (!path)
    return -1;
  if (st->fd >= 0 && !st->data && st->size > dst->o.multipart_threshold)
    rc = multipart(dst, path, st, etag, etag_sz, err);
  else if (tide_dest_gate_pass(st, err) == 0) /* one PUT: the object is visible once sent */
    rc = tide_http_object_put(&s->http, dst, path, name, st, etag, etag_sz, err);
  free(path);
  return rc;
}

static int s3_get(tide_dest *dst, const char *name, tide_dest_sink *sink, tide_error *err) {
  s3_dest *s = dst->state;
  char *path = object_path(s, name, err);
  int rc = path ? tide_http_object_get(&s->http, dst, path, name, sink, err) : -1;
  free(path);
  return rc;
}

static int s3_head(tide_dest *dst, const char *name, int *exists, unsigned long long *size,
                   char *etag, size_t etag_sz, tide_error *err) {
  s3_dest *s = dst->state;
  char *path = object_path(s, name, err);
  int rc = path ? tide_http_object_head(&s->http, dst, path, name, exists, size, etag, etag_sz, err)
                : -1;
  free(path);
  return rc;
}

static int s3_remove(tide_dest *dst, const char *name, tide_error *err) {
  s3_dest *s = dst->state;
  char *path = object_path(s, name, err);
  int rc = path ? tide_http_object_delete(&s->http, dst, path, name, err) : -1;
  free(path);
  return rc;
}

/* ListObjectsV2 on the bucket, with the prefix the destination adds to every key. */
static int s3_list(tide_dest *dst, tide_dest_entries *es, tide_error *err) {
  s3_dest *s = dst->state;
  char query[2048], token[1024] = "", what[600];
  char *enc_prefix = NULL;
  tide_http_response rs;
  tide_http_request rq;
  int rc = -1;
  memset(&rs, 0, sizeof rs);
  if (!(enc_prefix = tide_sigv4_uri_encode(s->key_prefix, 0)))
    goto oom;
  snprintf(what, sizeof what, "listing %s", dst->display);
  for (;;) {
    tide_dest_entry *page;
    size_t npage;
    int more, qlen;
    char *enc_token = tide_sigv4_uri_encode(token, 0);
    if (!enc_token)
      goto oom;
    qlen = snprintf(query, sizeof query, "list-type=2&prefix=%s%s%s", enc_prefix,
                    token[0] ? "&continuation-token=" : "", token[0] ? enc_token : "");
    free(enc_token);
    if (qlen < 0 || (size_t)qlen >= sizeof query) {
      /* a cut query would list something else, or restart the listing */
      tide_error_set(err, NULL, "%s: the prefix and continuation token do not fit the query", what);
      goto cleanup;
    }
    tide_http_request_init(&rq, "GET", s->list_path, query);
    if (tide_http_perform(&s->http, &rq, &rs, tide_now() + dst->o.deadline, 0, what, err) != 0)
      goto cleanup;
    if (rs.body.overflow) {
      tide_error_set(err, NULL, "%s: response too large", what);
      goto cleanup;
    }
    more = tide_s3_parse_list(rs.body.p, s->key_prefix, &page, &npage, token, sizeof token, err);
    if (more < 0) {
      char local[sizeof err->message];
      snprintf(local, sizeof local, "%s", err->message);
      tide_error_set(err, NULL, "%s: %s", what, local);
      goto cleanup;
    }
    if (tide_dest_entries_take(es, page, npage) != 0) {
      tide_dest_entries_free(page, npage);
      goto oom;
    }
    free(page);
    if (!more)
      break;
  }
  rc = 0;
  goto cleanup;
oom:
  tide_error_set(err, NULL, "out of memory");
cleanup:
  free(enc_prefix);
  tide_http_response_free(&rs);
  return rc;
}

/* The multipart uploads of tide's archives (<prefix><id>/archive.dump) started more than
 * max_age seconds ago, aborted: a tide killed while uploading leaves its parts stored (and
 * billed), invisible to listings. One page (1000 uploads) per call. */
static int s3_abort(tide_dest *dst, double max_age, tide_dest_entries *es, tide_error *err) {
  s3_dest *s = dst->state;
  char *enc_prefix = tide_sigv4_uri_encode(s->key_prefix, 0), *query = NULL, what[600];
  const char *from, *end;
  tide_http_request rq;
  tide_http_response rs;
  int rc = -1;
  size_t plen = strlen(s->key_prefix);
  long long now = (long long)time(NULL), initiated;
  char key[1100], id[1024];
  memset(&rs, 0, sizeof rs);
  if (!enc_prefix || !(query = malloc(strlen(enc_prefix) + 32))) {
    tide_error_set(err, NULL, "out of memory");
    goto cleanup;
  }
  sprintf(query, "prefix=%s&uploads=", enc_prefix);
  tide_http_request_init(&rq, "GET", s->list_path, query);
  snprintf(what, sizeof what, "listing the unfinished uploads at %s", dst->display);
  if (tide_http_perform(&s->http, &rq, &rs, tide_now() + dst->o.deadline, 0, what, err) != 0)
    goto cleanup;
  end = rs.body.p ? rs.body.p + rs.body.len : NULL;
  from = rs.body.p;
  while (tide_s3_next_upload(&from, end, key, sizeof key, id, sizeof id, &initiated)) {
    char *path, note[900] = "";
    /* only tide's own: <prefix><id>/archive.dump, and only an old one */
    if (strncmp(key, s->key_prefix, plen) != 0 || strlen(key) < plen + 14 ||
        strcmp(key + strlen(key) - 13, "/archive.dump") != 0 ||
        !tide_dest_backup_id(key + plen, key + strlen(key) - 13) ||
        now - initiated < (long long)max_age)
      continue;
    if (!(path = object_path(s, key + plen, err)))
      goto cleanup;
    abort_upload(dst, path, id, note, sizeof note);
    free(path);
    if (!note[0] && tide_dest_entries_add(es, key + plen, 0, 0) != 0) {
      tide_error_set(err, NULL, "out of memory");
      goto cleanup;
    }
  }
  rc = 0;
cleanup:
  free(enc_prefix);
  free(query);
  tide_http_response_free(&rs);
  return rc;
}

const tide_dest_ops tide_dest_s3_ops = {
    .name = "s3",
    .late_gate = 1,
    .open = s3_open,
    .close = s3_close,
    .put = s3_put,
    .get = s3_get,
    .head = s3_head,
    .list = s3_list,
    .remove = s3_remove,
    .abort = s3_abort,
};
