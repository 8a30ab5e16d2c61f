/* dump.c: pg_dump and pg_restore as child processes, for tide.backup. The dump goes into a
 * temporary file in a configurable directory; the archive is verified by reading it entirely
 * (`pg_restore -f /dev/null`: `--list` accepts truncated archives) while tide reads it too,
 * computing SHA-256, MD5 and size. Passwords reach the children through their environment,
 * never argv. Part of tide.core: core.pg_tool_version, core.dump, core.verify_archive,
 * core.restore_archive, core.disk_free, core.file_digest. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <libpq-fe.h>
#include <lua.h>
#include <openssl/evp.h>

#include "tide.h"

extern char **environ;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- child processes ------------------------------------------------------------------- */

/* The environment of a child: ours without PGPASSWORD, plus PGPASSWORD=password when given and
 * PGAPPNAME when none is set. Freed with free_env. */
static char **child_env(const char *password) {
  size_t n = 0, o = 0;
  char **env;
  while (environ[n])
    n++;
  if (!(env = calloc(n + 3, sizeof *env)))
    return NULL;
  for (size_t i = 0; i < n; i++) {
    if (strncmp(environ[i], "PGPASSWORD=", 11) == 0)
      continue;
    if (!(env[o++] = strdup(environ[i])))
      goto oom;
  }
  if (password) {
    size_t len = strlen(password) + 12;
    if (!(env[o] = malloc(len)))
      goto oom;
    snprintf(env[o++], len, "PGPASSWORD=%s", password);
  }
  if (!getenv("PGAPPNAME") && !(env[o++] = strdup("PGAPPNAME=tide-backup")))
    goto oom;
  return env;
oom:
  for (size_t i = 0; env[i]; i++)
    free(env[i]);
  free(env);
  return NULL;
}

static void free_env(char **env) {
  if (!env)
    return;
  for (size_t i = 0; env[i]; i++) {
    if (strncmp(env[i], "PGPASSWORD=", 11) == 0)
      memset(env[i], 0, strlen(env[i]));
    free(env[i]);
  }
  free(env);
}

/* A running child whose stderr tide keeps the tail of (for the one-line failure message). */
typedef struct child {
  pid_t pid;
  int err_fd;
  char tail[2048];
  size_t tail_len;
  int status;
  int done;
} child;

static int child_start(child *c, char *const argv[], char **env, const char *stdout_path,
                       tide_error *err) {
  posix_spawn_file_actions_t fa;
  int pipefd[2], rc;
  memset(c, 0, sizeof *c);
  c->pid = -1;
  c->err_fd = -1;
  if (pipe(pipefd) != 0) {
    tide_error_set(err, NULL, "pipe: %s", strerror(errno));
    return -1;
  }
  fcntl(pipefd[0], F_SETFD, FD_CLOEXEC);
  fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, stdout_path ? stdout_path : "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
  posix_spawn_file_actions_addclose(&fa, pipefd[1]);
  rc = posix_spawn(&c->pid, argv[0], &fa, NULL, argv, env);
  posix_spawn_file_actions_destroy(&fa);
  close(pipefd[1]);
  if (rc != 0) {
    close(pipefd[0]);
    c->pid = -1;
    tide_error_set(err, NULL, "cannot start %s: %s", argv[0], strerror(rc));
    return -1;
  }
  c->err_fd = pipefd[0];
  return 0;
}

static void child_drain(child *c) {
  char buf[1024];
  ssize_t n;
  while (c->err_fd >= 0 && (n = read(c->err_fd, buf, sizeof buf)) != 0) {
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return; /* EAGAIN: nothing more for now */
    }
    size_t k = (size_t)n;
    /* buf is smaller than tail: keep the newest bytes, drop the oldest */
    if (c->tail_len + k >= sizeof c->tail) {
      size_t drop = c->tail_len + k - (sizeof c->tail - 1);
      memmove(c->tail, c->tail + drop, c->tail_len - drop);
      c->tail_len -= drop;
    }
    memcpy(c->tail + c->tail_len, buf, k);
    c->tail_len += k;
    c->tail[c->tail_len] = '\0';
  }
  if (c->err_fd >= 0) { /* end of file: the child closed stderr (or exited) */
    close(c->err_fd);
    c->err_fd = -1;
  }
}

/* Waits up to timeout_ms for the child to exit, collecting stderr. Returns 1 when it exited. */
static int child_poll(child *c, int timeout_ms) {
  struct pollfd p = {c->err_fd, POLLIN, 0};
  pid_t r;
  if (c->done)
    return 1;
  if (c->err_fd >= 0 && poll(&p, 1, timeout_ms) > 0)
    child_drain(c);
  else if (c->err_fd < 0 && timeout_ms > 0)
    poll(NULL, 0, timeout_ms < 20 ? timeout_ms : 20); /* stderr closed: poll the exit often */
  r = waitpid(c->pid, &c->status, WNOHANG);
  if (r == c->pid) {
    c->done = 1;
    child_drain(c);
  }
  return c->done;
}

static void child_finish(child *c) {
  if (c->pid > 0 && !c->done) {
    kill(c->pid, SIGTERM);
    while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR)
      ;
    c->done = 1;
  }
  if (c->err_fd >= 0)
    close(c->err_fd);
  c->err_fd = -1;
}

/* The last non-empty line of the child's stderr, without the "pg_dump: error: " noise kept. */
static const char *last_line(child *c) {
  char *end = c->tail + c->tail_len, *start;
  while (end > c->tail && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
    *--end = '\0';
  start = end;
  while (start > c->tail && start[-1] != '\n')
    start--;
  return start;
}

/* "exited with status 1: <last stderr line>" or "was killed by signal 9" */
static void child_failure(child *c, const char *what, tide_error *err) {
  const char *line = last_line(c);
  if (WIFSIGNALED(c->status))
    tide_error_set(err, NULL, "%s was killed by signal %d%s%s", what, WTERMSIG(c->status),
                   *line ? ": " : "", line);
  else
    tide_error_set(err, NULL, "%s exited with status %d%s%s", what, WEXITSTATUS(c->status),
                   *line ? ": " : "", line);
}

static int child_ok(const child *c) {
  return WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0;
}

/* ---- connection strings ---------------------------------------------------------------- */

/* Splits a libpq URL or keyword string into a keyword string without the password (for argv)
 * and the password (for the child's environment). Both malloc'd; *password may be NULL. */
static int split_conninfo(const char *conninfo, char **safe, char **password, tide_error *err) {
  PQconninfoOption *opts, *o;
  char *perr = NULL;
  size_t len = 1;
  *safe = *password = NULL;
  if (!conninfo || !*conninfo) {
    *safe = strdup("");
    return *safe ? 0 : -1;
  }
  if (!(opts = PQconninfoParse(conninfo, &perr))) {
    /* libpq's message may quote the string: do not repeat it, it can carry a password */
    tide_error_set(err, NULL, "the connection string is not valid");
    PQfreemem(perr);
    return -1;
  }
  for (o = opts; o->keyword; o++)
    if (o->val)
      len += strlen(o->keyword) + 2 * strlen(o->val) + 5;
  if (!(*safe = malloc(len))) {
    PQconninfoFree(opts);
    tide_error_set(err, NULL, "out of memory");
    return -1;
  }
  (*safe)[0] = '\0';
  for (o = opts; o->keyword; o++) {
    char *p;
    if (!o->val)
      continue;
    if (strcmp(o->keyword, "password") == 0) {
      *password = strdup(o->val);
      continue;
    }
    p = *safe + strlen(*safe);
    if (p != *safe)
      *p++ = ' ';
    p += sprintf(p, "%s='", o->keyword);
    for (const char *v = o->val; *v; v++) {
      if (*v == '\'' || *v == '\\')
        *p++ = '\\';
      *p++ = *v;
    }
    *p++ = '\'';
    *p = '\0';
  }
  PQconninfoFree(opts);
  return 0;
}

/* ---- versions and space ---------------------------------------------------------------- */

int tide_dump_tool_version(const char *tool, char *out, size_t outsz, int *version_num,
                           tide_error *err) {
  char *argv[] = {(char *)tool, "--version", NULL};
  char tmpl[] = "/tmp/tide-version-XXXXXX";
  int fd = mkstemp(tmpl), rc = -1, major = 0, minor = 0;
  child c;
  char buf[256] = "";
  ssize_t n;
  const char *p;
  if (fd < 0) {
    tide_error_set(err, NULL, "mkstemp: %s", strerror(errno));
    return -1;
  }
  if (child_start(&c, argv, environ, tmpl, err) != 0)
    goto cleanup;
  while (!child_poll(&c, 1000))
    ;
  child_finish(&c);
  if (!child_ok(&c)) {
    child_failure(&c, tool, err);
    goto cleanup;
  }
  n = pread(fd, buf, sizeof buf - 1, 0);
  buf[n > 0 ? n : 0] = '\0';
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
  close(fd);
  unlink(tmpl);
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
static int digest_file(const char *path, child *c, tide_dump_result *res, tide_progress_fn progress,
                       void *ud, tide_error *err) {
  EVP_MD_CTX *sha = EVP_MD_CTX_new(), *md5 = EVP_MD_CTX_new();
  unsigned char *buf = malloc(1 << 20), md[EVP_MAX_MD_SIZE];
  unsigned int mdlen;
  unsigned long long size = 0, total = 0;
  int fd = -1, rc = -1;
  struct stat st;
  double last = 0;
  if (!sha || !md5 || !buf || !EVP_DigestInit_ex(sha, EVP_sha256(), NULL) ||
      !EVP_DigestInit_ex(md5, EVP_md5(), NULL)) {
    tide_error_set(err, NULL, "out of memory or no digest");
    goto cleanup;
  }
  if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
    tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
    goto cleanup;
  }
  total = (unsigned long long)st.st_size;
  for (;;) {
    ssize_t n = read(fd, buf, 1 << 20);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      tide_error_set(err, NULL, "%s: %s", path, strerror(errno));
      goto cleanup;
    }
    if (n == 0)
      break;
    EVP_DigestUpdate(sha, buf, (size_t)n);
    EVP_DigestUpdate(md5, buf, (size_t)n);
    size += (unsigned long long)n;
    if (c)
      child_poll(c, 0);
    if (progress && now_s() - last > 0.25) {
      last = now_s();
      if (progress(ud, "verify", size, total) != 0) {
        tide_error_set(err, NULL, "interrupted");
        goto cleanup;
      }
    }
  }
  EVP_DigestFinal_ex(sha, md, &mdlen);
  tide_sigv4_hex(md, mdlen, res->sha256);
  EVP_DigestFinal_ex(md5, md, &mdlen);
  tide_sigv4_hex(md, mdlen, res->md5);
  res->size = size;
  rc = 0;
cleanup:
  if (fd >= 0)
    close(fd);
  free(buf);
  EVP_MD_CTX_free(sha);
  EVP_MD_CTX_free(md5);
  return rc;
}

int tide_dump_digest(const char *path, tide_dump_result *res, tide_error *err) {
  return digest_file(path, NULL, res, NULL, NULL, err);
}

/* ---- verify, dump, restore ------------------------------------------------------------- */

int tide_dump_verify(const char *pg_restore, const char *path, tide_dump_result *res,
                     tide_progress_fn progress, void *ud, tide_error *err) {
  char *argv[] = {(char *)pg_restore, "--file=/dev/null", (char *)path, NULL};
  child c;
  int rc = -1;
  if (child_start(&c, argv, environ, NULL, err) != 0)
    return -1;
  /* pg_restore reads the archive while tide hashes it: one pass over the page cache each */
  if (digest_file(path, &c, res, progress, ud, err) != 0)
    goto cleanup;
  while (!child_poll(&c, 250))
    if (progress && progress(ud, "verify", res->size, res->size) != 0) {
      tide_error_set(err, NULL, "interrupted");
      goto cleanup;
    }
  if (!child_ok(&c)) {
    child_failure(&c, "pg_restore (reading the whole archive)", err);
    goto cleanup;
  }
  rc = 0;
cleanup:
  child_finish(&c);
  return rc;
}

int tide_dump_run(const tide_dump_opts *o, tide_dump_result *res, tide_error *err) {
  char *safe = NULL, *password = NULL, **env = NULL;
  char lock_arg[128], file_arg[4200], dbname_arg[16] = "--dbname";
  char *argv[12];
  int argc = 0, fd = -1, rc = -1, started = 0;
  unsigned long long free_bytes = 0;
  child c;
  struct stat st;
  double last = 0;

  memset(res, 0, sizeof *res);
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
  if (snprintf(res->path, sizeof res->path, "%s/tide-backup-XXXXXX", o->tmp_dir) >=
      (int)sizeof res->path) {
    tide_error_set(err, NULL, "temporary directory path too long");
    return -1;
  }
  if ((fd = mkstemp(res->path)) < 0) {
    tide_error_set(err, NULL, "cannot create a temporary file in %s: %s", o->tmp_dir,
                   strerror(errno));
    res->path[0] = '\0';
    return -1;
  }
  close(fd);
  if (split_conninfo(o->conninfo, &safe, &password, err) != 0 || !(env = child_env(password))) {
    if (!err->message[0])
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
  if (*safe) {
    argv[argc++] = dbname_arg;
    argv[argc++] = safe;
  }
  argv[argc] = NULL;
  if (child_start(&c, argv, env, NULL, err) != 0)
    goto cleanup;
  started = 1;
  while (!child_poll(&c, 250)) {
    if (o->progress && now_s() - last > 0.25 && stat(res->path, &st) == 0) {
      last = now_s();
      if (o->progress(o->progress_ud, "dump", (unsigned long long)st.st_size, o->estimate) != 0) {
        tide_error_set(err, NULL, "interrupted");
        goto cleanup;
      }
    }
  }
  if (!child_ok(&c)) {
    child_failure(&c, "pg_dump", err);
    goto cleanup;
  }
  child_finish(&c);
  if (tide_dump_verify(o->pg_restore, res->path, res, o->progress, o->progress_ud, err) != 0)
    goto cleanup;
  if (res->size == 0) {
    tide_error_set(err, NULL, "pg_dump wrote an empty archive");
    goto cleanup;
  }
  rc = 0;
cleanup:
  if (started)
    child_finish(&c);
  if (rc != 0 && res->path[0]) {
    unlink(res->path);
    res->path[0] = '\0';
  }
  if (password)
    memset(password, 0, strlen(password));
  free(password);
  free(safe);
  free_env(env);
  return rc;
}

int tide_dump_restore(const char *pg_restore, const char *conninfo, const char *path, int clean,
                      tide_error *err) {
  char *safe = NULL, *password = NULL, **env = NULL;
  char *argv[12];
  int argc = 0, rc = -1;
  child c;
  if (split_conninfo(conninfo, &safe, &password, err) != 0 || !(env = child_env(password))) {
    if (!err->message[0])
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
  if (*safe) { /* without a URL, libpq's PG* variables name the target */
    argv[argc++] = "--dbname";
    argv[argc++] = safe;
  }
  argv[argc++] = (char *)path;
  argv[argc] = NULL;
  if (child_start(&c, argv, env, NULL, err) != 0)
    goto cleanup;
  while (!child_poll(&c, 250))
    ;
  child_finish(&c);
  if (!child_ok(&c)) {
    child_failure(&c, "pg_restore", err);
    goto cleanup;
  }
  rc = 0;
cleanup:
  if (password)
    memset(password, 0, strlen(password));
  free(password);
  free(safe);
  free_env(env);
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
      luaL_error(L, "unknown option `%s`", luaL_tolstring(L, -1, NULL));
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
 *           min_free=, estimate=, progress=fn(stage, done, total)}
 *   -> {path, size, sha256, md5, pg_dump_version} | raises tide.Error (kind "backup") */
static int l_dump(lua_State *L) {
  static const char *const keys[] = {
      "pg_dump",  "pg_restore", "url",      "tmp_dir", "lock_wait_timeout", "server_version_num",
      "min_free", "estimate",   "progress", NULL};
  tide_dump_opts o;
  tide_dump_result res;
  tide_error err = {0};
  lua_progress p = {L, 0, 0};
  check_keys(L, 1, keys);
  memset(&o, 0, sizeof o);
  lua_getfield(L, 1, "progress"); /* [opts, progress] */
  if (!lua_isnil(L, 2)) {
    luaL_checktype(L, 2, LUA_TFUNCTION);
    p.fn = 2;
  }
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
  push_result(L, &res);
  return 1;
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

void tide_dump_register(lua_State *L) {
  luaL_setfuncs(L, dump_functions, 0);
}
