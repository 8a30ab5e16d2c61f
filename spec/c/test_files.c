/* test_files.c: what the backup's C layer does to the file system, watched from inside the
 * process: fsync, mkstemp and mkostemp are this file's own (the engine's objects are linked
 * into this program, so their calls reach these first), recording each call before doing the
 * real thing. No server needed; pg_dump comes from PG_BINDIR or /usr/lib/postgresql/<N>/bin.
 *   - a file:// put makes every new directory entry durable: the file (fsync before the
 *     rename), its folder (after the rename), and the folder holding a new backup folder;
 *   - a file:// destination folder that does not exist is an error, not a folder created;
 *   - the pg_dump version probe creates no temporary file anywhere (it reads a pipe). */
#define _GNU_SOURCE /* RTLD_NEXT */
#include <dirent.h>
#include <dlfcn.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"
#include "tide.h"
#include "dest.h"

#define MAX_CALLS 64

static char synced[MAX_CALLS][PATH_MAX]; /* what each fsync call was given, in order */
static int nsynced, ntemp;

int fsync(int fd) {
  char link[64];
  ssize_t n;
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  if (nsynced < MAX_CALLS && (n = readlink(link, synced[nsynced], PATH_MAX - 1)) > 0)
    synced[nsynced++][n] = '\0';
  return (int)syscall(SYS_fsync, fd);
}

int mkstemp(char *template) {
  int (*real)(char *) = (int (*)(char *))dlsym(RTLD_NEXT, "mkstemp");
  ntemp++;
  return real(template);
}

int mkostemp(char *template, int flags) {
  int (*real)(char *, int) = (int (*)(char *, int))dlsym(RTLD_NEXT, "mkostemp");
  ntemp++;
  return real(template, flags);
}

/* The position of the first fsync of path (exactly) at or after `from`, or -1. */
static int synced_at(const char *path, int from) {
  for (int i = from; i < nsynced; i++)
    if (strcmp(synced[i], path) == 0)
      return i;
  return -1;
}

static void durable_put(const char *dir) {
  const char *id = "20261124T101834170Z-app-3f2a1c";
  char url[PATH_MAX + 16], backup_dir[PATH_MAX], file[PATH_MAX + 32], name[256];
  tide_dest_opts o;
  tide_dest *u = NULL;
  tide_error err = {{0}, {0}};
  int tmp_at = -1, file_at, folder_at;
  memset(&o, 0, sizeof o);
  snprintf(url, sizeof url, "file://%s/", dir);
  o.url = url;
  CHECK(tide_dest_open(&u, &o, &err) == 0, "open %s: %s", url, err.message);
  if (!u)
    return;
  snprintf(name, sizeof name, "%s/manifest.json", id);
  snprintf(backup_dir, sizeof backup_dir, "%.3000s/%s", dir, id);
  snprintf(file, sizeof file, "%s/manifest.json", backup_dir);
  nsynced = 0;
  CHECK(tide_dest_put_data(u, name, "{}", 2, &err) == 0, "put: %s", err.message);
  for (int i = 0; i < nsynced; i++)
    if (strncmp(synced[i], file, strlen(file)) == 0 && strstr(synced[i], ".tmp-"))
      tmp_at = tmp_at < 0 ? i : tmp_at;
  file_at = synced_at(backup_dir, tmp_at < 0 ? 0 : tmp_at);
  folder_at = synced_at(dir, 0);
  CHECK(tmp_at >= 0, "the file was not fsynced before its rename");
  CHECK(file_at > tmp_at, "the backup's folder was not fsynced after the rename");
  /* the new folder's entry in the destination folder: a power loss must not lose the backup
   * that the history row points to */
  CHECK(folder_at >= 0,
        "the destination folder was not fsynced after the backup's folder was made");
  for (int i = 0; i < nsynced; i++)
    printf("# fsync %d: %s\n", i, synced[i]);
  tide_dest_close(u);
}

static void missing_folder(const char *dir) {
  char url[PATH_MAX + 32], missing[PATH_MAX];
  tide_dest_opts o;
  tide_dest *u = NULL;
  tide_error err = {{0}, {0}};
  struct stat st;
  int exists = 0;
  unsigned long long size = 0;
  memset(&o, 0, sizeof o);
  snprintf(missing, sizeof missing, "%s/missing/dir", dir);
  snprintf(url, sizeof url, "file://%s/", missing);
  o.url = url;
  CHECK(tide_dest_open(&u, &o, &err) == 0, "open %s: %s", url, err.message);
  if (!u)
    return;
  CHECK(tide_dest_head(u, "x/archive.dump", &exists, &size, NULL, 0, &err) != 0,
        "HEAD in a missing folder succeeded");
  CHECK(strstr(err.message, "create the folder first") != NULL, "message: %s", err.message);
  CHECK(tide_dest_put_data(u, "x/manifest.json", "{}", 2, &err) != 0,
        "a put into a missing folder succeeded");
  CHECK(stat(missing, &st) != 0, "%s was created", missing);
  tide_dest_close(u);
}

static void version_probe(void) {
  const char *bindir = getenv("PG_BINDIR");
  char tool[PATH_MAX], version[256];
  int num = 0;
  tide_error err = {{0}, {0}};
  glob_t g;
  if (bindir) {
    snprintf(tool, sizeof tool, "%s/pg_dump", bindir);
  } else if (glob("/usr/lib/postgresql/*/bin/pg_dump", 0, NULL, &g) == 0) {
    snprintf(tool, sizeof tool, "%s", g.gl_pathv[g.gl_pathc - 1]);
    globfree(&g);
  } else {
    CHECK(0, "no pg_dump in /usr/lib/postgresql/*/bin (set PG_BINDIR)");
    return;
  }
  ntemp = 0;
  CHECK(tide_dump_tool_version(tool, version, sizeof version, &num, &err) == 0, "%s --version: %s",
        tool, err.message);
  CHECK(num >= 100000, "version %d from %s", num, version);
  CHECK(ntemp == 0, "the version probe made %d temporary file(s)", ntemp);
}

int main(void) {
  char dir[] = "/tmp/tide-test-files-XXXXXX";
  char cmd[PATH_MAX + 16];
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  durable_put(dir);
  missing_folder(dir);
  version_probe();
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    printf("# could not remove %s\n", dir);
  printf("%d failed\n", failures);
  return failures ? 1 : 0;
}
