/* dest.h: backup destinations, the plain C layer behind tide.Destination (dest_lua.c).
 * dest.c finds a URL's destination in its scheme registry and checks the names; each
 * destination is one file that fills a tide_dest_ops (dest_file.c, dest_http.c, dest_s3.c).
 * Adding one: write dest_<name>.c defining `const tide_dest_ops tide_dest_<name>_ops` and add
 * one line to DESTINATIONS in dest.c. */
#ifndef TIDE_DEST_H
#define TIDE_DEST_H

#include <stddef.h>
#include <sys/types.h>

#include "tide.h"

typedef struct tide_dest tide_dest;

typedef struct tide_dest_opts {
  const char *url; /* file:///dir/, http(s)://host/path/, s3://bucket/prefix/ */
  const char *access_key, *secret_key, *session_token, *region, *endpoint; /* s3 */
  const char *const *headers; /* http(s): extra "Name: value" lines */
  size_t nheaders;
  const char *ca_file;
  double deadline;                      /* seconds for one operation, retries included */
  int max_attempts;                     /* per request */
  double backoff_base, backoff_cap;     /* seconds */
  long low_speed_limit, low_speed_time; /* stall: below limit B/s for time s */
  long connect_timeout;                 /* seconds */
  unsigned long long multipart_threshold, part_size;
  int parallel; /* s3: multipart parts in flight at once */
  int debug;    /* request/response headers on stderr, Authorization redacted */
  tide_progress_fn progress;
  void *progress_ud;
} tide_dest_opts;

typedef struct tide_dest_entry {
  char *name; /* relative to the destination */
  unsigned long long size;
  long long mtime; /* last modified, seconds since the epoch; 0 when unknown */
} tide_dest_entry;

int tide_dest_open(tide_dest **out, const tide_dest_opts *o, tide_error *err);
void tide_dest_close(tide_dest *d);
const char *tide_dest_display(const tide_dest *d);
/* Called once before a put makes its object visible under its name: non-zero abandons the put
 * (nothing visible; err says why). What lets an upload run while the archive is still being
 * verified. */
typedef struct tide_dest_gate {
  int (*pass)(void *ud, tide_error *err);
  void *ud;
} tide_dest_gate;

/* gate: NULL, or see tide_dest_gate */
int tide_dest_put_file(tide_dest *d, const char *name, const char *file, const char *sha256_hex,
                       const char *md5_hex, unsigned long long size, const tide_dest_gate *gate,
                       char *etag_out, size_t etag_sz, tide_error *err);
int tide_dest_put_data(tide_dest *d, const char *name, const char *data, size_t len,
                       tide_error *err);
int tide_dest_head(tide_dest *d, const char *name, int *exists, unsigned long long *size,
                   char *etag, size_t etag_sz, tide_error *err);
/* max_size: refuse an object larger than this, before or while downloading it (0: no limit) */
int tide_dest_get_file(tide_dest *d, const char *name, const char *file,
                       unsigned long long max_size, unsigned long long *size, char sha256_hex[65],
                       tide_error *err);
int tide_dest_get_data(tide_dest *d, const char *name, char **data, size_t *len, tide_error *err);
int tide_dest_list(tide_dest *d, tide_dest_entry **out, size_t *n, tide_error *err);
void tide_dest_entries_free(tide_dest_entry *e, size_t n);
int tide_dest_delete(tide_dest *d, const char *name, tide_error *err);
/* Removes the temporary objects of tide's own a killed tide left behind: file:// temporary
 * files whose writer is gone, s3:// multipart uploads of archives older than max_age seconds.
 * *out lists what went (free with tide_dest_entries_free). */
int tide_dest_sweep(tide_dest *d, double max_age, tide_dest_entry **out, size_t *n,
                    tide_error *err);

/* ---- for the destinations themselves ------------------------------------------------------- */

/* What a put sends: size bytes of fd from 0, or of data. sha256 and md5 (hex) are the caller's
 * for an archive, NULL for data (a destination that needs them computes them). */
typedef struct tide_dest_stream {
  int fd;
  const char *data;
  unsigned long long size;
  const char *sha256, *md5;
  const char *content_type;   /* NULL: application/octet-stream */
  const tide_dest_gate *gate; /* NULL, or passed just before the object becomes visible */
} tide_dest_stream;

/* For a put: 0 when s has no gate or its gate passes. */
int tide_dest_gate_pass(const tide_dest_stream *s, tide_error *err);

/* Where a get writes: into fd (truncated first; size and sha256 filled, at most max_size bytes
 * unless 0), or into mem when fd < 0. */
typedef struct tide_dest_sink {
  int fd;
  const char *file; /* fd's path, for messages */
  unsigned long long max_size;
  struct tide_buf *mem;
  unsigned long long size;
  char sha256[65];
} tide_dest_sink;

/* The entries a list or a sweep collects. */
typedef struct tide_dest_entries {
  tide_dest_entry *e;
  size_t n, cap;
} tide_dest_entries;

int tide_dest_entries_add(tide_dest_entries *es, const char *name, unsigned long long size,
                          long long mtime);
/* Moves n entries (and their names) to the end of es; e itself is left to the caller to free. */
int tide_dest_entries_take(tide_dest_entries *es, tide_dest_entry *e, size_t n);

/* One destination: names are checked (relative, no "..") before any operation is called. Every
 * operation returns 0, or -1 with err filled. */
typedef struct tide_dest_ops {
  const char *name; /* for messages: "file", "http", "s3" */
  /* 1: put passes the stream's gate itself, as late as it can (after the transfer, before the
   * object becomes visible); 0: the gate is passed before put is called */
  int late_gate;
  /* parses url into d->state and sets d->display (no credentials) */
  int (*open)(tide_dest *d, const char *url, tide_error *err);
  void (*close)(tide_dest *d);
  int (*put)(tide_dest *d, const char *name, const tide_dest_stream *s, char *etag, size_t etag_sz,
             tide_error *err);
  int (*get)(tide_dest *d, const char *name, tide_dest_sink *sink, tide_error *err);
  int (*head)(tide_dest *d, const char *name, int *exists, unsigned long long *size, char *etag,
              size_t etag_sz, tide_error *err);
  int (*list)(tide_dest *d, tide_dest_entries *es, tide_error *err);
  int (*remove)(tide_dest *d, const char *name, tide_error *err);
  /* aborts what killed puts left (temporary files, unfinished uploads) older than max_age */
  int (*abort)(tide_dest *d, double max_age, tide_dest_entries *es, tide_error *err);
} tide_dest_ops;

struct tide_dest {
  const tide_dest_ops *ops;
  char *display;               /* the destination without credentials or query, for messages */
  tide_dest_opts o;            /* numbers and callbacks (defaults filled); string fields are NULL */
  const tide_dest_opts *given; /* the caller's options, during open only */
  void *state;                 /* the destination's own */
};

/* Whether [a, b) is a backup id as tide.backup makes them: <YYYYMMDD>T<HHMMSSmmm>Z-<db>-<6 hex>. */
int tide_dest_backup_id(const char *a, const char *b);

#endif
