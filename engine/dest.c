/* dest.c: the backup destinations' front (see dest.h): the scheme registry, the options and
 * their defaults, the checks every destination shares (object names, configured headers), and
 * one function per operation that hands the work to the destination's tide_dest_ops. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dest.h"
#include "util.h"

#define MAX_DATA (8u << 20) /* get_data: objects read into memory (manifests) */

/* Every destination: the start of its URLs and the operations its file (dest_<name>.c)
 * defines. A new destination is one line here. */
#define DESTINATIONS(X)                                                                            \
  X("file://", tide_dest_file_ops)                                                                 \
  X("http://", tide_dest_http_ops)                                                                 \
  X("https://", tide_dest_http_ops)                                                                \
  X("s3://", tide_dest_s3_ops)                                                                     \
  SPEC_DESTINATIONS(X)

#ifdef TIDE_SPEC_DESTINATION /* -DTIDE_SPEC_DESTINATION=ON: spec/c/dest_spec.c, for the specs */
#define SPEC_DESTINATIONS(X) X("spec://", tide_dest_spec_ops)
#else
#define SPEC_DESTINATIONS(X)
#endif

#define DECLARE(prefix, ops) extern const tide_dest_ops ops;
DESTINATIONS(DECLARE)
#undef DECLARE

static const struct {
  const char *prefix;
  const tide_dest_ops *ops;
} registry[] = {
#define ENTRY(prefix, ops) {prefix, &ops},
    DESTINATIONS(ENTRY)
#undef ENTRY
};

static const tide_dest_ops *find_ops(const char *url) {
  for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
    if (strncmp(url, registry[i].prefix, strlen(registry[i].prefix)) == 0)
      return registry[i].ops;
  return NULL;
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

static int check_name(const char *name, tide_error *err) {
  if (!*name || name[0] == '/' || strstr(name, "..") || strchr(name, '?') || strchr(name, '#') ||
      strchr(name, '\\')) {
    tide_error_set(err, NULL, "invalid object name `%s`", name);
    return -1;
  }
  return 0;
}

int tide_dest_open(tide_dest **out, const tide_dest_opts *o, tide_error *err) {
  tide_dest *d = calloc(1, sizeof *d);
  const char *url = o->url ? o->url : "";
  *out = NULL;
  if (!d) {
    tide_error_set(err, NULL, "out of memory");
    return -1;
  }
  d->o = *o;
  d->o.url = NULL; /* the caller's strings: each destination copies what it keeps */
  d->o.headers = NULL;
  d->o.nheaders = 0;
  d->o.access_key = d->o.secret_key = d->o.session_token = d->o.region = d->o.ca_file = NULL;
  d->o.endpoint = NULL;
  for (size_t i = 0; i < o->nheaders; i++)
    if (check_header(o->headers[i], i, err) != 0)
      goto fail;
  if (d->o.deadline <= 0)
    d->o.deadline = 900;
  if (d->o.max_attempts <= 0)
    d->o.max_attempts = 8;
  if (d->o.backoff_base <= 0)
    d->o.backoff_base = 0.5;
  if (d->o.backoff_cap <= 0)
    d->o.backoff_cap = 20;
  if (d->o.low_speed_limit <= 0)
    d->o.low_speed_limit = 1024;
  if (d->o.low_speed_time <= 0)
    d->o.low_speed_time = 30;
  if (d->o.connect_timeout <= 0)
    d->o.connect_timeout = 10;
  if (d->o.part_size < (5ull << 20))
    d->o.part_size = 16ull << 20;
  if (d->o.multipart_threshold == 0)
    d->o.multipart_threshold = 64ull << 20;
  if (d->o.parallel <= 0)
    d->o.parallel = 4;
  if (!(d->ops = find_ops(url))) {
    tide_error_set(
        err, NULL,
        "unsupported destination (use file:///dir/, https://host/path/ or s3://bucket/prefix/)");
    goto fail;
  }
  d->given = o;
  if (d->ops->open(d, url, err) != 0) {
    if (!err->message[0])
      tide_error_set(err, NULL, "out of memory");
    goto fail;
  }
  d->given = NULL;
  if (!d->display) {
    tide_error_set(err, NULL, "out of memory");
    goto fail;
  }
  *out = d;
  return 0;
fail:
  tide_dest_close(d);
  return -1;
}

void tide_dest_close(tide_dest *d) {
  if (!d)
    return;
  if (d->ops && d->ops->close)
    d->ops->close(d);
  free(d->display);
  free(d);
}

const char *tide_dest_display(const tide_dest *d) {
  return d->display ? d->display : "";
}

int tide_dest_gate_pass(const tide_dest_stream *s, tide_error *err) {
  return s->gate && s->gate->pass(s->gate->ud, err) != 0 ? -1 : 0;
}

int tide_dest_put_file(tide_dest *d, const char *name, const char *file, const char *sha256_hex,
                       const char *md5_hex, unsigned long long size, const tide_dest_gate *gate,
                       char *etag_out, size_t etag_sz, tide_error *err) {
  tide_dest_stream s = {-1, NULL, size, sha256_hex, md5_hex, NULL, gate};
  struct stat st;
  int rc = -1;
  if (etag_sz)
    etag_out[0] = '\0';
  if (check_name(name, err) != 0)
    return -1;
  if ((s.fd = open(file, O_RDONLY | O_CLOEXEC)) < 0 || fstat(s.fd, &st) != 0) {
    tide_error_set(err, NULL, "%s: %s", file, strerror(errno));
    goto cleanup;
  }
  if ((unsigned long long)st.st_size != size) {
    tide_error_set(err, NULL, "%s is %lld bytes, expected %llu", file, (long long)st.st_size, size);
    goto cleanup;
  }
  if (!d->ops->late_gate && tide_dest_gate_pass(&s, err) != 0)
    goto cleanup;
  rc = d->ops->put(d, name, &s, etag_out, etag_sz, err);
cleanup:
  if (s.fd >= 0)
    close(s.fd);
  return rc;
}

int tide_dest_put_data(tide_dest *d, const char *name, const char *data, size_t len,
                       tide_error *err) {
  tide_dest_stream s = {-1, data, len, NULL, NULL, NULL, NULL};
  if (check_name(name, err) != 0)
    return -1;
  if (strstr(name, ".json"))
    s.content_type = "application/json";
  return d->ops->put(d, name, &s, NULL, 0, err);
}

int tide_dest_head(tide_dest *d, const char *name, int *exists, unsigned long long *size,
                   char *etag, size_t etag_sz, tide_error *err) {
  *exists = 0;
  *size = 0;
  if (etag_sz)
    etag[0] = '\0';
  if (check_name(name, err) != 0)
    return -1;
  return d->ops->head(d, name, exists, size, etag, etag_sz, err);
}

int tide_dest_get_file(tide_dest *d, const char *name, const char *file,
                       unsigned long long max_size, unsigned long long *size, char sha256_hex[65],
                       tide_error *err) {
  tide_dest_sink sink = {-1, file, max_size, NULL, 0, ""};
  int rc = -1;
  if (check_name(name, err) != 0)
    return -1;
  if ((sink.fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
    tide_error_set(err, NULL, "%s: %s", file, strerror(errno));
    return -1;
  }
  if ((rc = d->ops->get(d, name, &sink, err)) == 0) {
    *size = sink.size;
    memcpy(sha256_hex, sink.sha256, 65);
  }
  if (close(sink.fd) != 0 && rc == 0) {
    tide_error_set(err, NULL, "%s: %s", file, strerror(errno));
    rc = -1;
  }
  return rc;
}

int tide_dest_get_data(tide_dest *d, const char *name, char **data, size_t *len, tide_error *err) {
  tide_buf mem = {.max = MAX_DATA};
  tide_dest_sink sink = {-1, NULL, 0, &mem, 0, ""};
  *data = NULL;
  *len = 0;
  if (check_name(name, err) != 0)
    return -1;
  if (d->ops->get(d, name, &sink, err) != 0) {
    free(mem.p);
    return -1;
  }
  *data = mem.p ? mem.p : strdup("");
  *len = mem.len;
  return *data ? 0 : -1;
}

void tide_dest_entries_free(tide_dest_entry *e, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(e[i].name);
  free(e);
}

int tide_dest_entries_add(tide_dest_entries *es, const char *name, unsigned long long size,
                          long long mtime) {
  char *copy = strdup(name);
  if (!copy || tide_dest_entries_take(es, &(tide_dest_entry){copy, size, mtime}, 1) != 0) {
    free(copy);
    return -1;
  }
  return 0;
}

int tide_dest_entries_take(tide_dest_entries *es, tide_dest_entry *e, size_t n) {
  if (es->n + n > es->cap) {
    size_t cap = es->cap ? es->cap : 64;
    tide_dest_entry *g;
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

int tide_dest_list(tide_dest *d, tide_dest_entry **out, size_t *n, tide_error *err) {
  tide_dest_entries es = {0};
  *out = NULL;
  *n = 0;
  if (d->ops->list(d, &es, err) != 0) {
    tide_dest_entries_free(es.e, es.n);
    return -1;
  }
  *out = es.e;
  *n = es.n;
  return 0;
}

int tide_dest_delete(tide_dest *d, const char *name, tide_error *err) {
  if (check_name(name, err) != 0)
    return -1;
  return d->ops->remove(d, name, err);
}

int tide_dest_sweep(tide_dest *d, double max_age, tide_dest_entry **out, size_t *n,
                    tide_error *err) {
  tide_dest_entries es = {0};
  *out = NULL;
  *n = 0;
  if (d->ops->abort(d, max_age, &es, err) != 0) {
    tide_dest_entries_free(es.e, es.n);
    return -1;
  }
  *out = es.e;
  *n = es.n;
  return 0;
}

int tide_dest_backup_id(const char *a, const char *b) {
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
