/* dest_file.c: the file:///dir/ destination. Plain POSIX: a put writes a temporary name, fsyncs
 * it, renames it into place and fsyncs the folder; the destination's folder must exist (tide
 * creates only each backup's own folder in it). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dest.h"
#include "util.h"

/* The state of a file destination is its folder, ending in '/'. */
static const char *dir_of(const tide_dest *dst) {
  return dst->state;
}

static char *object_path(const tide_dest *dst, const char *name) {
  size_t n = strlen(dir_of(dst)) + strlen(name) + 1;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s%s", dir_of(dst), name);
  return p;
}

static int file_open(tide_dest *dst, const char *url, tide_error *err) {
  const char *p = url + strlen("file://");
  size_t n;
  char *dir;
  if (*p != '/') {
    tide_error_set(err, NULL, "file destinations need an absolute path: file:///dir/");
    return -1;
  }
  n = strlen(p);
  if (!(dir = malloc(n + 2)))
    return -1;
  snprintf(dir, n + 2, "%s%s", p, p[n - 1] == '/' ? "" : "/");
  dst->state = dir;
  if ((dst->display = malloc(n + 10)))
    snprintf(dst->display, n + 10, "file://%s", dir);
  return 0;
}

static void file_close(tide_dest *dst) {
  free(dst->state);
}

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
static int check_dir(const tide_dest *dst, tide_error *err) {
  struct stat st;
  if (stat(dir_of(dst), &st) != 0 || !S_ISDIR(st.st_mode)) {
    tide_error_set(
        err, NULL,
        "%s: %s (create the folder first: tide creates only each backup's own folder in it)",
        dst->display, stat(dir_of(dst), &st) != 0 ? strerror(errno) : "not a folder");
    return -1;
  }
  return 0;
}

/* Creates the folders of path below the destination folder (which must exist), fsyncing the
 * folder each new one is in, so that the backup's folder survives a power loss along with
 * the files in it. */
static int make_parents(const tide_dest *dst, const char *path, tide_error *err) {
  char *p = strdup(path);
  int rc = 0;
  if (!p) {
    tide_error_set(err, NULL, "out of memory");
    return -1;
  }
  if (check_dir(dst, err) != 0) {
    free(p);
    return -1;
  }
  for (char *s = p + strlen(dir_of(dst)); *s; s++) {
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
static int file_put(tide_dest *dst, const char *name, const tide_dest_stream *s, tide_error *err) {
  int src_fd = s->fd;
  const char *data = s->data;
  unsigned long long len = s->size;
  char *final = object_path(dst, name), *tmp = NULL;
  char *buf = data ? NULL : malloc(1 << 20);
  int fd = -1, rc = -1;
  unsigned long long done = 0;
  double last = 0;
  if (!final || (!data && !buf))
    goto oom;
  if (make_parents(dst, final, err) != 0)
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
   * (its tide is gone; see file_abort) */
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
    if (dst->o.progress && tide_now() - last > 0.25) {
      last = tide_now();
      if (dst->o.progress(dst->o.progress_ud, "upload", done, len) != 0) {
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
  if (tide_dest_gate_pass(s, err) != 0)
    goto cleanup;
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

/* Files under dir (relative names), two levels deep: <id>/<file>. */
static int file_list(const char *base, const char *sub, int depth, tide_dest_entries *es,
                     tide_error *err) {
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
    } else if (S_ISREG(st.st_mode) && tide_dest_entries_add(es, rel, (unsigned long long)st.st_size,
                                                            (long long)st.st_mtime) != 0) {
      tide_error_set(err, NULL, "out of memory");
      rc = -1;
    }
  }
  closedir(d);
  return rc;
}

/* file://: the temporary files of tide's own put (<id>/<name>.tmp-XXXXXX) whose writer is
 * gone (their lock is free; see tide_spool_is_stale), and the backup folder when that leaves
 * it empty. */
static int file_sweep(tide_dest *dst, tide_dest_entries *es, tide_error *err) {
  DIR *top, *d;
  struct dirent *e, *f;
  if (check_dir(dst, err) != 0)
    return -1;
  if (!(top = opendir(dir_of(dst)))) {
    tide_error_set(err, NULL, "%s: %s", dir_of(dst), strerror(errno));
    return -1;
  }
  while ((e = readdir(top))) {
    char sub[8192];
    int removed = 0;
    if (!tide_dest_backup_id(e->d_name, e->d_name + strlen(e->d_name)))
      continue;
    snprintf(sub, sizeof sub, "%s%s", dir_of(dst), e->d_name);
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
      if (tide_dest_entries_add(es, rel, 0, 0) != 0) {
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

static int file_put_stream(tide_dest *dst, const char *name, const tide_dest_stream *s, char *etag,
                           size_t etag_sz, tide_error *err) {
  if (file_put(dst, name, s, err) != 0)
    return -1;
  if (etag_sz && s->md5)
    snprintf(etag, etag_sz, "%s", s->md5);
  return 0;
}

static int file_get(tide_dest *dst, const char *name, tide_dest_sink *sink, tide_error *err) {
  char *path = object_path(dst, name), buf[1 << 16];
  tide_digest dg = {NULL, NULL};
  int src = -1, rc = -1;
  ssize_t n;
  if (!path || (sink->fd >= 0 && tide_digest_init(&dg) != 0)) {
    tide_error_set(err, NULL, "out of memory");
    goto cleanup;
  }
  if ((src = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
    tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
    goto cleanup;
  }
  while ((n = read(src, buf, sizeof buf)) > 0) {
    if (sink->fd < 0) {
      if (tide_buf_add(sink->mem, buf, (size_t)n) != 0) {
        tide_error_set(err, NULL, "%s: too large", path);
        goto cleanup;
      }
      continue;
    }
    if (tide_interrupted ||
        (sink->max_size && sink->size + (unsigned long long)n > sink->max_size)) {
      if (tide_interrupted)
        tide_error_set(err, NULL, "interrupted by %s", tide_signal_name(tide_interrupted));
      else
        tide_error_set(err, NULL, "%s is larger than the %llu bytes expected: not copied", path,
                       sink->max_size);
      goto cleanup;
    }
    if (write(sink->fd, buf, (size_t)n) != n) {
      tide_error_set(err, NULL, "writing %s: %s", sink->file, strerror(errno));
      goto cleanup;
    }
    tide_digest_update(&dg, buf, (size_t)n);
    sink->size += (unsigned long long)n;
  }
  if (n < 0) {
    tide_error_set(err, NULL, "reading %s: %s", path, strerror(errno));
    goto cleanup;
  }
  if (sink->fd >= 0)
    tide_digest_final(&dg, sink->sha256, NULL, NULL);
  rc = 0;
cleanup:
  if (src >= 0)
    close(src);
  tide_digest_free(&dg);
  free(path);
  return rc;
}

static int file_head(tide_dest *dst, const char *name, int *exists, unsigned long long *size,
                     char *etag, size_t etag_sz, tide_error *err) {
  char *path = object_path(dst, name);
  struct stat st;
  int rc = -1;
  (void)etag;
  (void)etag_sz;
  if (!path) {
    tide_error_set(err, NULL, "out of memory");
    return -1;
  }
  if (check_dir(dst, err) != 0)
    goto cleanup;
  if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
    *exists = 1;
    *size = (unsigned long long)st.st_size;
  } else if (errno != ENOENT) {
    tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
    goto cleanup;
  }
  rc = 0;
cleanup:
  free(path);
  return rc;
}

static int file_list_all(tide_dest *dst, tide_dest_entries *es, tide_error *err) {
  if (check_dir(dst, err) != 0)
    return -1;
  return file_list(dir_of(dst), "", 2, es, err);
}

static int file_remove(tide_dest *dst, const char *name, tide_error *err) {
  char *path = object_path(dst, name), *slash;
  if (!path) {
    tide_error_set(err, NULL, "out of memory");
    return -1;
  }
  if (unlink(path) != 0 && errno != ENOENT) {
    tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
    free(path);
    return -1;
  }
  /* remove the backup's directory once it is empty */
  slash = strrchr(path, '/');
  if (slash && (size_t)(slash - path) > strlen(dir_of(dst))) {
    *slash = '\0';
    rmdir(path);
  }
  free(path);
  return 0;
}

static int file_abort(tide_dest *dst, double max_age, tide_dest_entries *es, tide_error *err) {
  (void)max_age; /* a temporary file is stale once its writer is gone, whatever its age */
  return file_sweep(dst, es, err);
}

const tide_dest_ops tide_dest_file_ops = {
    .name = "file",
    .late_gate = 1,
    .open = file_open,
    .close = file_close,
    .put = file_put_stream,
    .get = file_get,
    .head = file_head,
    .list = file_list_all,
    .remove = file_remove,
    .abort = file_abort,
};
