/* dest_http.c: the http(s)://host/path/ destination: PUT, GET, HEAD and DELETE of objects under
 * the URL's path, with the configured extra headers (a bearer token, an API key) on every
 * request. It cannot list, so `tide backups` and `keep` need file:// or s3://. The object
 * operations here serve s3:// too (dest_s3.c signs them instead). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

typedef struct http_dest {
  tide_http http;
  char *base_path; /* decoded, starting and ending with '/' */
  char *ca_file;
  struct curl_slist *extra_headers;
} http_dest;

static char *object_path(const char *base, const char *name, tide_error *err) {
  size_t n = strlen(base) + strlen(name) + 1;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s%s", base, name);
  else
    tide_error_set(err, NULL, "out of memory");
  return p;
}

/* ---- objects over HTTP (both destinations) ------------------------------------------------ */

int tide_http_object_put(tide_http *h, const tide_dest *dst, const char *path, const char *name,
                         const tide_dest_stream *s, char *etag, size_t etag_sz, tide_error *err) {
  char what[600], sha[65], md5_b64[32];
  unsigned char md5[16];
  tide_http_request rq;
  tide_http_response rs;
  int rc = -1;
  memset(&rs, 0, sizeof rs);
  if (s->sha256 && s->md5) {
    if (strlen(s->md5) != 32 || tide_unhex(s->md5, md5, 16) != 0 || strlen(s->sha256) != 64) {
      tide_error_set(err, NULL, "put_file needs the archive's sha256 and md5 in hex");
      return -1;
    }
    snprintf(sha, sizeof sha, "%s", s->sha256);
  } else if (tide_digest_range(s->fd, s->data, 0, s->size, sha, md5, err) != 0) {
    return -1;
  }
  tide_base64(md5, 16, md5_b64);
  snprintf(what, sizeof what, "PUT %s%s", dst->display, name);
  tide_http_request_init(&rq, "PUT", path, NULL);
  rq.fd = s->fd;
  rq.data = s->data;
  rq.length = s->size;
  rq.has_body = 1;
  rq.payload_sha256 = sha;
  rq.content_md5 = md5_b64;
  rq.content_type = s->content_type;
  rq.progress_total = s->size;
  if (tide_http_perform(h, &rq, &rs, tide_now() + dst->o.deadline, 0, what, err) == 0) {
    if (etag_sz)
      snprintf(etag, etag_sz, "%s", rs.etag);
    rc = 0;
  }
  tide_http_response_free(&rs);
  return rc;
}

int tide_http_object_get(tide_http *h, const tide_dest *dst, const char *path, const char *name,
                         tide_dest_sink *sink, tide_error *err) {
  char what[600];
  tide_http_request rq;
  tide_http_response rs;
  int rc = -1;
  memset(&rs, 0, sizeof rs);
  tide_http_request_init(&rq, "GET", path, NULL);
  rq.sink_fd = sink->fd;
  rq.max_size = sink->max_size;
  snprintf(what, sizeof what, "GET %s%s", dst->display, name);
  if (tide_http_perform(h, &rq, &rs, tide_now() + dst->o.deadline, 0, what, err) != 0)
    goto cleanup;
  if (sink->fd >= 0) {
    tide_digest_final(&rs.sink_digest, sink->sha256, NULL, NULL);
    sink->size = rs.sink_bytes;
  } else if (rs.body.overflow) {
    tide_error_set(err, NULL, "%s: too large", what);
    goto cleanup;
  } else {
    free(sink->mem->p);
    *sink->mem = rs.body;
    memset(&rs.body, 0, sizeof rs.body);
  }
  rc = 0;
cleanup:
  tide_http_response_free(&rs);
  return rc;
}

int tide_http_object_head(tide_http *h, const tide_dest *dst, const char *path, const char *name,
                          int *exists, unsigned long long *size, char *etag, size_t etag_sz,
                          tide_error *err) {
  char what[600];
  tide_http_request rq;
  tide_http_response rs;
  int rc = -1;
  memset(&rs, 0, sizeof rs);
  tide_http_request_init(&rq, "HEAD", path, NULL);
  snprintf(what, sizeof what, "HEAD %s%s", dst->display, name);
  if (tide_http_perform(h, &rq, &rs, tide_now() + dst->o.deadline, 1, what, err) == 0) {
    if (rs.status / 100 == 2) {
      *exists = 1;
      *size = rs.content_length > 0 ? (unsigned long long)rs.content_length : 0;
      if (etag_sz)
        snprintf(etag, etag_sz, "%s", rs.etag);
    }
    rc = 0;
  }
  tide_http_response_free(&rs);
  return rc;
}

int tide_http_object_delete(tide_http *h, const tide_dest *dst, const char *path, const char *name,
                            tide_error *err) {
  char what[600];
  tide_http_request rq;
  tide_http_response rs;
  int rc;
  memset(&rs, 0, sizeof rs);
  tide_http_request_init(&rq, "DELETE", path, NULL);
  snprintf(what, sizeof what, "DELETE %s%s", dst->display, name);
  rc = tide_http_perform(h, &rq, &rs, tide_now() + dst->o.deadline, 1, what, err);
  tide_http_response_free(&rs);
  return rc;
}

/* ---- the http(s) destination ----------------------------------------------------------------- */

/* The configured extra headers, on every request. */
static int add_extra_headers(void *ud, const tide_http_request *rq, struct curl_slist **hdrs,
                             tide_error *err) {
  http_dest *s = ud;
  (void)rq;
  for (struct curl_slist *e = s->extra_headers; e; e = e->next) {
    struct curl_slist *l = curl_slist_append(*hdrs, e->data);
    if (!l) {
      tide_error_set(err, NULL, "out of memory");
      return -1;
    }
    *hdrs = l;
  }
  return 0;
}

static void http_close(tide_dest *dst) {
  http_dest *s = dst->state;
  if (!s)
    return;
  tide_http_free(&s->http);
  free(s->base_path);
  free(s->ca_file);
  curl_slist_free_all(s->extra_headers);
  free(s);
}

static int http_open(tide_dest *dst, const char *url, tide_error *err) {
  const tide_dest_opts *o = dst->given;
  http_dest *s = calloc(1, sizeof *s);
  if (!(dst->state = s))
    return -1;
  if (o->ca_file && *o->ca_file && !(s->ca_file = strdup(o->ca_file)))
    return -1;
  for (size_t i = 0; i < o->nheaders; i++) {
    struct curl_slist *l = curl_slist_append(s->extra_headers, o->headers[i]);
    if (!l)
      return -1;
    s->extra_headers = l;
  }
  if (tide_http_parse_url(url, &s->http.origin, &s->http.host, &s->base_path, err) != 0)
    return -1;
  if ((dst->display = malloc(strlen(s->http.origin) + strlen(s->base_path) + 1)))
    sprintf(dst->display, "%s%s", s->http.origin, s->base_path);
  s->http.hooks = (tide_http_hooks){add_extra_headers, NULL, s};
  return tide_http_init(&s->http, &dst->o, s->ca_file, err);
}

static int http_put(tide_dest *dst, const char *name, const tide_dest_stream *st, char *etag,
                    size_t etag_sz, tide_error *err) {
  http_dest *s = dst->state;
  char *path = object_path(s->base_path, name, err);
  int rc = path ? tide_http_object_put(&s->http, dst, path, name, st, etag, etag_sz, err) : -1;
  free(path);
  return rc;
}

static int http_get(tide_dest *dst, const char *name, tide_dest_sink *sink, tide_error *err) {
  http_dest *s = dst->state;
  char *path = object_path(s->base_path, name, err);
  int rc = path ? tide_http_object_get(&s->http, dst, path, name, sink, err) : -1;
  free(path);
  return rc;
}

static int http_head(tide_dest *dst, const char *name, int *exists, unsigned long long *size,
                     char *etag, size_t etag_sz, tide_error *err) {
  http_dest *s = dst->state;
  char *path = object_path(s->base_path, name, err);
  int rc = path ? tide_http_object_head(&s->http, dst, path, name, exists, size, etag, etag_sz, err)
                : -1;
  free(path);
  return rc;
}

static int http_list(tide_dest *dst, tide_dest_entries *es, tide_error *err) {
  (void)es;
  tide_error_set(
      err, NULL,
      "%s: an http(s) destination cannot be listed; use file:// or s3:// for `tide backups` "
      "and `keep`",
      dst->display);
  return -1;
}

static int http_remove(tide_dest *dst, const char *name, tide_error *err) {
  http_dest *s = dst->state;
  char *path = object_path(s->base_path, name, err);
  int rc = path ? tide_http_object_delete(&s->http, dst, path, name, err) : -1;
  free(path);
  return rc;
}

/* A plain PUT leaves nothing behind when it fails. */
static int http_abort(tide_dest *dst, double max_age, tide_dest_entries *es, tide_error *err) {
  (void)dst;
  (void)max_age;
  (void)es;
  (void)err;
  return 0;
}

const tide_dest_ops tide_dest_http_ops = {
    .name = "http",
    .open = http_open,
    .close = http_close,
    .put = http_put,
    .get = http_get,
    .head = http_head,
    .list = http_list,
    .remove = http_remove,
    .abort = http_abort,
};
