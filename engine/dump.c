/* dump.c: pg_dump and pg_restore, for tide.backup. The dump goes into a spool file (spool.c)
 * in a configurable directory; the archive is verified by reading it entirely
 * (`pg_restore -f /dev/null`: `--list` accepts truncated archives) while tide reads it too,
 * computing SHA-256, MD5 and size. The children themselves, and what they are given of the
 * connection string, are child.c's. The read can also be left running (tide.Verification)
 * while the archive is uploaded: the upload is completed only once the read succeeded. Part of
 * tide.core: core.pg_tool_version, core.dump, core.verify_archive, core.restore_archive,
 * core.disk_free, core.file_digest. */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "child.h"
#include "spool.h"
#include "tide.h"
#include "util.h"

/* ---- versions and space ---------------------------------------------------------------- */

int tide_dump_tool_version(const char *tool, char *out, size_t outsz, int *version_num,
                           tide_error *err) {
  char *argv[] = {(char *)tool, "--version", NULL}, **env = tide_child_env(0, NULL);
  int pipefd[2] = {-1, -1}, rc = -1, major = 0, minor = 0, started = 0;
  tide_spawn_opts so;
  tide_child c;
  char buf[256] = "";
  size_t got = 0;
  const char *p;
  if (!env) {
    tide_error_set(err, NULL, "out of memory");
    return -1;
  }
  /* the version comes through a pipe: no temporary file, in /tmp or elsewhere */
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    tide_error_set(err, NULL, "pipe: %s", strerror(errno));
    goto cleanup;
  }
  so = (tide_spawn_opts){argv, env, NULL, pipefd[1], {-1, -1}};
  if (tide_child_start(&c, &so, err) != 0)
    goto cleanup;
  started = 1;
  close(pipefd[1]);
  pipefd[1] = -1;
  for (;;) { /* the child writes one line, well within the pipe's buffer */
    ssize_t n = read(pipefd[0], buf + got, sizeof buf - 1 - got);
    if (n < 0 && errno == EINTR && !tide_interrupted)
      continue;
    if (n <= 0 || (got += (size_t)n) >= sizeof buf - 1)
      break;
  }
  buf[got] = '\0';
  if (tide_child_wait(&c, NULL, NULL, NULL, 0, 0, err) != 0)
    goto cleanup;
  if (!tide_child_ok(&c)) {
    tide_child_failure(&c, tool, err);
    goto cleanup;
  }
  buf[strcspn(buf, "\n")] = '\0';
  /* "pg_dump (PostgreSQL) 15.5 (Debian 15.5-0+deb12u1)" */
  p = strstr(buf, ") ");
  if (!p || sscanf(p + 2, "%d.%d", &major, &minor) < 1) {
    tide_error_set(err, NULL, "%s --version printed no version: %s", tool, buf);
    goto cleanup;
  }
  /* the server_version_num scheme: 150005; 9.6 -> 90600 style for old releases */
  *version_num = major >= 10 ? major * 10000 + minor : major * 10000 + minor * 100;
  snprintf(out, outsz, "%s", buf);
  rc = 0;
cleanup:
  if (started)
    tide_child_finish(&c);
  for (int i = 0; i < 2; i++)
    if (pipefd[i] >= 0)
      close(pipefd[i]);
  tide_child_env_free(env);
  return rc;
}

int tide_dump_disk_free(const char *dir, unsigned long long *bytes, tide_error *err) {
  struct statvfs st;
  if (statvfs(dir, &st) != 0) {
    tide_error_set(err, NULL, "%s: %s", dir, strerror(errno));
    return -1;
  }
  *bytes = (unsigned long long)st.f_bavail * (unsigned long long)st.f_frsize;
  return 0;
}

/* ---- digests --------------------------------------------------------------------------- */

/* Reads path to its end (following a growing file while `c` still runs), computing SHA-256,
 * MD5 and size. */
static int digest_file(const char *path, tide_child *c, tide_dump_result *res,
                       tide_progress_fn progress, void *ud, tide_error *err) {
  tide_digest dg;
  unsigned char *buf = malloc(1 << 20);
  unsigned long long size = 0, total = 0;
  int fd = -1, rc = -1;
  struct stat st;
  double last = 0;
  if (tide_digest_init(&dg) != 0 || !buf) {
    tide_error_set(err, NULL, "out of memory or no digest");
    goto cleanup;
  }
  if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
    tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
    goto cleanup;
  }
  total = (unsigned long long)st.st_size;
  for (;;) {
    ssize_t n;
    if (tide_interrupted) {
      tide_child_interrupted(err);
      goto cleanup;
    }
    n = read(fd, buf, 1 << 20);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
      goto cleanup;
    }
    if (n == 0)
      break;
    tide_digest_update(&dg, buf, (size_t)n);
    size += (unsigned long long)n;
    if (c)
      tide_child_poll(c, 0);
    if (progress && tide_now() - last > 0.25) {
      last = tide_now();
      if (progress(ud, "verify", size, total) != 0) {
        tide_error_set(err, NULL, "interrupted");
        goto cleanup;
      }
    }
  }
  tide_digest_final(&dg, res->sha256, NULL, res->md5);
  res->size = size;
  rc = 0;
cleanup:
  if (fd >= 0)
    close(fd);
  free(buf);
  tide_digest_free(&dg);
  return rc;
}

int tide_dump_digest(const char *path, tide_dump_result *res, tide_error *err) {
  return digest_file(path, NULL, res, NULL, NULL, err);
}

/* ---- verify, dump, restore ------------------------------------------------------------- */

#define TIDE_VERIFY "tide.Verification"

enum { VERIFY_IDLE, VERIFY_RUNNING, VERIFY_OK, VERIFY_FAILED };

struct tide_verify {
  tide_child c;
  int state;
  unsigned long long size; /* the archive's, for progress */
  tide_error err;          /* why it failed (VERIFY_FAILED) */
};

/* Starts pg_restore reading the archive at path, and hashes the archive while it does: one pass
 * over the page cache each. On success pg_restore is left running in v. */
static int verify_start(tide_verify *v, const char *pg_restore, const char *path,
                        tide_dump_result *res, tide_progress_fn progress, void *ud,
                        tide_error *err) {
  char *argv[] = {(char *)pg_restore, "--file=/dev/null", (char *)path, NULL};
  char **env = tide_child_env(0, NULL);
  tide_spawn_opts so = {argv, env, NULL, -1, {-1, -1}};
  int rc = -1;
  v->state = VERIFY_IDLE;
  if (!env) {
    tide_error_set(err, NULL, "out of memory");
    return -1;
  }
  if (tide_child_start(&v->c, &so, err) != 0)
    goto cleanup;
  v->state = VERIFY_RUNNING;
  if (digest_file(path, &v->c, res, progress, ud, err) != 0)
    goto cleanup;
  v->size = res->size;
  rc = 0;
cleanup:
  if (rc != 0 && v->state == VERIFY_RUNNING) {
    tide_child_finish(&v->c);
    v->state = VERIFY_IDLE;
  }
  tide_child_env_free(env);
  return rc;
}

static int verify_wait(tide_verify *v, tide_progress_fn progress, void *ud, tide_error *err) {
  if (v->state == VERIFY_RUNNING) {
    if (tide_child_wait(&v->c, progress, ud, "verify", v->size, v->size, &v->err) != 0)
      v->state = VERIFY_FAILED;
    else if (!tide_child_ok(&v->c)) {
      tide_child_failure(&v->c, "pg_restore (reading the whole archive)", &v->err);
      v->state = VERIFY_FAILED;
    } else
      v->state = VERIFY_OK;
    tide_child_finish(&v->c);
  }
  if (v->state == VERIFY_OK)
    return 0;
  if (v->state == VERIFY_IDLE)
    tide_error_set(&v->err, NULL, "the verification was stopped before it ended");
  *err = v->err;
  return -1;
}

int tide_verify_finish(tide_verify *v, tide_error *err) {
  return verify_wait(v, NULL, NULL, err);
}

/* Stops a read still running (the archive then counts as unverified). */
static void verify_stop(tide_verify *v) {
  if (v->state == VERIFY_RUNNING) {
    tide_child_finish(&v->c);
    v->state = VERIFY_IDLE;
  }
}

int tide_dump_verify(const char *pg_restore, const char *path, tide_dump_result *res,
                     tide_progress_fn progress, void *ud, tide_error *err) {
  tide_verify v;
  int rc;
  memset(&v, 0, sizeof v);
  if (verify_start(&v, pg_restore, path, res, progress, ud, err) != 0)
    return -1;
  rc = verify_wait(&v, progress, ud, err);
  verify_stop(&v);
  return rc;
}

int tide_dump_run(const tide_dump_opts *o, tide_dump_result *res, tide_error *err) {
  tide_conn_secrets cs;
  char **env = NULL;
  char lock_arg[128], file_arg[4200], dbname_arg[16] = "--dbname";
  char *argv[12];
  int argc = 0, rc = -1, started = 0;
  unsigned long long free_bytes = 0;
  tide_child c;
  tide_spawn_opts so;
  struct stat st;
  double last = 0;

  memset(res, 0, sizeof *res);
  res->spool_fd = -1;
  tide_conn_secrets_init(&cs);
  memset(&c, 0, sizeof c);
  c.err_fd = -1;
  if (tide_dump_tool_version(o->pg_dump, res->pg_dump_version, sizeof res->pg_dump_version,
                             &res->pg_dump_version_num, err) != 0)
    return -1;
  if (o->server_version_num > 0 &&
      res->pg_dump_version_num / 10000 < o->server_version_num / 10000) {
    tide_error_set(
        err, NULL,
        "%s is older than the server (%s; server_version_num %d): use a pg_dump of at least "
        "the server's major version (backup.pg_bindir)",
        o->pg_dump, res->pg_dump_version, o->server_version_num);
    return -1;
  }
  if (tide_dump_disk_free(o->tmp_dir, &free_bytes, err) != 0)
    return -1;
  if (free_bytes < o->min_free) {
    tide_error_set(
        err, NULL,
        "not enough free space in %s: %llu MiB free, %llu MiB needed (the database's size)",
        o->tmp_dir, free_bytes >> 20, o->min_free >> 20);
    return -1;
  }
  if ((res->spool_fd =
           tide_spool_create(o->tmp_dir, "tide-backup", res->path, sizeof res->path, err)) < 0)
    return -1;
  if (tide_conn_secrets_split(o->conninfo, o->tmp_dir, &cs, err) != 0)
    goto cleanup;
  if (!(env = tide_conn_secrets_env(&cs))) {
    tide_error_set(err, NULL, "out of memory");
    goto cleanup;
  }
  snprintf(lock_arg, sizeof lock_arg, "--lock-wait-timeout=%s",
           o->lock_wait_timeout ? o->lock_wait_timeout : "30s");
  snprintf(file_arg, sizeof file_arg, "--file=%s", res->path);
  argv[argc++] = (char *)o->pg_dump;
  argv[argc++] = "--format=custom";
  argv[argc++] = "--no-password";
  argv[argc++] = lock_arg;
  argv[argc++] = file_arg;
  if (*cs.safe) {
    argv[argc++] = dbname_arg;
    argv[argc++] = cs.safe;
  }
  argv[argc] = NULL;
  so = (tide_spawn_opts){argv, env, NULL, -1, {cs.passfile, cs.service}};
  if (tide_child_start(&c, &so, err) != 0)
    goto cleanup;
  started = 1;
  while (!tide_child_poll(&c, 250)) {
    if (tide_interrupted) {
      tide_child_interrupted(err);
      goto cleanup;
    }
    if (o->progress && tide_now() - last > 0.25 && stat(res->path, &st) == 0) {
      last = tide_now();
      if (o->progress(o->progress_ud, "dump", (unsigned long long)st.st_size, o->estimate) != 0) {
        tide_error_set(err, NULL, "interrupted");
        goto cleanup;
      }
    }
  }
  if (tide_interrupted) {
    tide_child_interrupted(err);
    goto cleanup;
  }
  if (!tide_child_ok(&c)) {
    tide_child_failure(&c, "pg_dump", err);
    goto cleanup;
  }
  tide_child_finish(&c);
  tide_conn_secrets_free(&cs); /* the child has exited: its secrets can go now */
  if (o->deferred) {           /* the caller waits for the read, or stops it */
    if (verify_start(o->deferred, o->pg_restore, res->path, res, o->progress, o->progress_ud,
                     err) != 0)
      goto cleanup;
  } else if (tide_dump_verify(o->pg_restore, res->path, res, o->progress, o->progress_ud, err) != 0)
    goto cleanup;
  if (res->size == 0) {
    tide_error_set(err, NULL, "pg_dump wrote an empty archive");
    goto cleanup;
  }
  rc = 0;
cleanup:
  if (started)
    tide_child_finish(&c);
  if (rc != 0 && o->deferred)
    verify_stop(o->deferred);
  if (rc != 0 && res->path[0]) {
    unlink(res->path);
    res->path[0] = '\0';
  }
  if (rc != 0 && res->spool_fd >= 0) {
    close(res->spool_fd);
    res->spool_fd = -1;
  }
  tide_conn_secrets_free(&cs);
  tide_child_env_free(env);
  return rc;
}

int tide_dump_restore(const char *pg_restore, const char *conninfo, const char *path, int clean,
                      tide_error *err) {
  tide_conn_secrets cs;
  char **env = NULL, dir[4096], *slash;
  char *argv[12];
  int argc = 0, rc = -1, started = 0;
  tide_spawn_opts so;
  tide_child c;
  /* the archive's folder (the spool directory) for the rare system without memfd */
  snprintf(dir, sizeof dir, "%s", path);
  slash = strrchr(dir, '/');
  if (slash)
    *slash = '\0';
  if (tide_conn_secrets_split(conninfo, slash ? dir : ".", &cs, err) != 0)
    return -1;
  if (!(env = tide_conn_secrets_env(&cs))) {
    tide_error_set(err, NULL, "out of memory");
    goto cleanup;
  }
  argv[argc++] = (char *)pg_restore;
  argv[argc++] = "--single-transaction";
  argv[argc++] = "--exit-on-error";
  argv[argc++] = "--no-password";
  if (clean) {
    argv[argc++] = "--clean";
    argv[argc++] = "--if-exists";
  }
  if (*cs.safe) { /* without a URL, libpq's PG* variables name the target */
    argv[argc++] = "--dbname";
    argv[argc++] = cs.safe;
  }
  argv[argc++] = (char *)path;
  argv[argc] = NULL;
  so = (tide_spawn_opts){argv, env, NULL, -1, {cs.passfile, cs.service}};
  if (tide_child_start(&c, &so, err) != 0)
    goto cleanup;
  started = 1;
  if (tide_child_wait(&c, NULL, NULL, NULL, 0, 0, err) != 0)
    goto cleanup;
  if (!tide_child_ok(&c)) {
    tide_child_failure(&c, "pg_restore", err);
    goto cleanup;
  }
  rc = 0;
cleanup:
  /* stopping pg_restore closes its connection: the server rolls its transaction back */
  if (started)
    tide_child_finish(&c);
  tide_conn_secrets_free(&cs);
  tide_child_env_free(env);
  return rc;
}

/* ---- Lua bindings ---------------------------------------------------------------------- */

typedef struct lua_progress {
  lua_State *L;
  int fn; /* stack index of the callback, 0 when none */
  int failed;
} lua_progress;

/* Calls the Lua progress function in protected mode: an error in it stops the work, and is
 * re-raised by the binding after the children are gone. */
static int progress_to_lua(void *ud, const char *stage, unsigned long long done,
                           unsigned long long total) {
  lua_progress *p = ud;
  if (!p->fn)
    return 0;
  lua_pushvalue(p->L, p->fn);
  lua_pushstring(p->L, stage);
  lua_pushinteger(p->L, (lua_Integer)done);
  lua_pushinteger(p->L, (lua_Integer)total);
  if (lua_pcall(p->L, 3, 0, 0) != LUA_OK) {
    p->failed = lua_gettop(p->L); /* keep the error object on the stack */
    return 1;
  }
  return 0;
}

/* Rejects keys of the option table at idx not in allowed (NULL-terminated). */
static void check_keys(lua_State *L, int idx, const char *const allowed[]) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int ok = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING)
      for (int i = 0; allowed[i]; i++)
        ok |= strcmp(lua_tostring(L, -1), allowed[i]) == 0;
    if (!ok)
      tide_error_raisef(L, "internal", "unknown option `%s`", luaL_tolstring(L, -1, NULL));
  }
}

static const char *opt_string(lua_State *L, int idx, const char *key, const char *def) {
  const char *s;
  lua_getfield(L, idx, key);
  s = lua_isnil(L, -1) ? def : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the string stays alive: the option table holds it */
  return s;
}

static lua_Integer opt_integer(lua_State *L, int idx, const char *key, lua_Integer def) {
  lua_Integer v;
  lua_getfield(L, idx, key);
  v = lua_isnil(L, -1) ? def : luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  return v;
}

static void push_result(lua_State *L, const tide_dump_result *res) {
  lua_createtable(L, 0, 6);
  if (res->path[0]) {
    lua_pushstring(L, res->path);
    lua_setfield(L, -2, "path");
  }
  lua_pushinteger(L, (lua_Integer)res->size);
  lua_setfield(L, -2, "size");
  lua_pushstring(L, res->sha256);
  lua_setfield(L, -2, "sha256");
  lua_pushstring(L, res->md5);
  lua_setfield(L, -2, "md5");
  if (res->pg_dump_version[0]) {
    lua_pushstring(L, res->pg_dump_version);
    lua_setfield(L, -2, "pg_dump_version");
  }
}

static int raise_progress_or(lua_State *L, lua_progress *p, const tide_error *err) {
  if (p->failed) {
    lua_pushvalue(L, p->failed);
    return lua_error(L);
  }
  return tide_error_raise(L, "backup", err);
}

/* core.pg_tool_version(path) -> "pg_dump (PostgreSQL) 15.5", 150005 | raises tide.Error */
static int l_pg_tool_version(lua_State *L) {
  const char *tool = luaL_checkstring(L, 1);
  char out[256];
  int num = 0;
  tide_error err = {0};
  if (tide_dump_tool_version(tool, out, sizeof out, &num, &err) != 0)
    return tide_error_raise(L, "backup", &err);
  lua_pushstring(L, out);
  lua_pushinteger(L, num);
  return 2;
}

/* core.dump{pg_dump=, pg_restore=, url=, tmp_dir=, lock_wait_timeout=, server_version_num=,
 *           min_free=, estimate=, progress=fn(stage, done, total), defer_verify=}
 *   -> {path, size, sha256, md5, pg_dump_version, spool, verification?}
 *      | raises tide.Error (kind "backup")
 * spool (a tide.Spool) holds the archive's lock: spool:close() removes the file. With
 * defer_verify, the archive is hashed and returned while pg_restore still reads it back:
 * verification (a tide.Verification) says how that read ended. */
static int l_dump(lua_State *L) {
  static const char *const keys[] = {
      "pg_dump",           "pg_restore",         "url",      "tmp_dir",
      "lock_wait_timeout", "server_version_num", "min_free", "estimate",
      "progress",          "defer_verify",       NULL};
  tide_dump_opts o;
  tide_dump_result res;
  tide_error err = {0};
  lua_progress p = {L, 0, 0};
  tide_spool *sp;
  check_keys(L, 1, keys);
  lua_settop(L, 1);
  memset(&o, 0, sizeof o);
  sp = tide_spool_push(L);        /* [opts, spool] */
  lua_getfield(L, 1, "progress"); /* [opts, spool, progress] */
  if (!lua_isnil(L, 3)) {
    luaL_checktype(L, 3, LUA_TFUNCTION);
    p.fn = 3;
  }
  lua_getfield(L, 1, "defer_verify");
  if (lua_toboolean(L, -1)) { /* [opts, spool, progress, verification] */
    o.deferred = lua_newuserdatauv(L, sizeof *o.deferred, 0);
    memset(o.deferred, 0, sizeof *o.deferred);
    luaL_setmetatable(L, TIDE_VERIFY);
  }
  lua_remove(L, 4);
  o.pg_dump = opt_string(L, 1, "pg_dump", "pg_dump");
  o.pg_restore = opt_string(L, 1, "pg_restore", "pg_restore");
  o.conninfo = opt_string(L, 1, "url", "");
  o.tmp_dir = opt_string(L, 1, "tmp_dir", "/tmp");
  o.lock_wait_timeout = opt_string(L, 1, "lock_wait_timeout", "30s");
  o.server_version_num = (int)opt_integer(L, 1, "server_version_num", 0);
  o.min_free = (unsigned long long)opt_integer(L, 1, "min_free", 0);
  o.estimate = (unsigned long long)opt_integer(L, 1, "estimate", 0);
  o.progress = progress_to_lua;
  o.progress_ud = &p;
  if (tide_dump_run(&o, &res, &err) != 0)
    return raise_progress_or(L, &p, &err);
  tide_spool_own(sp, res.spool_fd, res.path);
  push_result(L, &res);
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "spool");
  if (o.deferred) {
    lua_pushvalue(L, 4);
    lua_setfield(L, -2, "verification");
  }
  return 1;
}

tide_verify *tide_verify_test(lua_State *L, int idx) {
  return luaL_testudata(L, idx, TIDE_VERIFY);
}

/* verification:wait() -> true | raises tide.Error (kind "backup"): pg_restore's full read */
static int l_verify_wait(lua_State *L) {
  tide_verify *v = luaL_checkudata(L, 1, TIDE_VERIFY);
  tide_error err = {0};
  if (tide_verify_finish(v, &err) != 0)
    return tide_error_raise(L, "backup", &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* verification:close(): stops a read still running. Idempotent; also __close and __gc. */
static int l_verify_close(lua_State *L) {
  verify_stop(luaL_checkudata(L, 1, TIDE_VERIFY));
  return 0;
}

/* core.verify_archive(pg_restore, path) -> {size, sha256, md5} | raises tide.Error */
static int l_verify_archive(lua_State *L) {
  const char *tool = luaL_checkstring(L, 1), *path = luaL_checkstring(L, 2);
  tide_dump_result res;
  tide_error err = {0};
  memset(&res, 0, sizeof res);
  if (tide_dump_verify(tool, path, &res, NULL, NULL, &err) != 0)
    return tide_error_raise(L, "backup", &err);
  push_result(L, &res);
  return 1;
}

/* core.file_digest(path) -> {size, sha256, md5} | raises tide.Error */
static int l_file_digest(lua_State *L) {
  tide_dump_result res;
  tide_error err = {0};
  memset(&res, 0, sizeof res);
  if (tide_dump_digest(luaL_checkstring(L, 1), &res, &err) != 0)
    return tide_error_raise(L, "backup", &err);
  push_result(L, &res);
  return 1;
}

/* core.restore_archive{pg_restore=, url=, path=, clean=} | raises tide.Error */
static int l_restore_archive(lua_State *L) {
  static const char *const keys[] = {"pg_restore", "url", "path", "clean", NULL};
  tide_error err = {0};
  const char *path;
  int clean;
  check_keys(L, 1, keys);
  lua_getfield(L, 1, "clean");
  clean = lua_toboolean(L, -1);
  lua_pop(L, 1);
  path = opt_string(L, 1, "path", NULL);
  luaL_argcheck(L, path != NULL, 1, "path is required");
  if (tide_dump_restore(opt_string(L, 1, "pg_restore", "pg_restore"), opt_string(L, 1, "url", ""),
                        path, clean, &err) != 0)
    return tide_error_raise(L, "backup", &err);
  return 0;
}

/* core.disk_free(dir) -> bytes available to tide | raises tide.Error */
static int l_disk_free(lua_State *L) {
  unsigned long long bytes = 0;
  tide_error err = {0};
  if (tide_dump_disk_free(luaL_checkstring(L, 1), &bytes, &err) != 0)
    return tide_error_raise(L, "backup", &err);
  lua_pushinteger(L, (lua_Integer)bytes);
  return 1;
}

static const luaL_Reg dump_functions[] = {
    {"pg_tool_version", l_pg_tool_version},
    {"dump", l_dump},
    {"verify_archive", l_verify_archive},
    {"file_digest", l_file_digest},
    {"restore_archive", l_restore_archive},
    {"disk_free", l_disk_free},
    {NULL, NULL},
};

static const luaL_Reg verify_methods[] = {
    {"wait", l_verify_wait},
    {"close", l_verify_close},
    {NULL, NULL},
};

static const luaL_Reg verify_metamethods[] = {
    {"__gc", l_verify_close},
    {"__close", l_verify_close},
    {NULL, NULL},
};

void tide_dump_register(lua_State *L) {
  tide_spool_register(L);
  if (luaL_newmetatable(L, TIDE_VERIFY)) { /* [core, mt] */
    luaL_setfuncs(L, verify_metamethods, 0);
    luaL_newlib(L, verify_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, dump_functions, 0);
}
