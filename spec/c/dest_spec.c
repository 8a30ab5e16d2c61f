/* dest_spec.c: spec:///dir/, a destination for the specs only (built with
 * -DTIDE_SPEC_DESTINATION=ON, which tools/setup sets). It shows what a new destination takes:
 * this one file, which fills a tide_dest_ops, and one line in engine/dest.c's DESTINATIONS. It
 * keeps each object as one file directly in dir, its name's '/' written as '%2F': no temporary
 * names, no fsync, nothing to sweep. spec/destinations_spec.lua runs tide's backup through it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dest.h"
#include "util.h"

/* dir + name with every '/' as "%2F"; malloc'd. */
static char *object_path(const tide_dest *dst, const char *name, tide_error *err) {
  const char *dir = dst->state;
  char *p = malloc(strlen(dir) + 3 * strlen(name) + 1), *o;
  if (!p) {
    tide_error_set(err, NULL, "out of memory");
    return NULL;
  }
  o = p + sprintf(p, "%s", dir);
  for (const char *c = name; *c; c++)
    o += *c == '/' ? sprintf(o, "%%2F") : sprintf(o, "%c", *c);
  return p;
}

static int spec_open(tide_dest *dst, const char *url, tide_error *err) {
  const char *p = url + strlen("spec://");
  size_t n = strlen(p);
  if (*p != '/' || p[n - 1] != '/') {
    tide_error_set(err, NULL, "spec destinations look like spec:///dir/");
    return -1;
  }
  if (!(dst->state = strdup(p)) || !(dst->display = strdup(url)))
    return -1;
  return 0;
}

static void spec_close(tide_dest *dst) {
  free(dst->state);
}

static int spec_put(tide_dest *dst, const char *name, const tide_dest_stream *s, char *etag,
                    size_t etag_sz, tide_error *err) {
  char *path = object_path(dst, name, err), buf[1 << 16];
  int fd = -1, rc = -1;
  if (!path)
    return -1;
  if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
    goto fail;
  for (unsigned long long done = 0; done < s->size;) {
    size_t want = s->size - done > sizeof buf ? sizeof buf : (size_t)(s->size - done);
    const char *chunk = s->data ? s->data + done : buf;
    ssize_t n = s->data ? (ssize_t)want : pread(s->fd, buf, want, (off_t)done);
    if (n <= 0 || write(fd, chunk, (size_t)n) != n)
      goto fail;
    done += (unsigned long long)n;
  }
  if (close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  if (etag_sz)
    snprintf(etag, etag_sz, "%s", s->md5 ? s->md5 : "");
  rc = 0;
  goto cleanup;
fail:
  tide_error_set(err, NULL, "%s: %s", path, errno ? strerror(errno) : "short read");
cleanup:
  if (fd >= 0)
    close(fd);
  free(path);
  return rc;
}

static int spec_get(tide_dest *dst, const char *name, tide_dest_sink *sink, tide_error *err) {
  char *path = object_path(dst, name, err), buf[1 << 16];
  tide_digest dg = {NULL, NULL};
  int fd = -1, rc = -1;
  ssize_t n;
  if (!path)
    goto cleanup;
  if (tide_digest_init(&dg) != 0) {
    tide_error_set(err, NULL, "out of memory");
    goto cleanup;
  }
  if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
    tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
    goto cleanup;
  }
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    if (sink->fd < 0 ? tide_buf_add(sink->mem, buf, (size_t)n) != 0
                     : write(sink->fd, buf, (size_t)n) != n) {
      tide_error_set(err, NULL, "%s: cannot copy", path);
      goto cleanup;
    }
    tide_digest_update(&dg, buf, (size_t)n);
    sink->size += (unsigned long long)n;
  }
  if (n < 0) {
    tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
    goto cleanup;
  }
  tide_digest_final(&dg, sink->sha256, NULL, NULL);
  rc = 0;
cleanup:
  if (fd >= 0)
    close(fd);
  tide_digest_free(&dg);
  free(path);
  return rc;
}

static int spec_head(tide_dest *dst, const char *name, int *exists, unsigned long long *size,
                     char *etag, size_t etag_sz, tide_error *err) {
  char *path = object_path(dst, name, err);
  struct stat st;
  (void)etag;
  (void)etag_sz;
  if (!path)
    return -1;
  if (stat(path, &st) == 0) {
    *exists = 1;
    *size = (unsigned long long)st.st_size;
  }
  free(path);
  return 0;
}

static int spec_list(tide_dest *dst, tide_dest_entries *es, tide_error *err) {
  DIR *d = opendir(dst->state);
  struct dirent *e;
  if (!d) {
    tide_error_set(err, NULL, "%s: %s", (char *)dst->state, strerror(errno));
    return -1;
  }
  while ((e = readdir(d))) {
    char name[1024], full[4096], *o = name;
    struct stat st;
    if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof name)
      continue;
    for (const char *c = e->d_name; *c; c++) /* "%2F" back to '/' */
      *o++ = strncmp(c, "%2F", 3) == 0 ? (c += 2, '/') : *c;
    *o = '\0';
    snprintf(full, sizeof full, "%s%s", (char *)dst->state, e->d_name);
    if (stat(full, &st) == 0 &&
        tide_dest_entries_add(es, name, (unsigned long long)st.st_size, (long long)st.st_mtime)) {
      closedir(d);
      tide_error_set(err, NULL, "out of memory");
      return -1;
    }
  }
  closedir(d);
  return 0;
}

static int spec_remove(tide_dest *dst, const char *name, tide_error *err) {
  char *path = object_path(dst, name, err);
  int rc = path && (unlink(path) == 0 || errno == ENOENT) ? 0 : -1;
  if (path && rc != 0)
    tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
  free(path);
  return rc;
}

static int spec_abort(tide_dest *dst, double max_age, tide_dest_entries *es, tide_error *err) {
  (void)dst, (void)max_age, (void)es, (void)err;
  return 0; /* a put leaves no temporary object */
}

const tide_dest_ops tide_dest_spec_ops = {
    .name = "spec",
    .open = spec_open,
    .close = spec_close,
    .put = spec_put,
    .get = spec_get,
    .head = spec_head,
    .list = spec_list,
    .remove = spec_remove,
    .abort = spec_abort,
};
