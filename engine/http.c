/* http.c: the HTTP transport of the network destinations (see http.h). Every network operation
 * retries connection errors, timeouts, stalls (low-speed limit), 408/429/5xx and S3
 * RequestTimeout with capped, jittered backoff inside one deadline; other 4xx fail at once.
 * Bodies come from a rewindable source (file descriptor + offset, or memory). TLS verification
 * is always on. Secrets never enter an error message or the -v output. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "http.h"
#include "s3xml.h"

#define MAX_BODY (8u << 20) /* responses kept in memory: XML, manifests */

/* One request on one easy handle: what libcurl's callbacks see. */
typedef struct call {
  tide_http *h;
  tide_http_request *rq;
  tide_http_response *rs;
  CURL *easy;
  struct curl_slist *hdrs; /* hold the signature: zeroed before they are freed */
  char *url;
  unsigned long long pos;   /* of the body */
  unsigned long long ulnow; /* bytes of the body sent so far (this attempt) */
  struct batch *batch;      /* tide_http_perform_many: the other calls, for progress */
} call;

typedef struct slot {
  call c;
  tide_http_request rq;
  tide_http_response rs;
  size_t index;
  int busy, in_flight, attempts;
  double retry_at;
  char what[700];
} slot;

typedef struct batch {
  slot *slots;
  int nslots;
  unsigned long long done_bytes; /* of the requests already finished */
} batch;

int tide_http_parse_url(const char *url, char **origin, char **hostp, char **base_path,
                        tide_error *err) {
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
    *origin = malloc(n);
    *hostp = malloc(n);
    if (!*origin || !*hostp)
      goto oom;
    snprintf(*hostp, n, "%s%s%s", host, port ? ":" : "", port ? port : "");
    snprintf(*origin, n, "%s://%s", scheme, *hostp);
  }
  {
    const char *p = path && *path ? path : "/";
    size_t n = strlen(p);
    *base_path = malloc(n + 2);
    if (!*base_path)
      goto oom;
    snprintf(*base_path, n + 2, "%s%s", p, p[n - 1] == '/' ? "" : "/");
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

int tide_http_init(tide_http *h, const tide_dest_opts *o, const char *ca_file, tide_error *err) {
  static int curl_ready;
  h->o = o;
  h->ca_file = ca_file;
  if (!curl_ready) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      tide_error_set(err, NULL, "libcurl failed to initialise");
      return -1;
    }
    curl_ready = 1;
  }
  if (!(h->curl = curl_easy_init())) {
    tide_error_set(err, NULL, "out of memory");
    return -1;
  }
  return 0;
}

void tide_http_free(tide_http *h) {
  if (h->curl)
    curl_easy_cleanup(h->curl);
  free(h->origin);
  free(h->host);
  h->curl = NULL;
  h->origin = h->host = NULL;
}

void tide_http_response_free(tide_http_response *rs) {
  free(rs->body.p);
  rs->body.p = NULL;
  tide_digest_free(&rs->sink_digest);
}

/* ---- libcurl's callbacks --------------------------------------------------------------- */

static size_t read_cb(char *buf, size_t size, size_t nitems, void *ud) {
  call *c = ud;
  const tide_http_request *rq = c->rq;
  size_t want = size * nitems;
  if (c->pos >= rq->length)
    return 0;
  if (want > rq->length - c->pos)
    want = (size_t)(rq->length - c->pos);
  if (rq->data) {
    memcpy(buf, rq->data + c->pos, want);
  } else {
    ssize_t n;
    do
      n = pread(rq->fd, buf, want, rq->offset + (off_t)c->pos);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
      return CURL_READFUNC_ABORT; /* recorded as a read error: never retried */
    want = (size_t)n;
  }
  c->pos += want;
  return want;
}

/* libcurl rewinds the body when it must send it again (a redirect, an auth round, a retry of
 * a reused connection): the source is a file range or memory, so any position is reachable. */
static int seek_cb(void *ud, curl_off_t offset, int origin) {
  call *c = ud;
  if (origin != SEEK_SET || offset < 0 || (unsigned long long)offset > c->rq->length)
    return CURL_SEEKFUNC_FAIL;
  c->pos = (unsigned long long)offset;
  return CURL_SEEKFUNC_OK;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud) {
  call *x = ud;
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
    tide_digest_update(&x->rs->sink_digest, ptr, n);
    x->rs->sink_bytes += n;
    return n;
  }
  if (tide_buf_add(&x->rs->body, ptr, n) != 0 && !x->rs->body.overflow)
    return 0;
  return n; /* an oversized error body is cut, not a failure */
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *ud) {
  call *x = ud;
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
static int interruptible(const tide_http_request *rq) {
  return strcmp(rq->method, "DELETE") != 0;
}

static int xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  call *x = ud;
  static double last;
  const tide_dest_opts *o = x->h->o;
  unsigned long long sent;
  (void)dltotal;
  (void)ultotal;
  if (tide_interrupted && interruptible(x->rq))
    return (x->rs->interrupted = 1);
  x->ulnow = (unsigned long long)ulnow;
  if (!o->progress || tide_now() - last < 0.25)
    return 0;
  last = tide_now();
  if (x->rq->has_body) {
    sent = x->rq->progress_base + x->ulnow;
    if (x->batch) { /* the parts in flight at once, each as far as it got */
      sent = x->batch->done_bytes;
      for (int i = 0; i < x->batch->nslots; i++)
        if (x->batch->slots[i].in_flight)
          sent += x->batch->slots[i].c.ulnow;
    }
    return (x->rs->progress_stop =
                o->progress(o->progress_ud, "upload", sent, x->rq->progress_total)) != 0;
  }
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

/* ---- one attempt --------------------------------------------------------------------------- */

static void response_reset(tide_http_response *rs) {
  rs->status = 0;
  rs->cc = CURLE_OK;
  rs->curl_msg[0] = '\0';
  rs->etag[0] = '\0';
  rs->body.max = MAX_BODY;
  tide_buf_clear(&rs->body);
  rs->content_length = -1;
  rs->sink_bytes = 0;
  rs->sink_failed = 0;
  rs->too_large = 0;
  rs->progress_stop = 0;
  rs->interrupted = 0;
}

/* Frees what call_setup made for one attempt, the headers zeroed first. */
static void call_release(call *c) {
  if (c->easy)
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, NULL);
  for (struct curl_slist *e = c->hdrs; e; e = e->next)
    memset(e->data, 0, strlen(e->data));
  curl_slist_free_all(c->hdrs);
  free(c->url);
  c->hdrs = NULL;
  c->url = NULL;
}

static int add_header(struct curl_slist **hdrs, const char *line) {
  struct curl_slist *l = curl_slist_append(*hdrs, line);
  if (!l)
    return -1;
  *hdrs = l;
  return 0;
}

/* Prepares c->easy for one attempt of c->rq before deadline; -1 with err on a local failure. */
static int call_setup(call *c, double deadline, tide_error *err) {
  tide_http *h = c->h;
  const tide_dest_opts *o = h->o;
  tide_http_request *rq = c->rq;
  tide_http_response *rs = c->rs;
  CURL *e = c->easy;
  char *epath = NULL, line[256];
  long timeout_ms = (long)((deadline - tide_now()) * 1000);

  response_reset(rs);
  if (timeout_ms < 1000)
    timeout_ms = 1000;
  c->pos = c->ulnow = 0;
  if (rq->sink_fd >= 0) {
    tide_digest_free(&rs->sink_digest);
    if (ftruncate(rq->sink_fd, 0) != 0 || lseek(rq->sink_fd, 0, SEEK_SET) != 0 ||
        tide_digest_init(&rs->sink_digest) != 0) {
      tide_error_set(err, NULL, "cannot reset the download file: %s", strerror(errno));
      return -1;
    }
  }
  if (!(epath = tide_sigv4_uri_encode(rq->path, 1)))
    goto oom;
  if (!(c->url =
            malloc(strlen(h->origin) + strlen(epath) + (rq->query ? strlen(rq->query) : 0) + 2)))
    goto oom;
  sprintf(c->url, "%s%s%s%s", h->origin, epath, rq->query && *rq->query ? "?" : "",
          rq->query ? rq->query : "");
  free(epath);
  epath = NULL;

  curl_easy_reset(e);
  curl_easy_setopt(e, CURLOPT_URL, c->url);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (h->ca_file)
    curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, o->connect_timeout);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, o->low_speed_limit);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, o->low_speed_time);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, rs->curl_msg);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
  curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
  curl_easy_setopt(e, CURLOPT_XFERINFODATA, c);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "tide/" TIDE_VERSION);
  curl_easy_setopt(e, CURLOPT_PRIVATE, c);
  if (rq->max_size) /* refused before the transfer when the server says its size first */
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)rq->max_size);
  if (o->debug) {
    curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, debug_cb);
  }

  if (strcmp(rq->method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (strcmp(rq->method, "PUT") == 0) {
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->length);
  } else if (strcmp(rq->method, "POST") == 0) {
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->length);
  } else if (strcmp(rq->method, "GET") != 0) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq->method);
  }
  if (rq->has_body || strcmp(rq->method, "POST") == 0) {
    curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(e, CURLOPT_READDATA, c);
    curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, seek_cb);
    curl_easy_setopt(e, CURLOPT_SEEKDATA, c);
  }

  if (rq->content_type)
    snprintf(line, sizeof line, "Content-Type: %s", rq->content_type);
  else
    snprintf(line, sizeof line, "Content-Type: application/octet-stream");
  if ((rq->content_type || strcmp(rq->method, "POST") == 0 || strcmp(rq->method, "PUT") == 0) &&
      add_header(&c->hdrs, line) != 0)
    goto oom;
  if (rq->content_md5) {
    snprintf(line, sizeof line, "Content-MD5: %s", rq->content_md5);
    if (add_header(&c->hdrs, line) != 0)
      goto oom;
  }
  if (h->hooks.add_headers && h->hooks.add_headers(h->hooks.ud, rq, &c->hdrs, err) != 0)
    return -1;
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdrs);
  return 0;
oom:
  free(epath);
  tide_error_set(err, NULL, "out of memory");
  return -1;
}

/* After the transfer (rs->cc set): 0 when the exchange happened (look at rs->status), -1 on a
 * local failure that is not worth retrying (message in err). */
static int call_finish(call *c, tide_error *err) {
  tide_http_request *rq = c->rq;
  tide_http_response *rs = c->rs;
  curl_off_t cl = -1;
  if (rs->cc == CURLE_OK || rs->status == 0)
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &rs->status);
  if (curl_easy_getinfo(c->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK)
    rs->content_length = (long long)cl;
  call_release(c);
  if (rs->sink_failed) {
    tide_error_set(err, NULL, "writing the download: %s", strerror(rs->sink_failed));
    return -1;
  }
  if (rs->too_large || rs->cc == CURLE_FILESIZE_EXCEEDED) {
    tide_error_set(err, NULL, "the object is larger than the %llu bytes expected: not downloaded",
                   rq->max_size);
    return -1;
  }
  if (rs->interrupted) {
    tide_error_set(err, NULL, "interrupted by %s", tide_signal_name(tide_interrupted));
    return -1;
  }
  if (rs->progress_stop) {
    tide_error_set(err, NULL, "interrupted");
    return -1;
  }
  if (rs->cc == CURLE_READ_ERROR || rs->cc == CURLE_ABORTED_BY_CALLBACK) {
    tide_error_set(err, NULL, "reading the archive failed during the upload");
    return -1;
  }
  return 0;
}

/* ---- outcomes -------------------------------------------------------------------------------- */

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
static void describe(const tide_http_response *rs, char *out, size_t outsz) {
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

/* Classifies a finished attempt: success is 2xx that the destination's hook does not call an
 * error document in disguise; why says what went wrong otherwise. */
static outcome classify(const tide_http *h, const tide_http_request *rq,
                        const tide_http_response *rs, int allow_404, char *why, size_t whysz) {
  char code[128] = "";
  int disguised = 0;
  outcome oc;
  if (rs->cc != CURLE_OK) {
    oc = retryable_curl(rs->cc) ? OUT_RETRY : OUT_FAIL;
  } else {
    if (h->hooks.error_code && rs->body.p)
      disguised = h->hooks.error_code(h->hooks.ud, rq, rs, code, sizeof code);
    if (rs->status / 100 == 2 && !disguised)
      return OUT_OK;
    if (allow_404 && rs->status == 404)
      return OUT_OK;
    if (disguised)
      oc = !code[0] || retryable_status(0, code) ? OUT_RETRY : OUT_FAIL;
    else
      oc = retryable_status(rs->status, code) ? OUT_RETRY : OUT_FAIL;
  }
  describe(rs, why, whysz);
  if (disguised)
    snprintf(why, whysz, "HTTP %ld carrying an <Error> document (%s)", rs->status,
             code[0] ? code : "no code");
  return oc;
}

/* The wait before attempt n + 1: capped exponential backoff with equal jitter (half fixed, half
 * random). */
static double backoff(const tide_dest_opts *o, int n) {
  double delay = o->backoff_base * (double)(1u << (n < 16 ? n - 1 : 15));
  if (delay > o->backoff_cap)
    delay = o->backoff_cap;
  return delay / 2 + (delay / 2) * ((double)rand() / (double)RAND_MAX);
}

/* "<what>: <local>" from a message err holds. */
static void prefix_error(tide_error *err, const char *what) {
  char local[sizeof err->message];
  snprintf(local, sizeof local, "%s", err->message);
  tide_error_set(err, NULL, "%s: %s", what, local);
}

int tide_http_perform(tide_http *h, tide_http_request *rq, tide_http_response *rs, double deadline,
                      int allow_404, const char *what, tide_error *err) {
  char why[700];
  call c = {h, rq, rs, h->curl, NULL, NULL, 0, 0, NULL};
  for (int n = 1;; n++) {
    outcome oc;
    double delay;
    if (tide_interrupted && interruptible(rq)) {
      tide_error_set(err, NULL, "%s: interrupted by %s", what, tide_signal_name(tide_interrupted));
      return -1;
    }
    if (call_setup(&c, deadline, err) != 0) {
      call_release(&c);
      prefix_error(err, what);
      return -1;
    }
    rs->cc = curl_easy_perform(h->curl);
    if (call_finish(&c, err) != 0) {
      prefix_error(err, what);
      return -1;
    }
    oc = classify(h, rq, rs, allow_404, why, sizeof why);
    if (oc == OUT_OK)
      return 0;
    if (oc == OUT_FAIL) {
      tide_error_set(err, NULL, "%s: %s", what, why);
      return -1;
    }
    delay = backoff(h->o, n);
    if (n >= h->o->max_attempts || tide_now() + delay >= deadline) {
      tide_error_set(err, NULL, "%s: %s (gave up after %d attempt%s)", what, why, n,
                     n == 1 ? "" : "s");
      return -1;
    }
    if (h->o->debug)
      fprintf(stderr, "tide: debug: %s: %s; retrying in %.1f s\n", what, why, delay);
    tide_sleep(delay);
    if (tide_interrupted && interruptible(rq)) {
      tide_error_set(err, NULL, "%s: interrupted by %s", what, tide_signal_name(tide_interrupted));
      return -1;
    }
  }
}

/* ---- many at once ------------------------------------------------------------------------------
 */

/* One finished attempt of slot s: 0 when it is done or waits for its retry, -1 with err when
 * the batch must stop. */
static int slot_finished(tide_http *h, const tide_http_batch *b, batch *run, slot *s,
                         double deadline, tide_error *err) {
  char why[700];
  outcome oc;
  double delay;
  s->in_flight = 0;
  if (call_finish(&s->c, err) != 0) {
    prefix_error(err, s->what);
    return -1;
  }
  oc = classify(h, &s->rq, &s->rs, 0, why, sizeof why);
  if (oc == OUT_OK) {
    if (b->done(b->ud, s->index, &s->rs, s->what, err) != 0)
      return -1;
    run->done_bytes += s->rq.length;
    s->busy = 0;
    return 0;
  }
  if (oc == OUT_FAIL) {
    tide_error_set(err, NULL, "%s: %s", s->what, why);
    return -1;
  }
  delay = backoff(h->o, s->attempts);
  if (s->attempts >= h->o->max_attempts || tide_now() + delay >= deadline) {
    tide_error_set(err, NULL, "%s: %s (gave up after %d attempt%s)", s->what, why, s->attempts,
                   s->attempts == 1 ? "" : "s");
    return -1;
  }
  if (h->o->debug)
    fprintf(stderr, "tide: debug: %s: %s; retrying in %.1f s\n", s->what, why, delay);
  s->retry_at = tide_now() + delay;
  return 0;
}

int tide_http_perform_many(tide_http *h, const tide_http_batch *b, double deadline,
                           tide_error *err) {
  batch run = {NULL, 0, 0};
  CURLM *multi = curl_multi_init();
  size_t next = 0;
  int rc = -1;
  run.nslots = b->parallel < 1 ? 1 : b->parallel;
  if ((size_t)run.nslots > b->n)
    run.nslots = b->n ? (int)b->n : 1;
  if (!multi || !(run.slots = calloc((size_t)run.nslots, sizeof *run.slots)))
    goto oom;
  for (int i = 0; i < run.nslots; i++) {
    slot *s = &run.slots[i];
    s->c = (call){h, &s->rq, &s->rs, curl_easy_init(), NULL, NULL, 0, 0, &run};
    if (!s->c.easy)
      goto oom;
  }
  for (;;) {
    int busy = 0, running = 0, queued;
    double now = tide_now(), wait = -1; /* until the next retry is due; -1: none waits */
    CURLMsg *m;
    if (tide_interrupted) {
      tide_error_set(err, NULL, "%s: interrupted by %s", run.slots[0].what,
                     tide_signal_name(tide_interrupted));
      goto cleanup;
    }
    for (int i = 0; i < run.nslots; i++) {
      slot *s = &run.slots[i];
      if (!s->busy && next < b->n) {
        memset(&s->rq, 0, sizeof s->rq);
        s->rq.fd = s->rq.sink_fd = -1;
        s->what[0] = '\0';
        if (b->prepare(b->ud, next, &s->rq, s->what, sizeof s->what, err) != 0)
          goto cleanup;
        s->index = next++;
        s->busy = 1;
        s->attempts = 0;
        s->retry_at = 0;
      }
      if (s->busy && !s->in_flight && s->retry_at <= now) {
        s->attempts++;
        if (call_setup(&s->c, deadline, err) != 0) {
          call_release(&s->c);
          prefix_error(err, s->what);
          goto cleanup;
        }
        if (curl_multi_add_handle(multi, s->c.easy) != CURLM_OK) {
          call_release(&s->c);
          goto oom;
        }
        s->in_flight = 1;
      }
      if (s->busy && !s->in_flight && (wait < 0 || s->retry_at - now < wait))
        wait = s->retry_at - now;
      busy += s->busy;
    }
    if (!busy)
      break;
    curl_multi_perform(multi, &running);
    while ((m = curl_multi_info_read(multi, &queued))) {
      call *c = NULL;
      if (m->msg != CURLMSG_DONE)
        continue;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
      c->rs->cc = m->data.result;
      curl_multi_remove_handle(multi, c->easy);
      if (slot_finished(h, b, &run, (slot *)c, deadline, err) != 0)
        goto cleanup;
    }
    if (running) /* woken by any transfer's progress; a quarter second at most, for signals */
      curl_multi_poll(multi, NULL, 0, wait >= 0 && wait < 0.25 ? (int)(wait * 1000) + 1 : 250,
                      NULL);
    else if (wait > 0)
      tide_sleep(wait);
  }
  rc = 0;
  goto cleanup;
oom:
  tide_error_set(err, NULL, "out of memory");
cleanup:
  for (int i = 0; run.slots && i < run.nslots; i++) {
    slot *s = &run.slots[i];
    if (s->in_flight)
      curl_multi_remove_handle(multi, s->c.easy);
    call_release(&s->c);
    if (s->c.easy)
      curl_easy_cleanup(s->c.easy);
    tide_http_response_free(&s->rs);
  }
  free(run.slots);
  if (multi)
    curl_multi_cleanup(multi);
  return rc;
}
