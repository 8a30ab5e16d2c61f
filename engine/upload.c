/* upload.c: backup destinations, the tide.Destination type of tide.core.
 *   file:///dir/          plain POSIX: temp name, fsync, rename, fsync of the directory
 *   http(s)://host/path/  libcurl PUT/HEAD/GET/DELETE with extra headers (no listing)
 *   s3://bucket/prefix/   libcurl with tide's own SigV4 (sigv4.c): signed payload hash and
 *                         Content-MD5 on every body, multipart above a threshold with equal parts
 *                         each retried on its own, aborted on failure, 200-with-<Error> = failure
 * Every network operation retries connection errors, timeouts, stalls (low-speed limit),
 * 408/429/5xx and S3 RequestTimeout with capped, jittered backoff inside one deadline; other 4xx
 * fail at once. Bodies come from a rewindable source (file descriptor + offset, or memory).
 * TLS verification is always on. Secrets never enter an error message. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>
#include <openssl/evp.h>

#include "tide.h"

#define TIDE_DESTINATION "tide.Destination"
#define MAX_BODY (8u << 20) /* responses kept in memory: XML, manifests */

enum { DEST_FILE, DEST_HTTP, DEST_S3 };

struct tide_upload {
  int kind;
  char *display;   /* the destination without credentials or query, for messages */
  char *dir;       /* file: the directory, ending in '/' */
  char *origin;    /* http/s3: scheme://host[:port] */
  char *host;      /* http/s3: the Host header value */
  char *base_path; /* http/s3: decoded path prefix, starting and ending with '/' */
  char *bucket;
  char *list_path, *key_prefix; /* s3: the bucket's path and the keys' prefix, for ListObjectsV2 */
  char *access_key, *secret_key, *session_token, *region;
  struct curl_slist *extra_headers;
  char *ca_file;
  tide_upload_opts o; /* numbers and callbacks; string fields point at the copies above */
  CURL *curl;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
  struct timespec ts;
  if (s <= 0)
    return;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !tide_interrupted)
    ;
}

static char *dupn(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static char *dupz(const char *s) {
  return s ? strdup(s) : NULL;
}

/* ---- growable memory buffer ------------------------------------------------------------ */

typedef struct mbuf {
  char *p;
  size_t len, cap;
  int overflow;
} mbuf;

static int mb_add(mbuf *b, const void *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    char *grown;
    if (b->len + n + 1 > MAX_BODY) {
      b->overflow = 1;
      return -1;
    }
    while (cap < b->len + n + 1)
      cap *= 2;
    if (!(grown = realloc(b->p, cap)))
      return -1;
    b->p = grown;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

static int mb_str(mbuf *b, const char *s) {
  return mb_add(b, s, strlen(s));
}

/* ---- digests --------------------------------------------------------------------------- */

static int b64(const unsigned char *in, int n, char *out) {
  return EVP_EncodeBlock((unsigned char *)out, in, n);
}

static int hex_to_bin(const char *hex, unsigned char *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned int v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1)
      return -1;
    out[i] = (unsigned char)v;
  }
  return 0;
}

/* SHA-256 (hex) and MD5 (raw) of len bytes of fd at off, or of data. */
static int digest_range(int fd, const char *data, off_t off, unsigned long long len,
                        char sha_hex[65], unsigned char md5[16], tide_error *err) {
  EVP_MD_CTX *sha = EVP_MD_CTX_new(), *m = EVP_MD_CTX_new();
  unsigned char *buf = data ? NULL : malloc(1 << 20), md[EVP_MAX_MD_SIZE];
  unsigned int mdlen;
  unsigned long long done = 0;
  int rc = -1;
  if (!sha || !m || (!data && !buf) || !EVP_DigestInit_ex(sha, EVP_sha256(), NULL) ||
      !EVP_DigestInit_ex(m, EVP_md5(), NULL)) {
    tide_error_set(err, NULL, "out of memory");
    goto cleanup;
  }
  if (data) {
    EVP_DigestUpdate(sha, data, (size_t)len);
    EVP_DigestUpdate(m, data, (size_t)len);
  }
  while (!data && done < len) {
    size_t want = len - done > (1 << 20) ? (1 << 20) : (size_t)(len - done);
    ssize_t n = pread(fd, buf, want, off + (off_t)done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      tide_error_set(err, NULL, "reading the archive: %s", n < 0 ? strerror(errno) : "file shrank");
      goto cleanup;
    }
    EVP_DigestUpdate(sha, buf, (size_t)n);
    EVP_DigestUpdate(m, buf, (size_t)n);
    done += (unsigned long long)n;
  }
  EVP_DigestFinal_ex(sha, md, &mdlen);
  tide_sigv4_hex(md, mdlen, sha_hex);
  EVP_DigestFinal_ex(m, md5, &mdlen);
  rc = 0;
cleanup:
  free(buf);
  EVP_MD_CTX_free(sha);
  EVP_MD_CTX_free(m);
  return rc;
}

/* ---- destinations ---------------------------------------------------------------------- */

static int parse_http_url(tide_upload *u, const char *url, tide_error *err) {
  CURLU *h = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
  int rc = -1;
  if (!h || curl_url_set(h, CURLUPART_URL, url, 0) != CURLUE_OK ||
      curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
    tide_error_set(err, NULL, "not a valid http(s) URL");
    goto cleanup;
  }
  curl_url_get(h, CURLUPART_PORT, &port, 0);
  if (curl_url_get(h, CURLUPART_PATH, &path, CURLU_URLDECODE) != CURLUE_OK)
    path = NULL;
  {
    size_t n = strlen(scheme) + strlen(host) + (port ? strlen(port) : 0) + 8;
    u->origin = malloc(n);
    u->host = malloc(n);
    if (!u->origin || !u->host)
      goto oom;
    snprintf(u->host, n, "%s%s%s", host, port ? ":" : "", port ? port : "");
    snprintf(u->origin, n, "%s://%s", scheme, u->host);
  }
  {
    const char *p = path && *path ? path : "/";
    size_t n = strlen(p);
    u->base_path = malloc(n + 2);
    if (!u->base_path)
      goto oom;
    snprintf(u->base_path, n + 2, "%s%s", p, p[n - 1] == '/' ? "" : "/");
  }
  rc = 0;
  goto cleanup;
oom:
  tide_error_set(err, NULL, "out of memory");
cleanup:
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_free(path);
  curl_url_cleanup(h);
  return rc;
}

static int parse_destination(tide_upload *u, const char *url, tide_error *err) {
  if (strncmp(url, "file://", 7) == 0) {
    const char *p = url + 7;
    size_t n;
    if (*p != '/') {
      tide_error_set(err, NULL, "file destinations need an absolute path: file:///dir/");
      return -1;
    }
    n = strlen(p);
    u->kind = DEST_FILE;
    u->dir = malloc(n + 2);
    if (!u->dir)
      return -1;
    snprintf(u->dir, n + 2, "%s%s", p, p[n - 1] == '/' ? "" : "/");
    u->display = malloc(n + 10);
    if (u->display)
      snprintf(u->display, n + 10, "file://%s", u->dir);
    return 0;
  }
  if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
    u->kind = DEST_HTTP;
    if (parse_http_url(u, url, err) != 0)
      return -1;
    u->display = malloc(strlen(u->origin) + strlen(u->base_path) + 1);
    if (u->display)
      sprintf(u->display, "%s%s", u->origin, u->base_path);
    return 0;
  }
  if (strncmp(url, "s3://", 5) == 0) {
    const char *b = url + 5, *slash = strchr(b, '/');
    const char *prefix = slash ? slash + 1 : "";
    size_t plen = strlen(prefix);
    char *tmp;
    u->kind = DEST_S3;
    u->bucket = slash ? dupn(b, (size_t)(slash - b)) : strdup(b);
    if (!u->bucket || !*u->bucket || strchr(u->bucket, '?')) {
      tide_error_set(err, NULL, "s3 destinations look like s3://bucket/prefix/");
      return -1;
    }
    if (u->o.endpoint && *u->o.endpoint) {
      /* a non-AWS endpoint: path-style addressing, /bucket/prefix/... */
      if (parse_http_url(u, u->o.endpoint, err) != 0) {
        tide_error_set(err, NULL, "AWS_ENDPOINT_URL is not a valid http(s) URL");
        return -1;
      }
      tmp = malloc(strlen(u->base_path) + strlen(u->bucket) + plen + 4);
      u->list_path = malloc(strlen(u->base_path) + strlen(u->bucket) + 1);
      if (!tmp || !u->list_path) {
        free(tmp);
        return -1;
      }
      sprintf(tmp, "%s%s/%s%s", u->base_path, u->bucket, prefix,
              plen && prefix[plen - 1] != '/' ? "/" : "");
      sprintf(u->list_path, "%s%s", u->base_path, u->bucket);
    } else {
      size_t n = strlen(u->bucket) + strlen(u->region) + 40;
      u->host = malloc(n);
      u->origin = malloc(n + 8);
      if (!u->host || !u->origin)
        return -1;
      snprintf(u->host, n, "%s.s3.%s.amazonaws.com", u->bucket, u->region);
      snprintf(u->origin, n + 8, "https://%s", u->host);
      tmp = malloc(plen + 3);
      u->list_path = strdup("/");
      if (!tmp || !u->list_path) {
        free(tmp);
        return -1;
      }
      sprintf(tmp, "/%s%s", prefix, plen && prefix[plen - 1] != '/' ? "/" : "");
    }
    free(u->base_path);
    u->base_path = tmp;
    if (!(u->key_prefix = malloc(plen + 2)))
      return -1;
    sprintf(u->key_prefix, "%s%s", prefix, plen && prefix[plen - 1] != '/' ? "/" : "");
    u->display = malloc(strlen(u->bucket) + plen + 8);
    if (u->display)
      sprintf(u->display, "s3://%s/%s%s", u->bucket, prefix,
              plen && prefix[plen - 1] != '/' ? "/" : "");
    return 0;
  }
  tide_error_set(
      err, NULL,
      "unsupported destination (use file:///dir/, https://host/path/ or s3://bucket/prefix/)");
  return -1;
}

void tide_upload_close(tide_upload *u) {
  if (!u)
    return;
  if (u->curl)
    curl_easy_cleanup(u->curl);
  if (u->secret_key)
    memset(u->secret_key, 0, strlen(u->secret_key));
  if (u->session_token)
    memset(u->session_token, 0, strlen(u->session_token));
  free(u->display);
  free(u->dir);
  free(u->origin);
  free(u->host);
  free(u->base_path);
  free(u->bucket);
  free(u->list_path);
  free(u->key_prefix);
  free(u->access_key);
  free(u->secret_key);
  free(u->session_token);
  free(u->region);
  free(u->ca_file);
  free((char *)u->o.endpoint);
  curl_slist_free_all(u->extra_headers);
  free(u);
}

/* A configured header must be one "Name: value" line: a token for a name (RFC 9110) and no line
 * break in the value, which would send a second header of the caller's making. The message
 * does not quote the value: it may be a secret. */
static int check_header(const char *line, size_t i, tide_error *err) {
  size_t name = strspn(line, "!#$%&'*+-.^_`|~0123456789"
                             "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
  if (name == 0 || line[name] != ':' || strpbrk(line, "\r\n")) {
    tide_error_set(err, NULL,
                   "header %zu is not one `Name: value` line (a name of letters, digits and "
                   "-, and no CR or LF anywhere)",
                   i + 1);
    return -1;
  }
  return 0;
}

int tide_upload_open(tide_upload **out, const tide_upload_opts *o, tide_error *err) {
  static int curl_ready;
  tide_upload *u = calloc(1, sizeof *u);
  *out = NULL;
  if (!u) {
    tide_error_set(err, NULL, "out of memory");
    return -1;
  }
  u->o = *o;
  u->o.url = NULL; /* the caller's strings are copied below or used only here */
  u->o.headers = NULL;
  u->o.nheaders = 0;
  u->o.access_key = u->o.secret_key = u->o.session_token = u->o.region = u->o.ca_file = NULL;
  u->o.endpoint = dupz(o->endpoint && *o->endpoint ? o->endpoint : NULL);
  u->access_key = dupz(o->access_key);
  u->secret_key = dupz(o->secret_key);
  u->session_token = dupz(o->session_token && *o->session_token ? o->session_token : NULL);
  u->region = strdup(o->region && *o->region ? o->region : "us-east-1");
  u->ca_file = dupz(o->ca_file && *o->ca_file ? o->ca_file : NULL);
  for (size_t i = 0; i < o->nheaders; i++) {
    struct curl_slist *l;
    if (check_header(o->headers[i], i, err) != 0) {
      tide_upload_close(u);
      return -1;
    }
    if (!(l = curl_slist_append(u->extra_headers, o->headers[i])))
      goto oom;
    u->extra_headers = l;
  }
  if (u->o.deadline <= 0)
    u->o.deadline = 900;
  if (u->o.max_attempts <= 0)
    u->o.max_attempts = 8;
  if (u->o.backoff_base <= 0)
    u->o.backoff_base = 0.5;
  if (u->o.backoff_cap <= 0)
    u->o.backoff_cap = 20;
  if (u->o.low_speed_limit <= 0)
    u->o.low_speed_limit = 1024;
  if (u->o.low_speed_time <= 0)
    u->o.low_speed_time = 30;
  if (u->o.connect_timeout <= 0)
    u->o.connect_timeout = 10;
  if (u->o.part_size < (5ull << 20))
    u->o.part_size = 16ull << 20;
  if (u->o.multipart_threshold == 0)
    u->o.multipart_threshold = 64ull << 20;
  if (!u->region || (o->endpoint && *o->endpoint && !u->o.endpoint))
    goto oom;
  if (parse_destination(u, o->url ? o->url : "", err) != 0) {
    if (!err->message[0])
      tide_error_set(err, NULL, "out of memory");
    tide_upload_close(u);
    return -1;
  }
  if (u->kind == DEST_S3 &&
      (!u->access_key || !*u->access_key || !u->secret_key || !*u->secret_key)) {
    tide_error_set(err, NULL,
                   "%s: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                   "backup.access_key_id / backup.secret_access_key)",
                   u->display);
    tide_upload_close(u);
    return -1;
  }
  if (u->kind != DEST_FILE) {
    if (!curl_ready) {
      if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        tide_error_set(err, NULL, "libcurl failed to initialise");
        tide_upload_close(u);
        return -1;
      }
      curl_ready = 1;
    }
    if (!(u->curl = curl_easy_init()))
      goto oom;
  }
  *out = u;
  return 0;
oom:
  tide_error_set(err, NULL, "out of memory");
  tide_upload_close(u);
  return -1;
}

const char *tide_upload_display(const tide_upload *u) {
  return u->display ? u->display : "";
}

/* ---- one HTTP exchange ----------------------------------------------------------------- */

typedef struct source {
  int fd;           /* body from this file ... */
  const char *data; /* ... or from memory */
  off_t offset;     /* where the body starts in fd */
  unsigned long long length, pos;
} source;

typedef struct request {
  const char *method;
  const char *path;  /* decoded, absolute */
  const char *query; /* encoded, may be NULL */
  source body;       /* length 0 and no data: no body */
  int has_body;
  const char *payload_sha256;
  const char *content_md5; /* base64 */
  const char *content_type;
  int sink_fd;                 /* GET into this file (hashing it), else into memory */
  unsigned long long max_size; /* GET into a file: refuse more than this (0: no limit) */
  unsigned long long progress_base, progress_total;
} request;

typedef struct response {
  long status;
  CURLcode cc;
  char curl_msg[CURL_ERROR_SIZE];
  char etag[128];
  mbuf body;
  EVP_MD_CTX *sink_sha;
  unsigned long long sink_bytes;
  int sink_failed;
  int too_large; /* the download passed request.max_size */
  int progress_stop;
  int interrupted; /* stopped by a caught SIGINT/SIGTERM */
} response;

typedef struct xfer {
  tide_upload *u;
  request *rq;
  response *rs;
} xfer;

static size_t read_cb(char *buf, size_t size, size_t nitems, void *ud) {
  source *s = ud;
  size_t want = size * nitems;
  if (s->pos >= s->length)
    return 0;
  if (want > s->length - s->pos)
    want = (size_t)(s->length - s->pos);
  if (s->data) {
    memcpy(buf, s->data + s->pos, want);
  } else {
    ssize_t n;
    do
      n = pread(s->fd, buf, want, s->offset + (off_t)s->pos);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
      return CURL_READFUNC_ABORT; /* recorded as a read error: never retried */
    want = (size_t)n;
  }
  s->pos += want;
  return want;
}

/* libcurl rewinds the body when it must send it again (a redirect, an auth round, a retry of
 * a reused connection): the source is a file range or memory, so any position is reachable. */
static int seek_cb(void *ud, curl_off_t offset, int origin) {
  source *s = ud;
  if (origin != SEEK_SET || offset < 0 || (unsigned long long)offset > s->length)
    return CURL_SEEKFUNC_FAIL;
  s->pos = (unsigned long long)offset;
  return CURL_SEEKFUNC_OK;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud) {
  xfer *x = ud;
  size_t n = size * nmemb;
  if (x->rq->sink_fd >= 0 && x->rs->status / 100 == 2) {
    size_t done = 0;
    if (x->rq->max_size && x->rs->sink_bytes + n > x->rq->max_size) {
      x->rs->too_large = 1;
      return 0; /* CURLE_WRITE_ERROR: not retried */
    }
    while (done < n) {
      ssize_t w = write(x->rq->sink_fd, ptr + done, n - done);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0) {
        x->rs->sink_failed = errno ? errno : EIO;
        return 0; /* CURLE_WRITE_ERROR: local, not retried */
      }
      done += (size_t)w;
    }
    EVP_DigestUpdate(x->rs->sink_sha, ptr, n);
    x->rs->sink_bytes += n;
    return n;
  }
  if (mb_add(&x->rs->body, ptr, n) != 0 && !x->rs->body.overflow)
    return 0;
  return n; /* an oversized error body is cut, not a failure */
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *ud) {
  xfer *x = ud;
  size_t n = size * nitems;
  if (n > 5 && strncmp(buf, "HTTP/", 5) == 0) {
    /* a new response (after 100 Continue): forget the previous one's headers */
    x->rs->etag[0] = '\0';
    x->rs->status = strtol(strchr(buf, ' ') ? strchr(buf, ' ') + 1 : "0", NULL, 10);
  } else if (n > 5 && strncasecmp(buf, "etag:", 5) == 0) {
    const char *v = buf + 5;
    size_t len;
    while (*v == ' ' || *v == '"')
      v++;
    len = (size_t)(buf + n - v);
    while (len &&
           (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == '"' || v[len - 1] == ' '))
      len--;
    if (len < sizeof x->rs->etag) {
      memcpy(x->rs->etag, v, len);
      x->rs->etag[len] = '\0';
    }
  }
  return n;
}

/* Whether a caught SIGINT/SIGTERM stops rq: everything but the DELETEs that clean up. */
static int interruptible(const request *rq) {
  return strcmp(rq->method, "DELETE") != 0;
}

static int xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  xfer *x = ud;
  static double last;
  tide_upload_opts *o = &x->u->o;
  (void)dltotal;
  (void)ultotal;
  if (tide_interrupted && interruptible(x->rq))
    return (x->rs->interrupted = 1);
  if (!o->progress || now_s() - last < 0.25)
    return 0;
  last = now_s();
  if (x->rq->has_body)
    return (x->rs->progress_stop = o->progress(o->progress_ud, "upload",
                                               x->rq->progress_base + (unsigned long long)ulnow,
                                               x->rq->progress_total)) != 0;
  if (x->rq->sink_fd >= 0)
    return (x->rs->progress_stop = o->progress(
                o->progress_ud, "download", (unsigned long long)dlnow, x->rq->progress_total)) != 0;
  return 0;
}

/* Headers whose values -v shows; any other header shows its name only. Everything that can
 * carry a credential (Authorization, Proxy-Authorization, x-amz-security-token, Cookie,
 * a configured X-Api-Key ...) is therefore hidden without being named here. */
static int harmless_header(const char *name, size_t len) {
  static const char *const shown[] = {"accept",
                                      "accept-ranges",
                                      "cache-control",
                                      "connection",
                                      "content-length",
                                      "content-md5",
                                      "content-range",
                                      "content-type",
                                      "date",
                                      "etag",
                                      "expect",
                                      "host",
                                      "keep-alive",
                                      "last-modified",
                                      "range",
                                      "retry-after",
                                      "server",
                                      "transfer-encoding",
                                      "user-agent",
                                      "vary",
                                      "x-amz-content-sha256",
                                      "x-amz-date",
                                      "x-amz-id-2",
                                      "x-amz-request-id",
                                      NULL};
  for (int i = 0; shown[i]; i++)
    if (strlen(shown[i]) == len && strncasecmp(name, shown[i], len) == 0)
      return 1;
  return 0;
}

/* curl's own text lines may name a URL with its userinfo (the proxy of http_proxy, password
 * and all) or a user name ("with user 'u'"): those parts become [redacted]. out has outsz
 * bytes; the result is cut to fit. */
/* Appends text to out (o bytes used of outsz), cut to fit with room for the terminator. */
static void append(char *out, size_t *o, size_t outsz, const char *text) {
  size_t n = strlen(text);
  if (n > outsz - 1 - *o)
    n = outsz - 1 - *o;
  memcpy(out + *o, text, n);
  *o += n;
}

static void scrub_text(const char *p, size_t len, char *out, size_t outsz) {
  size_t o = 0;
  for (size_t i = 0; i < len && o + 1 < outsz;) {
    if (len - i >= 3 && memcmp(p + i, "://", 3) == 0) {
      size_t j = i + 3;
      while (j < len && !strchr("/@ \t'\"", p[j]))
        j++;
      if (j < len && p[j] == '@') {
        append(out, &o, outsz, "://[redacted]@");
        i = j + 1;
        continue;
      }
    }
    if (len - i >= 11 && memcmp(p + i, "with user '", 11) == 0) {
      const char *q = memchr(p + i + 11, '\'', len - i - 11);
      append(out, &o, outsz, "with user [redacted]");
      i = q ? (size_t)(q - p) + 1 : len;
      continue;
    }
    out[o++] = p[i++];
  }
  out[o] = '\0';
}

static void debug_line(curl_infotype type, const char *p, size_t len) {
  const char *dir = type == CURLINFO_HEADER_IN ? "<" : type == CURLINFO_TEXT ? "*" : ">";
  const char *colon = memchr(p, ':', len);
  char text[2048];
  if (type == CURLINFO_TEXT) {
    scrub_text(p, len, text, sizeof text);
    fprintf(stderr, "tide: debug: * %s\n", text);
  } else if (*p == ' ' || *p == '\t') {
    fprintf(stderr, "tide: debug: %s [redacted: a folded header line]\n", dir);
  } else if (!colon || memchr(p, ' ', (size_t)(colon - p))) {
    /* the request or status line: method, path and query, or the status (no credential) */
    fprintf(stderr, "tide: debug: %s %.*s\n", dir, (int)len, p);
  } else if (harmless_header(p, (size_t)(colon - p))) {
    fprintf(stderr, "tide: debug: %s %.*s\n", dir, (int)len, p);
  } else {
    fprintf(stderr, "tide: debug: %s %.*s: [redacted]\n", dir, (int)(colon - p), p);
  }
}

/* -v: request and response headers and curl's notes, with every credential hidden (see
 * harmless_header and scrub_text); bodies are never shown. */
static int debug_cb(CURL *h, curl_infotype type, char *data, size_t size, void *ud) {
  const char *p = data, *end = data + size;
  (void)h;
  (void)ud;
  if (type != CURLINFO_HEADER_OUT && type != CURLINFO_HEADER_IN && type != CURLINFO_TEXT)
    return 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    if (len && p[len - 1] == '\r')
      len--;
    if (len)
      debug_line(type, p, len);
    p = nl ? nl + 1 : end;
  }
  return 0;
}

static void response_reset(response *rs) {
  rs->status = 0;
  rs->cc = CURLE_OK;
  rs->curl_msg[0] = '\0';
  rs->etag[0] = '\0';
  rs->body.len = 0;
  rs->body.overflow = 0;
  if (rs->body.p)
    rs->body.p[0] = '\0';
  rs->sink_bytes = 0;
  rs->sink_failed = 0;
  rs->too_large = 0;
  rs->progress_stop = 0;
  rs->interrupted = 0;
}

/* One attempt. Returns 0 when the exchange happened (look at rs->status), -1 on a local failure
 * that is not worth retrying (message in err). Transport failures leave rs->cc set. */
static int attempt(tide_upload *u, request *rq, response *rs, double deadline, tide_error *err) {
  CURL *h = u->curl;
  struct curl_slist *hdrs = NULL;
  char *epath = NULL, *url = NULL;
  char amz_date[17], line[2048];
  xfer x = {u, rq, rs};
  long timeout_ms = (long)((deadline - now_s()) * 1000);
  int rc = -1;
  tide_sigv4_result sig = {0};

  response_reset(rs);
  if (timeout_ms < 1000)
    timeout_ms = 1000;
  rq->body.pos = 0;
  if (rq->sink_fd >= 0) {
    if (ftruncate(rq->sink_fd, 0) != 0 || lseek(rq->sink_fd, 0, SEEK_SET) != 0 ||
        !EVP_DigestInit_ex(rs->sink_sha, EVP_sha256(), NULL)) {
      tide_error_set(err, NULL, "cannot reset the download file: %s", strerror(errno));
      return -1;
    }
  }
  if (!(epath = tide_sigv4_uri_encode(rq->path, 1)))
    goto oom;
  if (!(url = malloc(strlen(u->origin) + strlen(epath) + (rq->query ? strlen(rq->query) : 0) + 2)))
    goto oom;
  sprintf(url, "%s%s%s%s", u->origin, epath, rq->query && *rq->query ? "?" : "",
          rq->query ? rq->query : "");

  curl_easy_reset(h);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  if (u->ca_file)
    curl_easy_setopt(h, CURLOPT_CAINFO, u->ca_file);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, u->o.connect_timeout);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, u->o.low_speed_limit);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, u->o.low_speed_time);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, rs->curl_msg);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "tide/" TIDE_VERSION);
  if (rq->max_size) /* refused before the transfer when the server says its size first */
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)rq->max_size);
  if (u->o.debug) {
    curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
    curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, debug_cb);
  }

  if (strcmp(rq->method, "HEAD") == 0) {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (strcmp(rq->method, "PUT") == 0) {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body.length);
  } else if (strcmp(rq->method, "POST") == 0) {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body.length);
  } else if (strcmp(rq->method, "GET") != 0) {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
  }
  if (rq->has_body || strcmp(rq->method, "POST") == 0) {
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(h, CURLOPT_READDATA, &rq->body);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, &rq->body);
  }

#define ADD_HEADER(...)                                                                            \
  do {                                                                                             \
    struct curl_slist *l_;                                                                         \
    snprintf(line, sizeof line, __VA_ARGS__);                                                      \
    if (!(l_ = curl_slist_append(hdrs, line)))                                                     \
      goto oom;                                                                                    \
    hdrs = l_;                                                                                     \
  } while (0)

  if (rq->content_type)
    ADD_HEADER("Content-Type: %s", rq->content_type);
  else if (strcmp(rq->method, "POST") == 0 || strcmp(rq->method, "PUT") == 0)
    ADD_HEADER("Content-Type: application/octet-stream");
  if (rq->content_md5)
    ADD_HEADER("Content-MD5: %s", rq->content_md5);
  if (u->kind == DEST_S3) {
    tide_sigv4_header sh[6];
    size_t n = 0;
    tide_sigv4_request sr;
    tide_sigv4_credentials cred = {u->access_key, u->secret_key, u->region, "s3"};
    const char *payload = rq->payload_sha256
                              ? rq->payload_sha256
                              : "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    tide_sigv4_amz_date(time(NULL), amz_date);
    sh[n++] = (tide_sigv4_header){"host", u->host};
    sh[n++] = (tide_sigv4_header){"x-amz-date", amz_date};
    sh[n++] = (tide_sigv4_header){"x-amz-content-sha256", payload};
    if (rq->content_md5)
      sh[n++] = (tide_sigv4_header){"content-md5", rq->content_md5};
    if (u->session_token)
      sh[n++] = (tide_sigv4_header){"x-amz-security-token", u->session_token};
    sr = (tide_sigv4_request){rq->method, rq->path, rq->query, sh, n, payload, amz_date, 0};
    if (tide_sigv4_sign(&sr, &cred, &sig, err) != 0)
      goto cleanup;
    ADD_HEADER("Host: %s", u->host);
    ADD_HEADER("x-amz-date: %s", amz_date);
    ADD_HEADER("x-amz-content-sha256: %s", payload);
    if (u->session_token) {
      struct curl_slist *l_;
      size_t len = strlen(u->session_token) + 32;
      char *t = malloc(len);
      if (!t)
        goto oom;
      snprintf(t, len, "x-amz-security-token: %s", u->session_token);
      l_ = curl_slist_append(hdrs, t);
      memset(t, 0, len);
      free(t);
      if (!l_)
        goto oom;
      hdrs = l_;
    }
    ADD_HEADER("Authorization: %s", sig.authorization);
    memset(line, 0, sizeof line);
  } else {
    for (struct curl_slist *e = u->extra_headers; e; e = e->next) {
      struct curl_slist *l_ = curl_slist_append(hdrs, e->data);
      if (!l_)
        goto oom;
      hdrs = l_;
    }
  }
#undef ADD_HEADER
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);

  rs->cc = curl_easy_perform(h);
  if (rs->cc == CURLE_OK || rs->status == 0)
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
  if (rs->sink_failed) {
    tide_error_set(err, NULL, "writing the download: %s", strerror(rs->sink_failed));
    goto cleanup;
  }
  if (rs->too_large || rs->cc == CURLE_FILESIZE_EXCEEDED) {
    tide_error_set(err, NULL, "the object is larger than the %llu bytes expected: not downloaded",
                   rq->max_size);
    goto cleanup;
  }
  if (rs->interrupted) {
    tide_error_set(err, NULL, "interrupted by %s", tide_signal_name(tide_interrupted));
    goto cleanup;
  }
  if (rs->progress_stop) {
    tide_error_set(err, NULL, "interrupted");
    goto cleanup;
  }
  if (rs->cc == CURLE_READ_ERROR || rs->cc == CURLE_ABORTED_BY_CALLBACK) {
    tide_error_set(err, NULL, "reading the archive failed during the upload");
    goto cleanup;
  }
  rc = 0;
  goto cleanup;
oom:
  tide_error_set(err, NULL, "out of memory");
cleanup:
  /* the headers held the signature; the slist strings are freed here, before anything raises */
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
  for (struct curl_slist *e = hdrs; e; e = e->next)
    memset(e->data, 0, strlen(e->data));
  curl_slist_free_all(hdrs);
  tide_sigv4_result_free(&sig);
  free(epath);
  free(url);
  return rc;
}

/* ---- S3 response documents ---------------------------------------------------------------- */

/* The first occurrence of s that lies wholly inside [p, end), or NULL. */
static const char *find_in(const char *p, const char *end, const char *s) {
  size_t n = strlen(s);
  while ((size_t)(end - p) >= n) {
    if (!(p = memchr(p, s[0], (size_t)(end - p) - n + 1)))
      return NULL;
    if (memcmp(p, s, n) == 0)
      return p;
    p++;
  }
  return NULL;
}

/* The first <tag>text</tag> wholly inside [p, end): the raw text is [*a, *b), *after points past
 * the closing tag. Bounded so that a lookup inside one element cannot run on into the next. */
static int xml_find(const char *p, const char *end, const char *tag, const char **a, const char **b,
                    const char **after) {
  char open[64], close[64];
  snprintf(open, sizeof open, "<%s>", tag);
  snprintf(close, sizeof close, "</%s>", tag);
  if (!(p = find_in(p, end, open)))
    return 0;
  *a = p + strlen(open);
  if (!(*b = find_in(*a, end, close)))
    return 0;
  if (after)
    *after = *b + strlen(close);
  return 1;
}

/* Unescapes the five predefined entities of [a, b) into out (outsz bytes, truncated, always
 * terminated when outsz > 0). Returns the full unescaped length, as snprintf does. */
static size_t xml_unescape(const char *a, const char *b, char *out, size_t outsz) {
  static const struct {
    const char *e;
    char c;
  } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
  size_t o = 0;
  for (const char *p = a; p < b; p++) {
    char c = *p;
    for (size_t i = 0; c == '&' && i < sizeof ents / sizeof ents[0]; i++) {
      size_t l = strlen(ents[i].e);
      if ((size_t)(b - p) >= l && strncmp(p, ents[i].e, l) == 0) {
        c = ents[i].c;
        p += l - 1;
        break;
      }
    }
    if (o + 1 < outsz)
      out[o] = c;
    o++;
  }
  if (outsz > 0)
    out[o < outsz ? o : outsz - 1] = '\0';
  return o;
}

int tide_xml_value(const char *xml, const char *tag, char *out, size_t outsz, const char **from) {
  const char *start, *a, *b, *after;
  if (!xml)
    return 0;
  start = from && *from ? *from : xml;
  if (!xml_find(start, start + strlen(start), tag, &a, &b, &after))
    return 0;
  xml_unescape(a, b, out, outsz);
  if (from)
    *from = after;
  return 1;
}

static int retryable_status(long status, const char *code) {
  return status == 408 || status == 429 || status >= 500 || strcmp(code, "RequestTimeout") == 0 ||
         strcmp(code, "InternalError") == 0 || strcmp(code, "SlowDown") == 0 ||
         strcmp(code, "ServiceUnavailable") == 0;
}

static int retryable_curl(CURLcode cc) {
  switch (cc) {
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_SSL_CONNECT_ERROR:
    return 1;
  default:
    return 0;
  }
}

/* "HTTP 403 SignatureDoesNotMatch: The request signature ..." or "connection reset ..." */
static void describe(const response *rs, char *out, size_t outsz) {
  char code[128] = "", msg[512] = "";
  if (rs->cc != CURLE_OK) { /* curl may name the proxy, userinfo and all */
    const char *m = rs->curl_msg[0] ? rs->curl_msg : curl_easy_strerror(rs->cc);
    scrub_text(m, strlen(m), out, outsz);
    return;
  }
  tide_xml_value(rs->body.p, "Code", code, sizeof code, NULL);
  tide_xml_value(rs->body.p, "Message", msg, sizeof msg, NULL);
  if (code[0])
    snprintf(out, outsz, "HTTP %ld %s: %s", rs->status, code, msg);
  else if (rs->status == 403)
    snprintf(out, outsz, "HTTP 403 Forbidden (wrong credentials, or no permission)");
  else
    snprintf(out, outsz, "HTTP %ld", rs->status);
}

typedef enum { OUT_OK, OUT_RETRY, OUT_FAIL } outcome;

/* Whether a 2xx response is an S3 error document in disguise: S3 answers a late failure of
 * CompleteMultipartUpload with 200 and an <Error> body. Only a request that is not a GET or
 * HEAD can get one, and only a body whose root element is <Error>: an object read back (a
 * manifest naming a database "<Error>") is data, whatever it says. */
static int error_in_2xx(const tide_upload *u, const request *rq, const response *rs) {
  const char *p = rs->body.p;
  if (u->kind != DEST_S3 || !p || rs->status / 100 != 2 || strcmp(rq->method, "GET") == 0 ||
      strcmp(rq->method, "HEAD") == 0)
    return 0;
  p += strspn(p, " \t\r\n");
  if (strncmp(p, "<?xml", 5) == 0 && (p = strstr(p, "?>")))
    p += 2 + strspn(p + 2, " \t\r\n");
  return p && strncmp(p, "<Error>", 7) == 0;
}

/* Classifies a finished attempt. Success is 2xx without an <Error> document (see
 * error_in_2xx). */
static outcome classify(const tide_upload *u, const request *rq, const response *rs,
                        int allow_404) {
  char code[128] = "";
  if (rs->cc != CURLE_OK)
    return retryable_curl(rs->cc) ? OUT_RETRY : OUT_FAIL;
  /* an S3 error document's Code; a successful GET's body is the object, not XML */
  if (u->kind == DEST_S3 && rs->body.p && (rs->status / 100 != 2 || error_in_2xx(u, rq, rs)))
    tide_xml_value(rs->body.p, "Code", code, sizeof code, NULL);
  if (rs->status / 100 == 2) {
    if (error_in_2xx(u, rq, rs))
      return !code[0] || retryable_status(0, code) ? OUT_RETRY : OUT_FAIL;
    return OUT_OK;
  }
  if (allow_404 && rs->status == 404)
    return OUT_OK;
  return retryable_status(rs->status, code) ? OUT_RETRY : OUT_FAIL;
}

/* Runs rq with retries inside the operation's deadline. On failure err says what and why. */
static int perform(tide_upload *u, request *rq, response *rs, double deadline, int allow_404,
                   const char *what, tide_error *err) {
  char why[700];
  for (int n = 1;; n++) {
    outcome oc;
    double delay;
    if (tide_interrupted && interruptible(rq)) {
      tide_error_set(err, NULL, "%s: interrupted by %s", what, tide_signal_name(tide_interrupted));
      return -1;
    }
    if (attempt(u, rq, rs, deadline, err) != 0) {
      char local[sizeof err->message];
      snprintf(local, sizeof local, "%s", err->message);
      tide_error_set(err, NULL, "%s: %s", what, local);
      return -1;
    }
    oc = classify(u, rq, rs, allow_404);
    if (oc == OUT_OK)
      return 0;
    describe(rs, why, sizeof why);
    if (error_in_2xx(u, rq, rs)) {
      char code[128] = "";
      tide_xml_value(rs->body.p, "Code", code, sizeof code, NULL);
      snprintf(why, sizeof why, "HTTP %ld carrying an <Error> document (%s)", rs->status,
               code[0] ? code : "no code");
    }
    if (oc == OUT_FAIL) {
      tide_error_set(err, NULL, "%s: %s", what, why);
      return -1;
    }
    /* capped exponential backoff with equal jitter: half fixed, half random */
    delay = u->o.backoff_base * (double)(1u << (n < 16 ? n - 1 : 15));
    if (delay > u->o.backoff_cap)
      delay = u->o.backoff_cap;
    delay = delay / 2 + (delay / 2) * ((double)rand() / (double)RAND_MAX);
    if (n >= u->o.max_attempts || now_s() + delay >= deadline) {
      tide_error_set(err, NULL, "%s: %s (gave up after %d attempt%s)", what, why, n,
                     n == 1 ? "" : "s");
      return -1;
    }
    if (u->o.debug)
      fprintf(stderr, "tide: debug: %s: %s; retrying in %.1f s\n", what, why, delay);
    sleep_s(delay);
    if (tide_interrupted && interruptible(rq)) {
      tide_error_set(err, NULL, "%s: interrupted by %s", what, tide_signal_name(tide_interrupted));
      return -1;
    }
  }
}

/* The decoded path of an object name under the destination. */
static char *object_path(const tide_upload *u, const char *name) {
  const char *base =
      u->kind == DEST_FILE ? u->dir : u->base_path; /* the directory, or the URL path */
  size_t n = strlen(base) + strlen(name) + 1;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s%s", base, name);
  return p;
}

static int check_name(const char *name, tide_error *err) {
  if (!*name || name[0] == '/' || strstr(name, "..") || strchr(name, '?') || strchr(name, '#') ||
      strchr(name, '\\')) {
    tide_error_set(err, NULL, "invalid object name `%s`", name);
    return -1;
  }
  return 0;
}

/* object_path for a name that check_name accepts; NULL with err filled otherwise. */
static char *checked_object_path(const tide_upload *u, const char *name, tide_error *err) {
  char *path;
  if (check_name(name, err) != 0)
    return NULL;
  if (!(path = object_path(u, name)))
    tide_error_set(err, NULL, "out of memory");
  return path;
}

/* ---- file:// --------------------------------------------------------------------------- */

/* fsyncs the directory that holds path: what makes a new entry in it (a file renamed into
 * place, a new folder) survive a power loss. */
static int fsync_dir(const char *path) {
  char *d = strdup(path), *slash;
  int fd, rc = -1;
  if (!d)
    return -1;
  if ((slash = strrchr(d, '/')))
    slash[slash == d ? 1 : 0] = '\0';
  if ((fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
    rc = fsync(fd);
    close(fd);
  }
  free(d);
  return rc;
}

/* The destination folder must exist: tide creates the folders of its backups inside it, never
 * the folder itself (a typo in the URL, or a volume that is not mounted, must not become a
 * new folder on the root file system). */
static int check_dir(const tide_upload *u, tide_error *err) {
  struct stat st;
  if (stat(u->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    tide_error_set(
        err, NULL,
        "%s: %s (create the folder first: tide creates only each backup's own folder in it)",
        u->display, stat(u->dir, &st) != 0 ? strerror(errno) : "not a folder");
    return -1;
  }
  return 0;
}

/* Creates the folders of path below the destination folder (which must exist), fsyncing the
 * folder each new one is in, so that the backup's folder survives a power loss along with
 * the files in it. */
static int make_parents(const tide_upload *u, const char *path, tide_error *err) {
  char *p = strdup(path);
  int rc = 0;
  if (!p) {
    tide_error_set(err, NULL, "out of memory");
    return -1;
  }
  if (check_dir(u, err) != 0) {
    free(p);
    return -1;
  }
  for (char *s = p + strlen(u->dir); *s; s++) {
    if (*s != '/')
      continue;
    *s = '\0';
    if (mkdir(p, 0700) == 0) {
      if (fsync_dir(p) != 0) {
        tide_error_set(err, NULL, "fsync of the folder holding %s: %s", p, strerror(errno));
        rc = -1;
        break;
      }
    } else if (errno != EEXIST) {
      tide_error_set(err, NULL, "mkdir %s: %s", p, strerror(errno));
      rc = -1;
      break;
    }
    *s = '/';
  }
  free(p);
  return rc;
}

/* Writes fd's content (or data) to dir/name through a temporary name, fsync and rename. */
static int file_put(tide_upload *u, const char *name, int src_fd, const char *data,
                    unsigned long long len, tide_error *err) {
  char *final = object_path(u, name), *tmp = NULL;
  char *buf = data ? NULL : malloc(1 << 20);
  int fd = -1, rc = -1;
  unsigned long long done = 0;
  double last = 0;
  if (!final || (!data && !buf))
    goto oom;
  if (make_parents(u, final, err) != 0)
    goto cleanup;
  if (!(tmp = malloc(strlen(final) + 16)))
    goto oom;
  sprintf(tmp, "%s.tmp-XXXXXX", final);
  if ((fd = mkstemp(tmp)) < 0) {
    tide_error_set(err, NULL, "%s: %s", tmp, strerror(errno));
    free(tmp);
    tmp = NULL;
    goto cleanup;
  }
  /* locked while written: the next backup removes a temporary file only once its lock is free
   * (its tide is gone; see tide_upload_sweep) */
  flock(fd, LOCK_EX | LOCK_NB);
  while (done < len) {
    if (tide_interrupted) {
      tide_error_set(err, NULL, "interrupted by %s", tide_signal_name(tide_interrupted));
      goto cleanup;
    }
    size_t want = len - done > (1 << 20) ? (1 << 20) : (size_t)(len - done);
    const char *chunk = data ? data + done : buf;
    ssize_t n = (ssize_t)want, w;
    if (!data) {
      n = pread(src_fd, buf, want, (off_t)done);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        tide_error_set(err, NULL, "reading the archive: %s",
                       n < 0 ? strerror(errno) : "file shrank");
        goto cleanup;
      }
    }
    for (ssize_t off = 0; off < n; off += w) {
      w = write(fd, chunk + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR) {
        w = 0;
        continue;
      }
      if (w < 0) {
        tide_error_set(err, NULL, "writing %s: %s", tmp, strerror(errno));
        goto cleanup;
      }
    }
    done += (unsigned long long)n;
    if (u->o.progress && now_s() - last > 0.25) {
      last = now_s();
      if (u->o.progress(u->o.progress_ud, "upload", done, len) != 0) {
        tide_error_set(err, NULL, "interrupted");
        goto cleanup;
      }
    }
  }
  if (fsync(fd) != 0) {
    tide_error_set(err, NULL, "fsync %s: %s", tmp, strerror(errno));
    goto cleanup;
  }
  if (close(fd) != 0) {
    fd = -1;
    tide_error_set(err, NULL, "close %s: %s", tmp, strerror(errno));
    goto cleanup;
  }
  fd = -1;
  if (rename(tmp, final) != 0) {
    tide_error_set(err, NULL, "rename to %s: %s", final, strerror(errno));
    goto cleanup;
  }
  free(tmp);
  tmp = NULL;
  if (fsync_dir(final) != 0) {
    tide_error_set(err, NULL, "fsync of the directory of %s: %s", final, strerror(errno));
    goto cleanup;
  }
  rc = 0;
  goto cleanup;
oom:
  tide_error_set(err, NULL, "out of memory");
cleanup:
  if (fd >= 0)
    close(fd);
  if (tmp)
    unlink(tmp);
  free(tmp);
  free(final);
  free(buf);
  return rc;
}

/* ---- put ------------------------------------------------------------------------------- */

static int s3_multipart(tide_upload *u, const char *path, int fd, unsigned long long size,
                        char *etag_out, size_t etag_sz, tide_error *err);

int tide_upload_put_file(tide_upload *u, const char *name, const char *file, const char *sha256_hex,
                         const char *md5_hex, unsigned long long size, char *etag_out,
                         size_t etag_sz, tide_error *err) {
  int fd = -1, rc = -1;
  char *path = NULL, what[600], md5_b64[32];
  unsigned char md5[16];
  request rq;
  response rs;
  struct stat st;
  memset(&rs, 0, sizeof rs);
  if (etag_sz)
    etag_out[0] = '\0';
  if (check_name(name, err) != 0)
    return -1;
  if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
    tide_error_set(err, NULL, "%s: %s", file, strerror(errno));
    goto cleanup;
  }
  if ((unsigned long long)st.st_size != size) {
    tide_error_set(err, NULL, "%s is %lld bytes, expected %llu", file, (long long)st.st_size, size);
    goto cleanup;
  }
  if (u->kind == DEST_FILE) {
    rc = file_put(u, name, fd, NULL, size, err);
    if (rc == 0 && etag_sz)
      snprintf(etag_out, etag_sz, "%s", md5_hex);
    goto cleanup;
  }
  if (!(path = object_path(u, name)))
    goto oom;
  snprintf(what, sizeof what, "PUT %s%s", u->display, name);
  if (u->kind == DEST_S3 && size > u->o.multipart_threshold) {
    rc = s3_multipart(u, path, fd, size, etag_out, etag_sz, err);
    goto cleanup;
  }
  if (strlen(md5_hex) != 32 || hex_to_bin(md5_hex, md5, 16) != 0 || strlen(sha256_hex) != 64) {
    tide_error_set(err, NULL, "put_file needs the archive's sha256 and md5 in hex");
    goto cleanup;
  }
  b64(md5, 16, md5_b64);
  memset(&rq, 0, sizeof rq);
  rq.method = "PUT";
  rq.path = path;
  rq.body = (source){fd, NULL, 0, size, 0};
  rq.has_body = 1;
  rq.payload_sha256 = sha256_hex;
  rq.content_md5 = md5_b64;
  rq.sink_fd = -1;
  rq.progress_total = size;
  if (perform(u, &rq, &rs, now_s() + u->o.deadline, 0, what, err) != 0)
    goto cleanup;
  if (etag_sz)
    snprintf(etag_out, etag_sz, "%s", rs.etag);
  rc = 0;
  goto cleanup;
oom:
  tide_error_set(err, NULL, "out of memory");
cleanup:
  if (fd >= 0)
    close(fd);
  free(path);
  free(rs.body.p);
  return rc;
}

int tide_upload_put_data(tide_upload *u, const char *name, const char *data, size_t len,
                         tide_error *err) {
  char *path = NULL, what[600], sha[65], md5_b64[32];
  unsigned char md5[16];
  request rq;
  response rs;
  int rc = -1;
  memset(&rs, 0, sizeof rs);
  if (check_name(name, err) != 0)
    return -1;
  if (u->kind == DEST_FILE)
    return file_put(u, name, -1, data, len, err);
  if (!(path = object_path(u, name))) {
    tide_error_set(err, NULL, "out of memory");
    return -1;
  }
  if (digest_range(-1, data, 0, len, sha, md5, err) != 0)
    goto cleanup;
  b64(md5, 16, md5_b64);
  snprintf(what, sizeof what, "PUT %s%s", u->display, name);
  memset(&rq, 0, sizeof rq);
  rq.method = "PUT";
  rq.path = path;
  rq.body = (source){-1, data, 0, len, 0};
  rq.has_body = 1;
  rq.payload_sha256 = sha;
  rq.content_md5 = md5_b64;
  rq.content_type = strstr(name, ".json") ? "application/json" : NULL;
  rq.sink_fd = -1;
  rq.progress_total = len;
  rc = perform(u, &rq, &rs, now_s() + u->o.deadline, 0, what, err);
cleanup:
  free(path);
  free(rs.body.p);
  return rc;
}

static void s3_abort(tide_upload *u, const char *path, const char *upload_id, char *note,
                     size_t notesz) {
  char query[1100], what[600];
  request rq;
  response rs;
  tide_error err = {0};
  char *enc = tide_sigv4_uri_encode(upload_id, 0);
  memset(&rs, 0, sizeof rs);
  memset(&rq, 0, sizeof rq);
  snprintf(query, sizeof query, "uploadId=%s", enc ? enc : "");
  snprintf(what, sizeof what, "abort of the multipart upload");
  rq.method = "DELETE";
  rq.path = path;
  rq.query = query;
  rq.sink_fd = -1;
  /* a short deadline of its own: the main one may be spent already */
  if (!enc || perform(u, &rq, &rs, now_s() + 60, 1, what, &err) != 0)
    snprintf(note, notesz,
             "; the abort failed too (%.600s): remove the upload's parts with a lifecycle rule",
             enc ? err.message : "out of memory");
  free(enc);
  free(rs.body.p);
}

static int s3_multipart(tide_upload *u, const char *path, int fd, unsigned long long size,
                        char *etag_out, size_t etag_sz, tide_error *err) {
  unsigned long long part = u->o.part_size, nparts;
  char upload_id[1024] = "", *enc_id = NULL, query[1200], what[700], sha[65], md5_b64[32],
       note[900] = "";
  unsigned char md5[16], *all_md5 = NULL;
  char(*etags)[128] = NULL;
  mbuf xml = {0};
  request rq;
  response rs;
  double deadline = now_s() + u->o.deadline;
  int rc = -1, started = 0;
  EVP_MD_CTX *mm = NULL;

  memset(&rs, 0, sizeof rs);
  /* equal parts; at most 10000 of them */
  if ((size + part - 1) / part > 10000)
    part = (size + 9999) / 10000;
  nparts = (size + part - 1) / part;
  if (!(etags = calloc(nparts, sizeof *etags)) || !(all_md5 = malloc(16 * nparts)))
    goto oom;

  memset(&rq, 0, sizeof rq);
  rq.method = "POST";
  rq.path = path;
  rq.query = "uploads";
  rq.sink_fd = -1;
  snprintf(what, sizeof what, "starting the multipart upload of %s%s", u->display,
           path + strlen(u->base_path));
  if (perform(u, &rq, &rs, deadline, 0, what, err) != 0)
    goto cleanup;
  if (!tide_xml_value(rs.body.p, "UploadId", upload_id, sizeof upload_id, NULL) || !upload_id[0]) {
    tide_error_set(err, NULL, "%s: the response carries no UploadId", what);
    goto cleanup;
  }
  started = 1;
  if (!(enc_id = tide_sigv4_uri_encode(upload_id, 0)))
    goto oom;

  for (unsigned long long i = 0; i < nparts; i++) {
    off_t off = (off_t)(i * part);
    unsigned long long len = i + 1 < nparts ? part : size - i * part;
    if (digest_range(fd, NULL, off, len, sha, md5, err) != 0)
      goto cleanup;
    memcpy(all_md5 + 16 * i, md5, 16);
    b64(md5, 16, md5_b64);
    snprintf(query, sizeof query, "partNumber=%llu&uploadId=%s", i + 1, enc_id);
    snprintf(what, sizeof what, "PUT part %llu/%llu of %s%s", i + 1, nparts, u->display,
             path + strlen(u->base_path));
    memset(&rq, 0, sizeof rq);
    rq.method = "PUT";
    rq.path = path;
    rq.query = query;
    rq.body = (source){fd, NULL, off, len, 0};
    rq.has_body = 1;
    rq.payload_sha256 = sha;
    rq.content_md5 = md5_b64;
    rq.sink_fd = -1;
    rq.progress_base = i * part;
    rq.progress_total = size;
    if (perform(u, &rq, &rs, deadline, 0, what, err) != 0)
      goto cleanup;
    snprintf(etags[i], sizeof etags[i], "%s", rs.etag);
    if (!rs.etag[0]) {
      tide_error_set(err, NULL, "%s: no ETag in the response", what);
      goto cleanup;
    }
  }

  if (mb_str(&xml, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">") !=
      0)
    goto oom;
  for (unsigned long long i = 0; i < nparts; i++) {
    char p[256];
    snprintf(p, sizeof p, "<Part><PartNumber>%llu</PartNumber><ETag>\"%s\"</ETag></Part>", i + 1,
             etags[i]);
    if (mb_str(&xml, p) != 0)
      goto oom;
  }
  if (mb_str(&xml, "</CompleteMultipartUpload>") != 0)
    goto oom;
  if (digest_range(-1, xml.p, 0, xml.len, sha, md5, err) != 0)
    goto cleanup;
  b64(md5, 16, md5_b64);
  snprintf(query, sizeof query, "uploadId=%s", enc_id);
  snprintf(what, sizeof what, "completing the multipart upload of %s%s", u->display,
           path + strlen(u->base_path));
  memset(&rq, 0, sizeof rq);
  rq.method = "POST";
  rq.path = path;
  rq.query = query;
  rq.body = (source){-1, xml.p, 0, xml.len, 0};
  rq.has_body = 1;
  rq.payload_sha256 = sha;
  rq.content_md5 = md5_b64;
  rq.content_type = "application/xml";
  rq.sink_fd = -1;
  if (perform(u, &rq, &rs, deadline, 0, what, err) != 0)
    goto cleanup;
  {
    /* the multipart ETag S3 computes: MD5 of the parts' MD5s, "-N" */
    unsigned char m[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;
    char hex[33];
    if (!(mm = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(mm, EVP_md5(), NULL) ||
        !EVP_DigestUpdate(mm, all_md5, 16 * nparts) || !EVP_DigestFinal_ex(mm, m, &mlen))
      goto oom;
    tide_sigv4_hex(m, 16, hex);
    if (etag_sz)
      snprintf(etag_out, etag_sz, "%s-%llu", hex, nparts);
  }
  rc = 0;
  goto cleanup;
oom:
  tide_error_set(err, NULL, "out of memory");
cleanup:
  if (rc != 0 && started) {
    const char *tail = note;
    size_t used = strlen(err->message), room = sizeof err->message - 1 - used;
    s3_abort(u, path, upload_id, note, sizeof note);
    if (!note[0])
      tail = "; the multipart upload was aborted";
    strncat(err->message, tail, room);
  }
  EVP_MD_CTX_free(mm);
  free(enc_id);
  free(etags);
  free(all_md5);
  free(xml.p);
  free(rs.body.p);
  return rc;
}

/* ---- head, get, list, delete ----------------------------------------------------------- */

int tide_upload_head(tide_upload *u, const char *name, int *exists, unsigned long long *size,
                     char *etag, size_t etag_sz, tide_error *err) {
  char *path = NULL, what[600];
  request rq;
  response rs;
  int rc = -1;
  *exists = 0;
  *size = 0;
  if (etag_sz)
    etag[0] = '\0';
  if (!(path = checked_object_path(u, name, err)))
    return -1;
  if (u->kind == DEST_FILE) {
    struct stat st;
    if (check_dir(u, err) != 0) {
      free(path);
      return -1;
    }
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
      *exists = 1;
      *size = (unsigned long long)st.st_size;
    } else if (errno != ENOENT) {
      tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
      free(path);
      return -1;
    }
    free(path);
    return 0;
  }
  memset(&rs, 0, sizeof rs);
  memset(&rq, 0, sizeof rq);
  rq.method = "HEAD";
  rq.path = path;
  rq.sink_fd = -1;
  snprintf(what, sizeof what, "HEAD %s%s", u->display, name);
  if (perform(u, &rq, &rs, now_s() + u->o.deadline, 1, what, err) == 0) {
    curl_off_t cl = -1;
    if (rs.status / 100 == 2) {
      *exists = 1;
      curl_easy_getinfo(u->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
      *size = cl > 0 ? (unsigned long long)cl : 0;
      if (etag_sz)
        snprintf(etag, etag_sz, "%s", rs.etag);
    }
    rc = 0;
  }
  free(path);
  free(rs.body.p);
  return rc;
}

int tide_upload_get_file(tide_upload *u, const char *name, const char *file,
                         unsigned long long max_size, unsigned long long *size, char sha256_hex[65],
                         tide_error *err) {
  char *path = NULL, what[600];
  request rq;
  response rs;
  int fd = -1, rc = -1;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen;
  memset(&rs, 0, sizeof rs);
  if (check_name(name, err) != 0)
    return -1;
  if (!(path = object_path(u, name)) || !(rs.sink_sha = EVP_MD_CTX_new())) {
    tide_error_set(err, NULL, "out of memory");
    goto cleanup;
  }
  if ((fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
    tide_error_set(err, NULL, "%s: %s", file, strerror(errno));
    goto cleanup;
  }
  if (u->kind == DEST_FILE) {
    tide_dump_result d = {.size = 0};
    int src = open(path, O_RDONLY | O_CLOEXEC);
    char buf[1 << 16];
    ssize_t n;
    if (src < 0) {
      tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
      goto cleanup;
    }
    while ((n = read(src, buf, sizeof buf)) > 0) {
      if (tide_interrupted || (max_size && (d.size += (unsigned long long)n) > max_size)) {
        if (tide_interrupted)
          tide_error_set(err, NULL, "interrupted by %s", tide_signal_name(tide_interrupted));
        else
          tide_error_set(err, NULL, "%s is larger than the %llu bytes expected: not copied", path,
                         max_size);
        close(src);
        goto cleanup;
      }
      if (write(fd, buf, (size_t)n) != n) {
        tide_error_set(err, NULL, "writing %s: %s", file, strerror(errno));
        close(src);
        goto cleanup;
      }
    }
    close(src);
    if (n < 0) {
      tide_error_set(err, NULL, "reading %s: %s", path, strerror(errno));
      goto cleanup;
    }
    if (tide_dump_digest(file, &d, err) != 0)
      goto cleanup;
    *size = d.size;
    memcpy(sha256_hex, d.sha256, 65);
    rc = 0;
    goto cleanup;
  }
  memset(&rq, 0, sizeof rq);
  rq.method = "GET";
  rq.path = path;
  rq.sink_fd = fd;
  rq.max_size = max_size;
  snprintf(what, sizeof what, "GET %s%s", u->display, name);
  if (perform(u, &rq, &rs, now_s() + u->o.deadline, 0, what, err) != 0)
    goto cleanup;
  EVP_DigestFinal_ex(rs.sink_sha, md, &mdlen);
  tide_sigv4_hex(md, mdlen, sha256_hex);
  *size = rs.sink_bytes;
  rc = 0;
cleanup:
  if (fd >= 0 && close(fd) != 0 && rc == 0) {
    tide_error_set(err, NULL, "%s: %s", file, strerror(errno));
    rc = -1;
  }
  EVP_MD_CTX_free(rs.sink_sha);
  free(path);
  free(rs.body.p);
  return rc;
}

int tide_upload_get_data(tide_upload *u, const char *name, char **data, size_t *len,
                         tide_error *err) {
  char *path = NULL, what[600];
  request rq;
  response rs;
  int rc = -1;
  *data = NULL;
  *len = 0;
  if (!(path = checked_object_path(u, name, err)))
    return -1;
  memset(&rs, 0, sizeof rs);
  if (u->kind == DEST_FILE) {
    FILE *f = fopen(path, "rb");
    char buf[65536];
    size_t n;
    if (!f) {
      tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
      goto cleanup;
    }
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
      if (mb_add(&rs.body, buf, n) != 0) {
        fclose(f);
        tide_error_set(err, NULL, "%s: too large", path);
        goto cleanup;
      }
    fclose(f);
  } else {
    memset(&rq, 0, sizeof rq);
    rq.method = "GET";
    rq.path = path;
    rq.sink_fd = -1;
    snprintf(what, sizeof what, "GET %s%s", u->display, name);
    if (perform(u, &rq, &rs, now_s() + u->o.deadline, 0, what, err) != 0)
      goto cleanup;
    if (rs.body.overflow) {
      tide_error_set(err, NULL, "%s: too large", what);
      goto cleanup;
    }
  }
  *data = rs.body.p ? rs.body.p : strdup("");
  *len = rs.body.len;
  rs.body.p = NULL;
  rc = *data ? 0 : -1;
cleanup:
  free(path);
  free(rs.body.p);
  return rc;
}

void tide_upload_entries_free(tide_upload_entry *e, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(e[i].name);
  free(e);
}

typedef struct entries {
  tide_upload_entry *e;
  size_t n, cap;
} entries;

static int entries_add(entries *es, const char *name, unsigned long long size, long long mtime) {
  if (es->n == es->cap) {
    tide_upload_entry *g = realloc(es->e, (es->cap = es->cap ? 2 * es->cap : 64) * sizeof *g);
    if (!g)
      return -1;
    es->e = g;
  }
  if (!(es->e[es->n].name = strdup(name)))
    return -1;
  es->e[es->n].mtime = mtime;
  es->e[es->n++].size = size;
  return 0;
}

/* Moves n entries (and their names) to the end of es; e itself is left to the caller to free. */
static int entries_take(entries *es, tide_upload_entry *e, size_t n) {
  if (es->n + n > es->cap) {
    size_t cap = es->cap ? es->cap : 64;
    tide_upload_entry *g;
    while (cap < es->n + n)
      cap *= 2;
    if (!(g = realloc(es->e, cap * sizeof *g)))
      return -1;
    es->e = g;
    es->cap = cap;
  }
  if (n)
    memcpy(es->e + es->n, e, n * sizeof *e);
  es->n += n;
  return 0;
}

/* Seconds since the epoch of an S3 time, "2026-11-24T10:18:34.000Z" (UTC); 0 when [a, b) is
 * not one. Days from the civil date as in Howard Hinnant's algorithm: no timegm needed. */
static long long parse_time(const char *a, const char *b) {
  int y, mo, d, h, mi, sec, used = 0;
  char text[40];
  long long era, yoe, doy, doe;
  if (b - a >= (long)sizeof text)
    return 0;
  memcpy(text, a, (size_t)(b - a));
  text[b - a] = '\0';
  if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &used) != 6 ||
      used != 19 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 ||
      y < 1970)
    return 0;
  y -= mo <= 2;
  era = y / 400;
  yoe = y - era * 400;
  doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return (era * 146097 + doe - 719468) * 86400 + h * 3600 + mi * 60 + sec;
}

/* A <Size>: decimal digits only, no sign, no overflow (strtoull would take "-1" and " 7"). */
static int parse_size(const char *a, const char *b, unsigned long long *size) {
  unsigned long long v = 0;
  if (a == b)
    return 0;
  for (const char *p = a; p < b; p++) {
    if (*p < '0' || *p > '9' || v > (ULLONG_MAX - (unsigned)(*p - '0')) / 10)
      return 0;
    v = v * 10 + (unsigned)(*p - '0');
  }
  *size = v;
  return 1;
}

int tide_s3_parse_list(const char *body, const char *prefix, tide_upload_entry **out, size_t *n,
                       char *token, size_t tokensz, tide_error *err) {
  entries es = {0};
  const char *end, *from, *a, *b;
  size_t plen = strlen(prefix);
  char truncated[16] = "false";
  int rc = 0;
  *out = NULL;
  *n = 0;
  if (tokensz > 0)
    token[0] = '\0';
  if (!body)
    return 0;
  end = body + strlen(body);
  for (from = body; (from = find_in(from, end, "<Contents>"));) {
    const char *close = find_in(from, end, "</Contents>"), *sa, *sb;
    unsigned long long size;
    if (!close)
      break;
    /* Key and Size of this element only; an element lacking either (or with a Size that is not
     * a number) is skipped rather than completed from the next one */
    if (xml_find(from, close, "Key", &a, &b, NULL) &&
        xml_find(from, close, "Size", &sa, &sb, NULL) && parse_size(sa, sb, &size)) {
      size_t len = xml_unescape(a, b, NULL, 0);
      char *key = malloc(len + 1);
      long long mtime =
          xml_find(from, close, "LastModified", &sa, &sb, NULL) ? parse_time(sa, sb) : 0;
      if (!key)
        goto oom;
      xml_unescape(a, b, key, len + 1);
      if (strncmp(key, prefix, plen) != 0) {
        free(key);
      } else {
        memmove(key, key + plen, len - plen + 1);
        if (entries_take(&es, &(tide_upload_entry){key, size, mtime}, 1) != 0) {
          free(key);
          goto oom;
        }
      }
    }
    from = close + strlen("</Contents>");
  }
  tide_xml_value(body, "IsTruncated", truncated, sizeof truncated, NULL);
  /* a missing or empty token ends the listing: asking again without one would restart it */
  if (strcmp(truncated, "true") == 0 &&
      xml_find(body, end, "NextContinuationToken", &a, &b, NULL) && a < b) {
    if (xml_unescape(a, b, token, tokensz) >= tokensz) {
      tide_error_set(err, NULL, "the continuation token is longer than %zu bytes",
                     tokensz ? tokensz - 1 : 0);
      goto fail;
    }
    rc = 1;
  }
  *out = es.e;
  *n = es.n;
  return rc;
oom:
  tide_error_set(err, NULL, "out of memory");
fail:
  tide_upload_entries_free(es.e, es.n);
  if (tokensz > 0)
    token[0] = '\0';
  return -1;
}

/* Files under dir (relative names), two levels deep: <id>/<file>. */
static int file_list(const char *base, const char *sub, int depth, entries *es, tide_error *err) {
  char path[4096];
  DIR *d;
  struct dirent *e;
  int rc = 0;
  snprintf(path, sizeof path, "%s%s", base, sub);
  if (!(d = opendir(path))) {
    if (errno == ENOENT)
      return 0;
    tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
    return -1;
  }
  while (rc == 0 && (e = readdir(d))) {
    char rel[4096], full[8192];
    struct stat st;
    if (e->d_name[0] == '.' || strstr(e->d_name, ".tmp-"))
      continue;
    snprintf(rel, sizeof rel, "%s%s", sub, e->d_name);
    snprintf(full, sizeof full, "%s%s", base, rel);
    if (stat(full, &st) != 0)
      continue;
    if (S_ISDIR(st.st_mode) && depth > 0) {
      strncat(rel, "/", sizeof rel - strlen(rel) - 1);
      rc = file_list(base, rel, depth - 1, es, err);
    } else if (S_ISREG(st.st_mode) &&
               entries_add(es, rel, (unsigned long long)st.st_size, (long long)st.st_mtime) != 0) {
      tide_error_set(err, NULL, "out of memory");
      rc = -1;
    }
  }
  closedir(d);
  return rc;
}

int tide_upload_list(tide_upload *u, tide_upload_entry **out, size_t *n, tide_error *err) {
  entries es = {0};
  char query[2048], token[1024] = "", what[600];
  char *prefix = NULL, *enc_prefix = NULL, *bucket_path = NULL;
  response rs;
  request rq;
  int rc = -1;
  *out = NULL;
  *n = 0;
  memset(&rs, 0, sizeof rs);
  if (u->kind == DEST_FILE) {
    if (check_dir(u, err) != 0 || file_list(u->dir, "", 2, &es, err) != 0)
      goto cleanup;
    rc = 0;
    goto cleanup;
  }
  if (u->kind == DEST_HTTP) {
    tide_error_set(
        err, NULL,
        "%s: an http(s) destination cannot be listed; use file:// or s3:// for `tide backups` "
        "and `keep`",
        u->display);
    goto cleanup;
  }
  /* ListObjectsV2 on the bucket, with the prefix the destination adds to every key */
  bucket_path = strdup(u->list_path);
  prefix = strdup(u->key_prefix);
  if (!bucket_path || !prefix || !(enc_prefix = tide_sigv4_uri_encode(prefix, 0)))
    goto oom;
  snprintf(what, sizeof what, "listing %s", u->display);
  for (;;) {
    tide_upload_entry *page;
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
    memset(&rq, 0, sizeof rq);
    rq.method = "GET";
    rq.path = bucket_path;
    rq.query = query;
    rq.sink_fd = -1;
    if (perform(u, &rq, &rs, now_s() + u->o.deadline, 0, what, err) != 0)
      goto cleanup;
    if (rs.body.overflow) {
      tide_error_set(err, NULL, "%s: response too large", what);
      goto cleanup;
    }
    more = tide_s3_parse_list(rs.body.p, prefix, &page, &npage, token, sizeof token, err);
    if (more < 0) {
      char local[sizeof err->message];
      snprintf(local, sizeof local, "%s", err->message);
      tide_error_set(err, NULL, "%s: %s", what, local);
      goto cleanup;
    }
    if (entries_take(&es, page, npage) != 0) {
      tide_upload_entries_free(page, npage);
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
  if (rc == 0) {
    *out = es.e;
    *n = es.n;
  } else {
    tide_upload_entries_free(es.e, es.n);
  }
  free(prefix);
  free(enc_prefix);
  free(bucket_path);
  free(rs.body.p);
  return rc;
}

/* ---- stale temporary objects ------------------------------------------------------------- */

/* Whether [a, b) is a backup id as tide.backup makes them: <YYYYMMDD>T<HHMMSSmmm>Z-<db>-<6 hex>. */
static int backup_id(const char *a, const char *b) {
  size_t n = (size_t)(b - a);
  if (n < 27 || a[8] != 'T' || a[18] != 'Z' || a[19] != '-' || b[-7] != '-')
    return 0;
  for (size_t i = 0; i < 18; i++)
    if (i != 8 && (a[i] < '0' || a[i] > '9'))
      return 0;
  for (const char *p = b - 6; p < b; p++)
    if (!strchr("0123456789abcdef", *p))
      return 0;
  return !memchr(a, '/', n);
}

/* file://: the temporary files of tide's own put (<id>/<name>.tmp-XXXXXX) whose writer is
 * gone (their lock is free; see tide_spool_is_stale), and the backup folder when that leaves
 * it empty. */
static int file_sweep(tide_upload *u, entries *es, tide_error *err) {
  DIR *top, *d;
  struct dirent *e, *f;
  if (check_dir(u, err) != 0)
    return -1;
  if (!(top = opendir(u->dir))) {
    tide_error_set(err, NULL, "%s: %s", u->dir, strerror(errno));
    return -1;
  }
  while ((e = readdir(top))) {
    char sub[8192];
    int removed = 0;
    if (!backup_id(e->d_name, e->d_name + strlen(e->d_name)))
      continue;
    snprintf(sub, sizeof sub, "%s%s", u->dir, e->d_name);
    if (!(d = opendir(sub)))
      continue;
    while ((f = readdir(d))) {
      const char *t = strstr(f->d_name, ".tmp-");
      char rel[8192];
      if (!t || strlen(t) != 11 ||
          (strncmp(f->d_name, "archive.dump.", 13) != 0 &&
           strncmp(f->d_name, "manifest.json.", 14) != 0) ||
          !tide_spool_remove_stale(sub, f->d_name, 60))
        continue;
      removed = 1;
      snprintf(rel, sizeof rel, "%s/%s", e->d_name, f->d_name);
      if (entries_add(es, rel, 0, 0) != 0) {
        tide_error_set(err, NULL, "out of memory");
        closedir(d);
        closedir(top);
        return -1;
      }
    }
    closedir(d);
    if (removed)
      rmdir(sub); /* only when empty */
  }
  closedir(top);
  return 0;
}

/* s3://: the multipart uploads of tide's archives (<prefix><id>/archive.dump) started more than
 * max_age seconds ago, aborted: a tide killed while uploading leaves its parts stored (and
 * billed), invisible to listings. One page (1000 uploads) per call. */
static int s3_sweep(tide_upload *u, double max_age, entries *es, tide_error *err) {
  char *enc_prefix = tide_sigv4_uri_encode(u->key_prefix, 0), *query = NULL, what[600];
  const char *from, *end, *close_tag, *a, *b;
  request rq;
  response rs;
  int rc = -1;
  size_t plen = strlen(u->key_prefix);
  long long now = (long long)time(NULL);
  memset(&rs, 0, sizeof rs);
  if (!enc_prefix || !(query = malloc(strlen(enc_prefix) + 32))) {
    tide_error_set(err, NULL, "out of memory");
    goto cleanup;
  }
  sprintf(query, "prefix=%s&uploads=", enc_prefix);
  memset(&rq, 0, sizeof rq);
  rq.method = "GET";
  rq.path = u->list_path;
  rq.query = query;
  rq.sink_fd = -1;
  snprintf(what, sizeof what, "listing the unfinished uploads at %s", u->display);
  if (perform(u, &rq, &rs, now_s() + u->o.deadline, 0, what, err) != 0)
    goto cleanup;
  end = rs.body.p ? rs.body.p + rs.body.len : NULL;
  for (from = rs.body.p; from && (from = find_in(from, end, "<Upload>")); from = close_tag) {
    char key[1100], id[1024], initiated[64], *path, note[900] = "";
    if (!(close_tag = find_in(from, end, "</Upload>")))
      break;
    if (!xml_find(from, close_tag, "Key", &a, &b, NULL) ||
        xml_unescape(a, b, key, sizeof key) >= sizeof key ||
        !xml_find(from, close_tag, "UploadId", &a, &b, NULL) ||
        xml_unescape(a, b, id, sizeof id) >= sizeof id ||
        !xml_find(from, close_tag, "Initiated", &a, &b, NULL) ||
        xml_unescape(a, b, initiated, sizeof initiated) >= sizeof initiated)
      continue;
    /* only tide's own: <prefix><id>/archive.dump, and only an old one */
    if (strncmp(key, u->key_prefix, plen) != 0 || strlen(key) < plen + 14 ||
        strcmp(key + strlen(key) - 13, "/archive.dump") != 0 ||
        !backup_id(key + plen, key + strlen(key) - 13) ||
        now - parse_time(initiated, initiated + strlen(initiated)) < (long long)max_age)
      continue;
    if (!(path = object_path(u, key + plen))) {
      tide_error_set(err, NULL, "out of memory");
      goto cleanup;
    }
    s3_abort(u, path, id, note, sizeof note);
    free(path);
    if (!note[0] && entries_add(es, key + plen, 0, 0) != 0) {
      tide_error_set(err, NULL, "out of memory");
      goto cleanup;
    }
  }
  rc = 0;
cleanup:
  free(enc_prefix);
  free(query);
  free(rs.body.p);
  return rc;
}

int tide_upload_sweep(tide_upload *u, double max_age, tide_upload_entry **out, size_t *n,
                      tide_error *err) {
  entries es = {0};
  int rc = 0;
  *out = NULL;
  *n = 0;
  if (u->kind == DEST_FILE)
    rc = file_sweep(u, &es, err);
  else if (u->kind == DEST_S3)
    rc = s3_sweep(u, max_age, &es, err);
  if (rc != 0) {
    tide_upload_entries_free(es.e, es.n);
    return -1;
  }
  *out = es.e;
  *n = es.n;
  return 0;
}

int tide_upload_delete(tide_upload *u, const char *name, tide_error *err) {
  char *path = NULL, what[600];
  request rq;
  response rs;
  int rc = -1;
  if (!(path = checked_object_path(u, name, err)))
    return -1;
  memset(&rs, 0, sizeof rs);
  if (u->kind == DEST_FILE) {
    if (unlink(path) != 0 && errno != ENOENT) {
      tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
    } else {
      /* remove the backup's directory once it is empty */
      char *slash = strrchr(path, '/');
      if (slash && (size_t)(slash - path) > strlen(u->dir)) {
        *slash = '\0';
        rmdir(path);
      }
      rc = 0;
    }
    free(path);
    return rc;
  }
  memset(&rq, 0, sizeof rq);
  rq.method = "DELETE";
  rq.path = path;
  rq.sink_fd = -1;
  snprintf(what, sizeof what, "DELETE %s%s", u->display, name);
  rc = perform(u, &rq, &rs, now_s() + u->o.deadline, 1, what, err);
  free(path);
  free(rs.body.p);
  return rc;
}

/* ---- Lua bindings: tide.Destination ------------------------------------------------------- */

typedef struct ldest {
  tide_upload *u; /* NULL once closed */
  lua_State *L;   /* the thread of the running method, for the progress callback */
  int progress_ref;
  int failed_ref; /* the progress callback's error, re-raised after the operation */
} ldest;

static ldest *check_dest(lua_State *L) {
  ldest *d = luaL_checkudata(L, 1, TIDE_DESTINATION);
  if (!d->u)
    luaL_error(L, "destination is closed");
  return d;
}

/* In protected mode: an error in the callback stops the transfer; nothing raises inside libcurl. */
static int progress_to_lua(void *ud, const char *stage, unsigned long long done,
                           unsigned long long total) {
  ldest *d = ud;
  lua_State *L = d->L;
  if (d->progress_ref == LUA_NOREF || !L)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, d->progress_ref);
  lua_pushstring(L, stage);
  lua_pushinteger(L, (lua_Integer)done);
  lua_pushinteger(L, (lua_Integer)total);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    luaL_unref(L, LUA_REGISTRYINDEX, d->failed_ref);
    d->failed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
  }
  return 0;
}

static int raise_dest(lua_State *L, ldest *d, const tide_error *err) {
  if (d->failed_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->failed_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, d->failed_ref);
    d->failed_ref = LUA_NOREF;
    return lua_error(L);
  }
  return tide_error_raise(L, "backup", err);
}

static const char *field_string(lua_State *L, int idx, const char *key) {
  const char *s = NULL;
  lua_getfield(L, idx, key);
  if (!lua_isnil(L, -1))
    s = luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the table keeps the string alive */
  return s;
}

static lua_Number field_number(lua_State *L, int idx, const char *key) {
  lua_Number v = 0;
  lua_getfield(L, idx, key);
  if (!lua_isnil(L, -1))
    v = luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* core.destination{url=, access_key_id=, secret_access_key=, session_token=, region=, endpoint=,
 *   headers={"Name: value", ...}, ca_file=, deadline=, max_attempts=, backoff_base=, backoff_cap=,
 *   low_speed_limit=, low_speed_time=, connect_timeout=, multipart_threshold=, part_size=,
 *   debug=, progress=fn(stage, done, total)} -> tide.Destination | raises tide.Error */
static int l_destination(lua_State *L) {
  static const char *const keys[] = {"url",
                                     "access_key_id",
                                     "secret_access_key",
                                     "session_token",
                                     "region",
                                     "endpoint",
                                     "headers",
                                     "ca_file",
                                     "deadline",
                                     "max_attempts",
                                     "backoff_base",
                                     "backoff_cap",
                                     "low_speed_limit",
                                     "low_speed_time",
                                     "connect_timeout",
                                     "multipart_threshold",
                                     "part_size",
                                     "debug",
                                     "progress",
                                     NULL};
  tide_upload_opts o;
  tide_error err = {0};
  const char **headers = NULL;
  ldest *d;
  int rc;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    int ok = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING)
      for (int i = 0; keys[i]; i++)
        ok |= strcmp(lua_tostring(L, -1), keys[i]) == 0;
    if (!ok)
      return luaL_error(L, "core.destination: unknown option `%s`", luaL_tolstring(L, -1, NULL));
  }
  /* the userdata first, closed, so a failure below leaves nothing to leak */
  d = lua_newuserdatauv(L, sizeof *d, 0); /* [opts, dest] */
  d->u = NULL;
  d->L = NULL;
  d->progress_ref = d->failed_ref = LUA_NOREF;
  luaL_setmetatable(L, TIDE_DESTINATION);
  memset(&o, 0, sizeof o);
  o.url = field_string(L, 1, "url");
  luaL_argcheck(L, o.url != NULL, 1, "url is required");
  o.access_key = field_string(L, 1, "access_key_id");
  o.secret_key = field_string(L, 1, "secret_access_key");
  o.session_token = field_string(L, 1, "session_token");
  o.region = field_string(L, 1, "region");
  o.endpoint = field_string(L, 1, "endpoint");
  o.ca_file = field_string(L, 1, "ca_file");
  o.deadline = field_number(L, 1, "deadline");
  o.max_attempts = (int)field_number(L, 1, "max_attempts");
  o.backoff_base = field_number(L, 1, "backoff_base");
  o.backoff_cap = field_number(L, 1, "backoff_cap");
  o.low_speed_limit = (long)field_number(L, 1, "low_speed_limit");
  o.low_speed_time = (long)field_number(L, 1, "low_speed_time");
  o.connect_timeout = (long)field_number(L, 1, "connect_timeout");
  o.multipart_threshold = (unsigned long long)field_number(L, 1, "multipart_threshold");
  o.part_size = (unsigned long long)field_number(L, 1, "part_size");
  lua_getfield(L, 1, "debug");
  o.debug = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "headers") == LUA_TTABLE) { /* [opts, dest, headers] */
    o.nheaders = (size_t)luaL_len(L, -1);
    headers = lua_newuserdatauv(L, (o.nheaders + 1) * sizeof *headers, 0); /* freed by the GC */
    for (size_t i = 0; i < o.nheaders; i++) {
      size_t len;
      lua_geti(L, -2, (lua_Integer)i + 1);
      headers[i] = luaL_checklstring(L, -1, &len);
      if (strlen(headers[i]) != len) /* C would send it cut at the NUL */
        return luaL_error(L, "core.destination: header %d contains a NUL byte", (int)i + 1);
      lua_pop(L, 1); /* the headers table keeps it alive */
    }
    o.headers = headers;
  }
  if (lua_getfield(L, 1, "progress") == LUA_TFUNCTION)
    d->progress_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);
  o.progress = progress_to_lua;
  o.progress_ud = d;
  rc = tide_upload_open(&d->u, &o, &err); /* copies every string it keeps */
  if (rc != 0)
    return tide_error_raise(L, "backup", &err);
  lua_settop(L, 2);
  return 1;
}

/* dest:display() -> "s3://bucket/prefix/" (no credentials) */
static int l_dest_display(lua_State *L) {
  lua_pushstring(L, tide_upload_display(check_dest(L)->u));
  return 1;
}

/* dest:put_file(name, path, {sha256=, md5=, size=}) -> etag | raises tide.Error */
static int l_dest_put_file(lua_State *L) {
  ldest *d = check_dest(L);
  const char *name = luaL_checkstring(L, 2), *path = luaL_checkstring(L, 3);
  const char *sha, *md5;
  lua_Integer size;
  char etag[128];
  tide_error err = {0};
  luaL_checktype(L, 4, LUA_TTABLE);
  sha = field_string(L, 4, "sha256");
  md5 = field_string(L, 4, "md5");
  lua_getfield(L, 4, "size");
  size = luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  luaL_argcheck(L, sha && md5, 4, "sha256 and md5 are required");
  d->L = L;
  if (tide_upload_put_file(d->u, name, path, sha, md5, (unsigned long long)size, etag, sizeof etag,
                           &err) != 0)
    return raise_dest(L, d, &err);
  lua_pushstring(L, etag);
  return 1;
}

/* dest:put_string(name, data) | raises tide.Error */
static int l_dest_put_string(lua_State *L) {
  ldest *d = check_dest(L);
  size_t len;
  const char *name = luaL_checkstring(L, 2), *data = luaL_checklstring(L, 3, &len);
  tide_error err = {0};
  d->L = L;
  if (tide_upload_put_data(d->u, name, data, len, &err) != 0)
    return raise_dest(L, d, &err);
  return 0;
}

/* dest:head(name) -> {size=, etag=} | nil when absent | raises tide.Error */
static int l_dest_head(lua_State *L) {
  ldest *d = check_dest(L);
  int exists = 0;
  unsigned long long size = 0;
  char etag[128];
  tide_error err = {0};
  d->L = L;
  if (tide_upload_head(d->u, luaL_checkstring(L, 2), &exists, &size, etag, sizeof etag, &err) != 0)
    return raise_dest(L, d, &err);
  if (!exists) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)size);
  lua_setfield(L, -2, "size");
  if (etag[0]) {
    lua_pushstring(L, etag);
    lua_setfield(L, -2, "etag");
  }
  return 1;
}

/* dest:get_file(name, path [, max_size]) -> {size=, sha256=} | raises tide.Error: an object
 * larger than max_size bytes is refused, not downloaded */
static int l_dest_get_file(lua_State *L) {
  ldest *d = check_dest(L);
  unsigned long long size = 0;
  lua_Integer max = luaL_optinteger(L, 4, 0);
  char sha[65];
  tide_error err = {0};
  luaL_argcheck(L, max >= 0, 4, "a size in bytes");
  d->L = L;
  if (tide_upload_get_file(d->u, luaL_checkstring(L, 2), luaL_checkstring(L, 3),
                           (unsigned long long)max, &size, sha, &err) != 0)
    return raise_dest(L, d, &err);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)size);
  lua_setfield(L, -2, "size");
  lua_pushstring(L, sha);
  lua_setfield(L, -2, "sha256");
  return 1;
}

/* dest:get_string(name) -> data | raises tide.Error */
static int l_dest_get_string(lua_State *L) {
  ldest *d = check_dest(L);
  char *data = NULL;
  size_t len = 0;
  tide_error err = {0};
  d->L = L;
  if (tide_upload_get_data(d->u, luaL_checkstring(L, 2), &data, &len, &err) != 0)
    return raise_dest(L, d, &err);
  lua_pushlstring(L, data, len); /* only a memory error can raise here */
  free(data);
  return 1;
}

/* dest:list() -> {{name=, size=, mtime=}, ...} (names relative to the destination; mtime in
 * seconds since the epoch, when known) | raises tide.Error */
static int l_dest_list(lua_State *L) {
  ldest *d = check_dest(L);
  tide_upload_entry *e = NULL;
  size_t n = 0;
  tide_error err = {0};
  d->L = L;
  if (tide_upload_list(d->u, &e, &n, &err) != 0)
    return raise_dest(L, d, &err);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, e[i].name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, (lua_Integer)e[i].size);
    lua_setfield(L, -2, "size");
    if (e[i].mtime) {
      lua_pushinteger(L, (lua_Integer)e[i].mtime);
      lua_setfield(L, -2, "mtime");
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  tide_upload_entries_free(e, n);
  return 1;
}

/* dest:sweep(max_age) -> {name, ...} | raises tide.Error: removes the temporary objects of tide's
 * own that a killed tide left behind (file://: temporary files whose writer is gone; s3://:
 * multipart uploads of archives started over max_age seconds ago) */
static int l_dest_sweep(lua_State *L) {
  ldest *d = check_dest(L);
  lua_Number max_age = luaL_checknumber(L, 2);
  tide_upload_entry *e = NULL;
  size_t n = 0;
  tide_error err = {0};
  d->L = L;
  if (tide_upload_sweep(d->u, max_age, &e, &n, &err) != 0)
    return raise_dest(L, d, &err);
  lua_createtable(L, (int)n, 0); /* a memory error here leaks e: rare, and bounded */
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, e[i].name);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  tide_upload_entries_free(e, n);
  return 1;
}

/* dest:delete(name) | raises tide.Error (absent objects are not an error) */
static int l_dest_delete(lua_State *L) {
  ldest *d = check_dest(L);
  tide_error err = {0};
  d->L = L;
  if (tide_upload_delete(d->u, luaL_checkstring(L, 2), &err) != 0)
    return raise_dest(L, d, &err);
  return 0;
}

/* dest:close(); also __gc and __close. Idempotent. */
static int l_dest_close(lua_State *L) {
  ldest *d = luaL_checkudata(L, 1, TIDE_DESTINATION);
  tide_upload_close(d->u);
  d->u = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, d->progress_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, d->failed_ref);
  d->progress_ref = d->failed_ref = LUA_NOREF;
  return 0;
}

static int l_dest_tostring(lua_State *L) {
  ldest *d = luaL_checkudata(L, 1, TIDE_DESTINATION);
  lua_pushfstring(L, "tide.Destination (%s)", d->u ? tide_upload_display(d->u) : "closed");
  return 1;
}

static const luaL_Reg dest_methods[] = {
    {"display", l_dest_display},
    {"put_file", l_dest_put_file},
    {"put_string", l_dest_put_string},
    {"head", l_dest_head},
    {"get_file", l_dest_get_file},
    {"get_string", l_dest_get_string},
    {"list", l_dest_list},
    {"delete", l_dest_delete},
    {"sweep", l_dest_sweep},
    {"close", l_dest_close},
    {NULL, NULL},
};

static const luaL_Reg dest_metamethods[] = {
    {"__gc", l_dest_close},
    {"__close", l_dest_close},
    {"__tostring", l_dest_tostring},
    {"__index", NULL},
    {NULL, NULL},
};

static const luaL_Reg upload_functions[] = {
    {"destination", l_destination},
    {NULL, NULL},
};

void tide_upload_register(lua_State *L) {
  if (luaL_newmetatable(L, TIDE_DESTINATION)) { /* [core, mt] */
    luaL_setfuncs(L, dest_metamethods, 0);
    luaL_newlib(L, dest_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, upload_functions, 0);
}
