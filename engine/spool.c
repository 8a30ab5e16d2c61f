/* spool.c: spools, the temporary files a backup or restore writes an archive into: created
 * locked (flock) in a configurable directory, so the next backup can tell one a killed tide
 * left behind from one in use, and remove it. Part of tide.core: tide.Spool, core.spool,
 * core.sweep_spools. */
#define _GNU_SOURCE /* mkostemp */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "spool.h"
#include "tide.h"

#define TIDE_SPOOL "tide.Spool"

/* ---- spools ------------------------------------------------------------------------------ */

/* A spool is dir/<prefix>-XXXXXX, 0600, locked with flock for as long as its descriptor is
 * open. Returns the descriptor (path filled) or -1 with err. */
int tide_spool_create(const char *dir, const char *prefix, char *path, size_t pathsz,
                      tide_error *err) {
  int fd;
  if ((size_t)snprintf(path, pathsz, "%s/%s-XXXXXX", dir, prefix) >= pathsz) {
    tide_error_set(err, NULL, "temporary directory path too long");
    path[0] = '\0';
    return -1;
  }
  if ((fd = mkostemp(path, O_CLOEXEC)) < 0) {
    tide_error_set(err, NULL, "cannot create a temporary file in %s: %s", dir, strerror(errno));
    path[0] = '\0';
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0 && errno != ENOLCK && errno != EOPNOTSUPP) {
    tide_error_set(err, NULL, "cannot lock %s: %s", path, strerror(errno));
    close(fd);
    unlink(path);
    path[0] = '\0';
    return -1;
  }
  return fd;
}

/* Whether the file at fd is a spool nobody holds: a regular file of ours, unchanged for over
 * min_age seconds (far longer than the moment between creating a spool and locking it), whose
 * lock we can take (locks go when their process dies, even with SIGKILL). Where the file
 * system has no locks, only an age of a day makes a file stale. */
int tide_spool_is_stale(int fd, time_t min_age) {
  struct stat st;
  time_t now = time(NULL);
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
      now - st.st_mtime < min_age)
    return 0;
  if (flock(fd, LOCK_EX | LOCK_NB) == 0)
    return 1;
  return (errno == ENOLCK || errno == EOPNOTSUPP) && now - st.st_mtime > 86400;
}

/* Removes dir/name when it is a stale spool (see tide_spool_is_stale), checking that the name
 * still refers to the file that was judged. Returns 1 when removed. */
int tide_spool_remove_stale(const char *dir, const char *name, time_t min_age) {
  char path[8192];
  struct stat a, b;
  int fd, removed = 0;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)) < 0)
    return 0;
  if (tide_spool_is_stale(fd, min_age) && fstat(fd, &a) == 0 && lstat(path, &b) == 0 &&
      a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    removed = unlink(path) == 0;
  close(fd); /* the lock goes with it */
  return removed;
}

/* ---- tide.Spool: a spool file's lock, and its removal ---------------------------------- */

struct tide_spool {
  int fd; /* holds the lock; -1 once closed */
  char path[4096];
};

tide_spool *tide_spool_push(lua_State *L) {
  tide_spool *sp = lua_newuserdatauv(L, sizeof *sp, 0);
  sp->fd = -1;
  sp->path[0] = '\0';
  luaL_setmetatable(L, TIDE_SPOOL);
  return sp;
}

/* spool:close(): removes the file (if the path still names it) and lets go of its lock.
 * Idempotent; also __close and __gc, so a spool Lua forgets is removed all the same. */
static int l_spool_close(lua_State *L) {
  tide_spool *sp = luaL_checkudata(L, 1, TIDE_SPOOL);
  struct stat a, b;
  if (sp->fd >= 0) {
    if (fstat(sp->fd, &a) == 0 && lstat(sp->path, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
      unlink(sp->path);
    close(sp->fd);
    sp->fd = -1;
  }
  return 0;
}

/* spool:path() -> the file's path */
static int l_spool_path(lua_State *L) {
  tide_spool *sp = luaL_checkudata(L, 1, TIDE_SPOOL);
  lua_pushstring(L, sp->path);
  return 1;
}

/* core.spool(dir, prefix) -> spool, path | raises tide.Error: a new locked 0600 file
 * dir/<prefix>-XXXXXX (prefix: "tide-backup" or "tide-restore", which core.sweep_spools knows) */
static int l_spool(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1), *prefix = luaL_checkstring(L, 2);
  tide_spool *sp = tide_spool_push(L);
  tide_error err = {0};
  luaL_argcheck(L, strcmp(prefix, "tide-backup") == 0 || strcmp(prefix, "tide-restore") == 0, 2,
                "tide-backup or tide-restore");
  if ((sp->fd = tide_spool_create(dir, prefix, sp->path, sizeof sp->path, &err)) < 0)
    return tide_error_raise(L, "backup", &err);
  lua_pushstring(L, sp->path);
  return 2;
}

/* core.sweep_spools(dir) -> {name, ...}: removes the spools in dir that a tide killed before it
 * could remove them left behind (unlocked, unchanged for a minute; see tide_spool_is_stale).
 * The names are gathered in a userdata while the DIR is open, so nothing can raise then. */
static int l_sweep_spools(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  size_t room = 16384, used = 0;
  char *names = lua_newuserdatauv(L, room, 0); /* NUL-separated */
  DIR *d;
  struct dirent *e;
  lua_Integer n = 0;
  if ((d = opendir(dir))) {
    while ((e = readdir(d))) {
      size_t len = strlen(e->d_name) + 1;
      if ((strncmp(e->d_name, "tide-backup-", 12) != 0 &&
           strncmp(e->d_name, "tide-restore-", 13) != 0) ||
          used + len > room || !tide_spool_remove_stale(dir, e->d_name, 60))
        continue; /* more than fits waits for the next sweep */
      memcpy(names + used, e->d_name, len);
      used += len;
    }
    closedir(d);
  }
  lua_newtable(L);
  for (size_t i = 0; i < used; i += strlen(names + i) + 1) {
    lua_pushstring(L, names + i);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

void tide_spool_own(tide_spool *sp, int fd, const char *path) {
  sp->fd = fd;
  snprintf(sp->path, sizeof sp->path, "%s", path);
}

static const luaL_Reg spool_methods[] = {
    {"close", l_spool_close},
    {"path", l_spool_path},
    {NULL, NULL},
};

static const luaL_Reg spool_metamethods[] = {
    {"__gc", l_spool_close},
    {"__close", l_spool_close},
    {NULL, NULL},
};

static const luaL_Reg spool_functions[] = {
    {"spool", l_spool},
    {"sweep_spools", l_sweep_spools},
    {NULL, NULL},
};

void tide_spool_register(lua_State *L) {
  if (luaL_newmetatable(L, TIDE_SPOOL)) { /* [core, mt] */
    luaL_setfuncs(L, spool_metamethods, 0);
    luaL_newlib(L, spool_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, spool_functions, 0);
}
