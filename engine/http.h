/* http.h: the HTTP transport of the network destinations (http.c): one client per origin,
 * requests with bodies from a file range or memory, retries of connection errors, timeouts,
 * stalls (low-speed limit), 408/429/5xx and S3's retryable codes with capped, jittered backoff
 * inside one deadline, TLS verification always on, -v output with every credential hidden.
 * A destination adds its own headers (signing) and reads its own error documents through
 * tide_http_hooks. tide_http_perform_many runs a bounded number of requests at once (libcurl's
 * multi interface), each retried on its own. */
#ifndef TIDE_HTTP_H
#define TIDE_HTTP_H

#include <sys/types.h>

#include <curl/curl.h>

#include "dest.h"
#include "util.h"

typedef struct tide_http_request {
  const char *method;
  const char *path;  /* decoded, absolute */
  const char *query; /* encoded, may be NULL */
  int fd;            /* body from this file (at offset) ... */
  const char *data;  /* ... or from memory */
  off_t offset;
  unsigned long long length;
  int has_body;
  const char *payload_sha256;
  const char *content_md5; /* base64 */
  const char *content_type;
  int sink_fd;                 /* GET into this file (hashing it), else into memory */
  unsigned long long max_size; /* GET into a file: refuse more than this (0: no limit) */
  unsigned long long progress_base, progress_total;
} tide_http_request;

/* A request without a body or a download file: method on path?query. */
static inline void tide_http_request_init(tide_http_request *rq, const char *method,
                                          const char *path, const char *query) {
  *rq =
      (tide_http_request){.method = method, .path = path, .query = query, .fd = -1, .sink_fd = -1};
}

typedef struct tide_http_response {
  long status;
  CURLcode cc;
  char curl_msg[CURL_ERROR_SIZE];
  char etag[128];
  tide_buf body;            /* at most 8 MiB: XML, manifests (a longer error body is cut) */
  long long content_length; /* -1 when unknown */
  tide_digest sink_digest;
  unsigned long long sink_bytes;
  int sink_failed;
  int too_large; /* the download passed request.max_size */
  int progress_stop;
  int interrupted; /* stopped by a caught SIGINT/SIGTERM */
} tide_http_response;

/* A destination's part in each request. */
typedef struct tide_http_hooks {
  /* appends the request's own headers (credentials, signature) to *hdrs */
  int (*add_headers)(void *ud, const tide_http_request *rq, struct curl_slist **hdrs,
                     tide_error *err);
  /* the Code of an error document in rs (code[0] = 0 when none); returns 1 when a 2xx response
   * is an error in disguise. NULL: no error documents. */
  int (*error_code)(void *ud, const tide_http_request *rq, const tide_http_response *rs, char *code,
                    size_t codesz);
  void *ud;
} tide_http_hooks;

typedef struct tide_http {
  CURL *curl;   /* one request at a time */
  char *origin; /* scheme://host[:port] */
  char *host;   /* the Host header value */
  const tide_dest_opts *o;
  const char *ca_file;
  tide_http_hooks hooks;
} tide_http;

/* Splits an http(s) URL: origin, host and the decoded path ending in '/' (malloc'd). */
int tide_http_parse_url(const char *url, char **origin, char **host, char **base_path,
                        tide_error *err);
int tide_http_init(tide_http *h, const tide_dest_opts *o, const char *ca_file, tide_error *err);
void tide_http_free(tide_http *h);
void tide_http_response_free(tide_http_response *rs);

/* Runs rq with retries before deadline; allow_404 takes a 404 as an answer. On failure err
 * says "<what>: <why>". */
int tide_http_perform(tide_http *h, tide_http_request *rq, tide_http_response *rs, double deadline,
                      int allow_404, const char *what, tide_error *err);

/* Runs n requests, at most parallel at once, each retried on its own before deadline. prepare
 * fills request i (and what names it) just before its first attempt; done takes its answer.
 * The first failure stops the others; err then names the request that failed. */
typedef struct tide_http_batch {
  size_t n;
  int parallel;
  int (*prepare)(void *ud, size_t i, tide_http_request *rq, char *what, size_t whatsz,
                 tide_error *err);
  int (*done)(void *ud, size_t i, const tide_http_response *rs, const char *what, tide_error *err);
  void *ud;
} tide_http_batch;

int tide_http_perform_many(tide_http *h, const tide_http_batch *b, double deadline,
                           tide_error *err);

/* The object operations both HTTP destinations share (dest_http.c): path is the decoded path of
 * the object, name its name under dst (for messages). */
int tide_http_object_put(tide_http *h, const tide_dest *dst, const char *path, const char *name,
                         const tide_dest_stream *s, char *etag, size_t etag_sz, tide_error *err);
int tide_http_object_get(tide_http *h, const tide_dest *dst, const char *path, const char *name,
                         tide_dest_sink *sink, tide_error *err);
int tide_http_object_head(tide_http *h, const tide_dest *dst, const char *path, const char *name,
                          int *exists, unsigned long long *size, char *etag, size_t etag_sz,
                          tide_error *err);
int tide_http_object_delete(tide_http *h, const tide_dest *dst, const char *path, const char *name,
                            tide_error *err);

#endif
