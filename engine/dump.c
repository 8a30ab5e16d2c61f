/* dump.c: pg_dump and pg_restore as child processes, for tide.backup. The dump goes into a
 * spool file in a configurable directory; the archive is verified by reading it entirely
 * (`pg_restore -f /dev/null`: `--list` accepts truncated archives) while tide reads it too,
 * computing SHA-256, MD5 and size. Part of tide.core: core.pg_tool_version, core.dump,
 * core.verify_archive, core.restore_archive, core.disk_free, core.file_digest, core.spool,
 * core.sweep_spools.
 *
 * What a child gets: argv without any secret; an environment of libpq's connection variables
 * and what a program needs to run, never the AWS keys or tokens tide holds; the secrets of the
 * connection string in files that exist only in memory (the password as a passfile,
 * sslpassword and friends as a service file, as /dev/fd/3 and /dev/fd/4); no other descriptor
 * of tide's. It dies with tide (PR_SET_PDEATHSIG), and SIGINT/SIGTERM caught by tide stop it
 * before the spool is removed. A spool is locked (flock) while in use, so the next backup can
 * tell one a killed tide left behind from one in use, and remove it. */
#define _GNU_SOURCE /* memfd_create, close_range, mkostemp */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <libpq-fe.h>
#include <lua.h>

#include "tide.h"
#include "util.h"

#define TIDE_SPOOL "tide.Spool"

extern char **environ;

static void interrupted(tide_error *err) {
  tide_error_set(err, NULL, "interrupted by %s", tide_signal_name(tide_interrupted));
}

/* ---- the environment of a child -------------------------------------------------------- */

/* Where a child finds the secrets of its connection string: in-memory files it inherits as
 * these descriptors. */
#define CHILD_PASSFILE_FD 3
#define CHILD_SERVICE_FD 4

/* Whether name (len bytes) is an environment variable libpq reads for a connection option:
 * every one its option table names (PGHOST ... PGPASSWORD, PGPASSFILE ...), read from libpq. */
static int libpq_variable(const char *name, size_t len) {
  static char names[1024]; /* NUL-separated, ending with an empty name */
  static int ready;
  if (!ready) {
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse("", &perr);
    size_t used = 0;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
      size_t n = o->envvar ? strlen(o->envvar) + 1 : 0;
      if (n && used + n + 1 <= sizeof names) {
        memcpy(names + used, o->envvar, n);
        used += n;
      }
    }
    names[used] = '\0';
    PQconninfoFree(opts);
    PQfreemem(perr);
    ready = 1;
  }
  for (const char *p = names; *p; p += strlen(p) + 1)
    if (strlen(p) == len && strncmp(p, name, len) == 0)
      return 1;
  return 0;
}

/* What a child may inherit from tide's environment. With `connection`, also libpq's variables
 * (PGPASSWORD included), the service file's and Kerberos' credential cache. Anything else
 * (AWS_*, bearer tokens, the application's own secrets) stays with tide. */
static int inherited(const char *entry, int connection) {
  static const char *const plain[] = {"PATH",     "HOME", "USER",   "LOGNAME",         "LANG",
                                      "LANGUAGE", "TZ",   "TMPDIR", "LD_LIBRARY_PATH", NULL};
  static const char *const conn[] = {"PGSERVICEFILE", "PGSYSCONFDIR", "KRB5CCNAME", "KRB5_CONFIG",
                                     NULL};
  size_t len = strcspn(entry, "=");
  if (!entry[len])
    return 0;
  if (strncmp(entry, "LC_", 3) == 0)
    return 1;
  for (int i = 0; plain[i]; i++)
    if (strlen(plain[i]) == len && strncmp(entry, plain[i], len) == 0)
      return 1;
  if (!connection)
    return 0;
  for (int i = 0; conn[i]; i++)
    if (strlen(conn[i]) == len && strncmp(entry, conn[i], len) == 0)
      return 1;
  return libpq_variable(entry, len);
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

/* The environment of a child: the inherited variables (see inherited), then `extra` (NULL-
 * terminated: "NAME=value" replaces an inherited NAME, a bare "NAME" drops it), and
 * PGAPPNAME=tide-backup for a connecting child when none is set. NULL when out of memory. */
static char **child_env(int connection, const char *const extra[]) {
  size_t n = 0, o = 0, nextra = 0;
  char **env;
  while (environ[n])
    n++;
  while (extra && extra[nextra])
    nextra++;
  if (!(env = calloc(n + nextra + 2, sizeof *env)))
    return NULL;
  for (size_t i = 0; i < n; i++) {
    size_t len = strcspn(environ[i], "=");
    int replaced = 0;
    for (size_t k = 0; k < nextra; k++)
      replaced |= strncmp(environ[i], extra[k], len) == 0 && strchr("=", extra[k][len]);
    if (replaced || !inherited(environ[i], connection))
      continue;
    if (!(env[o++] = strdup(environ[i])))
      goto oom;
  }
  for (size_t k = 0; k < nextra; k++)
    if (strchr(extra[k], '=') && !(env[o++] = strdup(extra[k])))
      goto oom;
  if (connection && !getenv("PGAPPNAME") && !(env[o++] = strdup("PGAPPNAME=tide-backup")))
    goto oom;
  return env;
oom:
  free_env(env);
  return NULL;
}

/* ---- the secrets of a connection string -------------------------------------------------- */

typedef struct conn_secrets {
  char *safe;     /* the connection string without its secrets, for --dbname ("" for none) */
  char *password; /* only a password a passfile cannot hold (a line break): PGPASSWORD */
  int passfile;   /* in-memory file "*:*:*:*:password", or -1 */
  int service;    /* in-memory service file "[tide]" with the other secrets, or -1 */
} conn_secrets;

static void secrets_init(conn_secrets *cs) {
  cs->safe = cs->password = NULL;
  cs->passfile = cs->service = -1;
}

static void secrets_free(conn_secrets *cs) {
  if (cs->password)
    memset(cs->password, 0, strlen(cs->password));
  free(cs->password);
  free(cs->safe);
  if (cs->passfile >= 0)
    close(cs->passfile);
  if (cs->service >= 0)
    close(cs->service);
  secrets_init(cs);
}

/* A 0600 file holding text that exists only in memory (memfd; where there is none, a file in
 * dir unlinked at once): a child reads it as /dev/fd/N, nothing of it is left on disk, and it
 * is gone when the last descriptor closes, even if tide is killed. -1 with err on failure. */
static int secret_file(const char *dir, const char *text, tide_error *err) {
  int fd = memfd_create("tide-secret", MFD_CLOEXEC);
  size_t len = strlen(text), done = 0;
  if (fd < 0) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tide-secret-XXXXXX", dir && *dir ? dir : "/tmp");
    if ((fd = mkostemp(path, O_CLOEXEC)) >= 0)
      unlink(path);
  }
  if (fd < 0) {
    tide_error_set(err, NULL, "cannot create a file for the connection's secrets: %s",
                   strerror(errno));
    return -1;
  }
  /* libpq ignores a passfile that others could read */
  if (fchmod(fd, 0600) != 0)
    goto fail;
  while (done < len) {
    ssize_t w = write(fd, text + done, len - done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      goto fail;
    done += (size_t)w;
  }
  return fd;
fail:
  tide_error_set(err, NULL, "cannot write the file for the connection's secrets: %s",
                 strerror(errno));
  close(fd);
  return -1;
}

/* Appends keyword='value' (libpq's quoting) to buf, a space first unless it is empty. */
static void append_keyword(char *buf, const char *keyword, const char *value) {
  char *p = buf + strlen(buf);
  if (p != buf)
    *p++ = ' ';
  p += sprintf(p, "%s='", keyword);
  for (const char *v = value; *v; v++) {
    if (*v == '\'' || *v == '\\')
      *p++ = '\\';
    *p++ = *v;
  }
  *p++ = '\'';
  *p = '\0';
}

/* libpq reads a string as a connection string (not a plain database name) by this. */
static int is_conninfo(const char *s) {
  return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0 ||
         strchr(s, '=') != NULL;
}

/* Splits a libpq URL, keyword string or bare database name into what goes on the child's
 * command line (no secret keyword, as libpq names them) and the secrets: the password into a
 * passfile, the others (sslpassword ...) into a service file, both in memory (see
 * secret_file; dir is only for systems without memfd). On failure err says why, never quoting
 * a secret. */
static int split_conninfo(const char *conninfo, const char *dir, conn_secrets *cs,
                          tide_error *err) {
  PQconninfoOption *opts = NULL, *o;
  char *perr = NULL, *quoted = NULL, *service = NULL;
  const char *password = NULL, *named_service = NULL;
  size_t len = 1, slen = 16;
  int rc = -1;
  secrets_init(cs);
  if (!conninfo || !*conninfo) {
    cs->safe = strdup("");
    return cs->safe ? 0 : (tide_error_set(err, NULL, "out of memory"), -1);
  }
  if (!is_conninfo(conninfo)) { /* `--url app`: a database name, as for tide's own connection */
    if (!(quoted = malloc(2 * strlen(conninfo) + 16)))
      goto oom;
    quoted[0] = '\0';
    append_keyword(quoted, "dbname", conninfo);
    conninfo = quoted;
  }
  if (!(opts = PQconninfoParse(conninfo, &perr))) {
    /* libpq's message may quote the string: do not repeat it, it can carry a password */
    tide_error_set(err, NULL, "the connection string is not valid");
    goto cleanup;
  }
  for (o = opts; o->keyword; o++) {
    if (!o->val)
      continue;
    if (strcmp(o->keyword, "password") == 0)
      password = o->val;
    else if (strcmp(o->keyword, "service") == 0)
      named_service = o->val;
    len += strlen(o->keyword) + 2 * strlen(o->val) + 5;
    slen += strlen(o->keyword) + strlen(o->val) + 2;
  }
  if (!(cs->safe = malloc(len)) || !(service = malloc(slen)))
    goto oom;
  cs->safe[0] = '\0';
  strcpy(service, "[tide]\n");
  for (o = opts; o->keyword; o++) {
    if (!o->val || strcmp(o->keyword, "password") == 0)
      continue;
    if (strcmp(o->keyword, "passfile") == 0 && password)
      continue; /* the string's password wins over any passfile, as for tide's own connection */
    if (!tide_conninfo_is_secret(o->keyword)) {
      append_keyword(cs->safe, o->keyword, o->val);
      continue;
    }
    /* libpq's service file reader keeps a value to the end of its line, trims trailing blanks
     * and (before PostgreSQL 16) reads lines of at most 255 bytes */
    if (strpbrk(o->val, "\r\n") || (o->val[0] && strchr(" \t", o->val[strlen(o->val) - 1])) ||
        strlen(o->keyword) + strlen(o->val) > 240) {
      tide_error_set(err, NULL,
                     "the connection string's %s cannot be handed to pg_dump/pg_restore "
                     "safely (a line break, trailing blanks, or over 240 bytes)",
                     o->keyword);
      goto cleanup;
    }
    if (named_service || getenv("PGSERVICE")) {
      tide_error_set(err, NULL,
                     "the connection string's %s reaches pg_dump/pg_restore through a service "
                     "file, which cannot be combined with service=%s: put %s in that "
                     "service's entry instead",
                     o->keyword, named_service ? named_service : "$PGSERVICE", o->keyword);
      goto cleanup;
    }
    sprintf(service + strlen(service), "%s=%s\n", o->keyword, o->val);
  }
  if (strchr(service, '=') && (cs->service = secret_file(dir, service, err)) < 0)
    goto cleanup;
  if (password && strpbrk(password, "\r\n")) {
    if (!(cs->password = strdup(password))) /* a passfile line cannot hold it */
      goto oom;
  } else if (password) {
    /* "*:*:*:*:password" with ':' and '\' escaped, as libpq's passfile reader expects */
    char *line = malloc(2 * strlen(password) + 16), *p;
    if (!line)
      goto oom;
    p = line + sprintf(line, "*:*:*:*:");
    for (const char *v = password; *v; v++) {
      if (*v == ':' || *v == '\\')
        *p++ = '\\';
      *p++ = *v;
    }
    strcpy(p, "\n");
    cs->passfile = secret_file(dir, line, err);
    memset(line, 0, strlen(line));
    free(line);
    if (cs->passfile < 0)
      goto cleanup;
  }
  rc = 0;
  goto cleanup;
oom:
  tide_error_set(err, NULL, "out of memory");
cleanup:
  if (service) {
    memset(service, 0, strlen(service));
    free(service);
  }
  free(quoted);
  if (opts) {
    for (o = opts; o->keyword; o++) /* libpq's copies of the secrets too */
      if (o->val && tide_conninfo_is_secret(o->keyword))
        memset(o->val, 0, strlen(o->val));
    PQconninfoFree(opts);
  }
  PQfreemem(perr);
  if (rc != 0)
    secrets_free(cs);
  return rc;
}

/* The environment of a child connecting with cs: the URL's password, when there is one, in
 * place of any inherited PGPASSWORD or PGPASSFILE. */
static char **connecting_env(const conn_secrets *cs) {
  const char *extra[5];
  char *pw = NULL, **env;
  int n = 0;
  if (cs->passfile >= 0)
    extra[n++] = "PGPASSFILE=/dev/fd/3"; /* CHILD_PASSFILE_FD */
  if (cs->service >= 0) {
    extra[n++] = "PGSERVICEFILE=/dev/fd/4"; /* CHILD_SERVICE_FD */
    extra[n++] = "PGSERVICE=tide";
  }
  if (cs->password) {
    if (!(pw = malloc(strlen(cs->password) + 12)))
      return NULL;
    sprintf(pw, "PGPASSWORD=%s", cs->password);
    extra[n++] = pw;
  } else if (cs->passfile >= 0) {
    extra[n++] = "PGPASSWORD"; /* dropped: an inherited one would win over the passfile */
  }
  extra[n] = NULL;
  env = child_env(1, extra);
  if (pw) {
    memset(pw, 0, strlen(pw));
    free(pw);
  }
  return env;
}

/* ---- child processes ------------------------------------------------------------------- */

/* A running child whose stderr tide keeps the tail of (for the one-line failure message). */
typedef struct child {
  pid_t pid;
  int err_fd;
  char tail[2048];
  size_t tail_len;
  int status;
  int done;
} child;

typedef struct spawn_opts {
  char *const *argv;
  char *const *env;
  const char *stdout_path; /* stdout into this existing file, */
  int stdout_fd;           /* or into this descriptor (-1: /dev/null) */
  int fds[2];              /* become the child's descriptors 3 and 4 (-1: none) */
} spawn_opts;

/* The path of a tool. A name without '/' is looked up on PATH, in absolute folders only: an
 * empty or relative entry ("", ".") would run whatever pg_dump lies in the folder tide was
 * started from. */
static int find_tool(const char *name, char *out, size_t outsz, tide_error *err) {
  const char *path = getenv("PATH");
  if (strchr(name, '/')) {
    snprintf(out, outsz, "%s", name);
    return 0;
  }
  for (const char *p = path ? path : ""; *p;) {
    size_t len = strcspn(p, ":");
    if (len && p[0] == '/' && (size_t)snprintf(out, outsz, "%.*s/%s", (int)len, p, name) < outsz &&
        access(out, X_OK) == 0)
      return 0;
    p += len + (p[len] == ':');
  }
  tide_error_set(err, NULL, "%s not found on PATH (absolute folders only); set backup.pg_bindir",
                 name);
  return -1;
}

/* In the child, between fork and exec: async-signal-safe calls only. Reports a failure to
 * exec through status_fd (its errno) and exits 127. */
static void child_exec(const char *path, const spawn_opts *s, int err_w, int status_fd,
                       pid_t parent) {
  struct sigaction dfl;
  sigset_t none;
  int e, null_in, out, moved[2] = {-1, -1};
  /* dies with tide, even with SIGKILL; tide may already be gone (then the parent changed) */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || getppid() != parent)
    _exit(127);
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGINT, &dfl, NULL);
  sigaction(SIGTERM, &dfl, NULL);
  sigaction(SIGPIPE, &dfl, NULL);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  status_fd = fcntl(status_fd, F_DUPFD_CLOEXEC, 100);
  for (int i = 0; i < 2; i++)
    if (s->fds[i] >= 0 && (moved[i] = fcntl(s->fds[i], F_DUPFD_CLOEXEC, 100)) < 0)
      goto fail;
  null_in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  out = s->stdout_path      ? open(s->stdout_path, O_WRONLY | O_CLOEXEC)
        : s->stdout_fd >= 0 ? s->stdout_fd
                            : open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (status_fd < 0 || null_in < 0 || out < 0 || dup2(null_in, 0) < 0 || dup2(out, 1) < 0 ||
      dup2(err_w, 2) < 0)
    goto fail;
  for (int i = 0; i < 2; i++) {
    if (moved[i] < 0)
      close(3 + i);
    else if (dup2(moved[i], 3 + i) < 0)
      goto fail;
  }
  /* none of tide's own descriptors (connections, the lock, spools) reaches the child */
  if (close_range(5, (unsigned)status_fd - 1, 0) != 0 ||
      close_range((unsigned)status_fd + 1, ~0U, 0) != 0)
    for (int fd = 5; fd < 1024; fd++)
      if (fd != status_fd)
        close(fd);
  execve(path, s->argv, s->env);
fail:
  e = errno;
  if (write(status_fd, &e, sizeof e) < 0)
    _exit(127);
  _exit(127);
}

static int child_start(child *c, const spawn_opts *s, tide_error *err) {
  int pipefd[2] = {-1, -1}, status[2] = {-1, -1}, e = 0;
  char path[4096];
  pid_t parent = getpid();
  ssize_t n;
  memset(c, 0, sizeof *c);
  c->pid = -1;
  c->err_fd = -1;
  if (find_tool(s->argv[0], path, sizeof path, err) != 0)
    return -1;
  if (pipe2(pipefd, O_CLOEXEC) != 0 || pipe2(status, O_CLOEXEC) != 0) {
    tide_error_set(err, NULL, "pipe: %s", strerror(errno));
    goto fail;
  }
  if ((c->pid = fork()) < 0) {
    tide_error_set(err, NULL, "cannot start %s: fork: %s", s->argv[0], strerror(errno));
    goto fail;
  }
  if (c->pid == 0)
    child_exec(path, s, pipefd[1], status[1], parent);
  close(pipefd[1]);
  close(status[1]);
  pipefd[1] = status[1] = -1;
  /* the status pipe closes on a successful exec; a failed one writes its errno first */
  while ((n = read(status[0], &e, sizeof e)) < 0 && errno == EINTR)
    ;
  close(status[0]);
  status[0] = -1;
  if (n == (ssize_t)sizeof e) {
    while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR)
      ;
    c->pid = -1;
    tide_error_set(err, NULL, "cannot start %s: %s", path, strerror(e));
    goto fail;
  }
  fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
  c->err_fd = pipefd[0];
  return 0;
fail:
  for (int i = 0; i < 2; i++) {
    if (pipefd[i] >= 0)
      close(pipefd[i]);
    if (status[i] >= 0)
      close(status[i]);
  }
  c->pid = -1;
  return -1;
}

static void child_drain(child *c) {
  char buf[1024];
  ssize_t n;
  while (c->err_fd >= 0 && (n = read(c->err_fd, buf, sizeof buf)) != 0) {
    if (n < 0) {
      if (errno == EINTR && !tide_interrupted)
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

/* Waits up to timeout_ms for the child to exit, collecting stderr. Returns 1 when it exited.
 * A caught signal cuts the wait short (the caller looks at tide_interrupted). */
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

/* Stops a child that is still running: SIGTERM, and SIGKILL if it is not gone in 5 s. */
static void child_finish(child *c) {
  if (c->pid > 0 && !c->done) {
    double until = tide_now() + 5;
    kill(c->pid, SIGTERM);
    while (waitpid(c->pid, &c->status, WNOHANG) == 0) {
      if (tide_now() > until) {
        kill(c->pid, SIGKILL);
        while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR)
          ;
        break;
      }
      poll(NULL, 0, 10);
    }
    c->done = 1;
  }
  if (c->err_fd >= 0)
    close(c->err_fd);
  c->err_fd = -1;
}

/* Waits for the child to exit, every 250 ms calling progress (when given) with stage, done and
 * total. Returns 0 when it exited, -1 with err when interrupted (by a signal or the progress
 * function): the caller stops it with child_finish. */
static int child_wait(child *c, tide_progress_fn progress, void *ud, const char *stage,
                      unsigned long long done, unsigned long long total, tide_error *err) {
  while (!child_poll(c, 250)) {
    if (tide_interrupted) {
      interrupted(err);
      return -1;
    }
    if (progress && progress(ud, stage, done, total) != 0) {
      tide_error_set(err, NULL, "interrupted");
      return -1;
    }
  }
  if (tide_interrupted) { /* a Ctrl-C reaches the child too: say why it stopped */
    interrupted(err);
    return -1;
  }
  return 0;
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

/* ---- versions and space ---------------------------------------------------------------- */

int tide_dump_tool_version(const char *tool, char *out, size_t outsz, int *version_num,
                           tide_error *err) {
  char *argv[] = {(char *)tool, "--version", NULL}, **env = child_env(0, NULL);
  int pipefd[2] = {-1, -1}, rc = -1, major = 0, minor = 0, started = 0;
  spawn_opts so;
  child c;
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
  so = (spawn_opts){argv, env, NULL, pipefd[1], {-1, -1}};
  if (child_start(&c, &so, err) != 0)
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
  if (child_wait(&c, NULL, NULL, NULL, 0, 0, err) != 0)
    goto cleanup;
  if (!child_ok(&c)) {
    child_failure(&c, tool, err);
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
    child_finish(&c);
  for (int i = 0; i < 2; i++)
    if (pipefd[i] >= 0)
      close(pipefd[i]);
  free_env(env);
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
      interrupted(err);
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
      child_poll(c, 0);
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

int tide_dump_verify(const char *pg_restore, const char *path, tide_dump_result *res,
                     tide_progress_fn progress, void *ud, tide_error *err) {
  char *argv[] = {(char *)pg_restore, "--file=/dev/null", (char *)path, NULL};
  char **env = child_env(0, NULL);
  spawn_opts so = {argv, env, NULL, -1, {-1, -1}};
  child c;
  int rc = -1, started = 0;
  if (!env) {
    tide_error_set(err, NULL, "out of memory");
    return -1;
  }
  if (child_start(&c, &so, err) != 0)
    goto cleanup;
  started = 1;
  /* pg_restore reads the archive while tide hashes it: one pass over the page cache each */
  if (digest_file(path, &c, res, progress, ud, err) != 0)
    goto cleanup;
  if (child_wait(&c, progress, ud, "verify", res->size, res->size, err) != 0)
    goto cleanup;
  if (!child_ok(&c)) {
    child_failure(&c, "pg_restore (reading the whole archive)", err);
    goto cleanup;
  }
  rc = 0;
cleanup:
  if (started)
    child_finish(&c);
  free_env(env);
  return rc;
}

int tide_dump_run(const tide_dump_opts *o, tide_dump_result *res, tide_error *err) {
  conn_secrets cs;
  char **env = NULL;
  char lock_arg[128], file_arg[4200], dbname_arg[16] = "--dbname";
  char *argv[12];
  int argc = 0, rc = -1, started = 0;
  unsigned long long free_bytes = 0;
  child c;
  spawn_opts so;
  struct stat st;
  double last = 0;

  memset(res, 0, sizeof *res);
  res->spool_fd = -1;
  secrets_init(&cs);
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
  if (split_conninfo(o->conninfo, o->tmp_dir, &cs, err) != 0)
    goto cleanup;
  if (!(env = connecting_env(&cs))) {
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
  so = (spawn_opts){argv, env, NULL, -1, {cs.passfile, cs.service}};
  if (child_start(&c, &so, err) != 0)
    goto cleanup;
  started = 1;
  while (!child_poll(&c, 250)) {
    if (tide_interrupted) {
      interrupted(err);
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
    interrupted(err);
    goto cleanup;
  }
  if (!child_ok(&c)) {
    child_failure(&c, "pg_dump", err);
    goto cleanup;
  }
  child_finish(&c);
  secrets_free(&cs); /* the child has exited: its secrets can go now */
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
  if (rc != 0 && res->spool_fd >= 0) {
    close(res->spool_fd);
    res->spool_fd = -1;
  }
  secrets_free(&cs);
  free_env(env);
  return rc;
}

int tide_dump_restore(const char *pg_restore, const char *conninfo, const char *path, int clean,
                      tide_error *err) {
  conn_secrets cs;
  char **env = NULL, dir[4096], *slash;
  char *argv[12];
  int argc = 0, rc = -1, started = 0;
  spawn_opts so;
  child c;
  /* the archive's folder (the spool directory) for the rare system without memfd */
  snprintf(dir, sizeof dir, "%s", path);
  slash = strrchr(dir, '/');
  if (slash)
    *slash = '\0';
  if (split_conninfo(conninfo, slash ? dir : ".", &cs, err) != 0)
    return -1;
  if (!(env = connecting_env(&cs))) {
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
  so = (spawn_opts){argv, env, NULL, -1, {cs.passfile, cs.service}};
  if (child_start(&c, &so, err) != 0)
    goto cleanup;
  started = 1;
  if (child_wait(&c, NULL, NULL, NULL, 0, 0, err) != 0)
    goto cleanup;
  if (!child_ok(&c)) {
    child_failure(&c, "pg_restore", err);
    goto cleanup;
  }
  rc = 0;
cleanup:
  /* stopping pg_restore closes its connection: the server rolls its transaction back */
  if (started)
    child_finish(&c);
  secrets_free(&cs);
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

/* ---- tide.Spool: a spool file's lock, and its removal ---------------------------------- */

typedef struct spool {
  int fd; /* holds the lock; -1 once closed */
  char path[4096];
} spool;

/* Pushes a closed tide.Spool: made before the file exists, so a memory error leaks nothing. */
static spool *push_spool(lua_State *L) {
  spool *sp = lua_newuserdatauv(L, sizeof *sp, 0);
  sp->fd = -1;
  sp->path[0] = '\0';
  luaL_setmetatable(L, TIDE_SPOOL);
  return sp;
}

/* spool:close(): removes the file (if the path still names it) and lets go of its lock.
 * Idempotent; also __close and __gc, so a spool Lua forgets is removed all the same. */
static int l_spool_close(lua_State *L) {
  spool *sp = luaL_checkudata(L, 1, TIDE_SPOOL);
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
  spool *sp = luaL_checkudata(L, 1, TIDE_SPOOL);
  lua_pushstring(L, sp->path);
  return 1;
}

/* core.spool(dir, prefix) -> spool, path | raises tide.Error: a new locked 0600 file
 * dir/<prefix>-XXXXXX (prefix: "tide-backup" or "tide-restore", which core.sweep_spools knows) */
static int l_spool(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1), *prefix = luaL_checkstring(L, 2);
  spool *sp = push_spool(L);
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
 *   -> {path, size, sha256, md5, pg_dump_version, spool} | raises tide.Error (kind "backup")
 * spool (a tide.Spool) holds the archive's lock: spool:close() removes the file. */
static int l_dump(lua_State *L) {
  static const char *const keys[] = {
      "pg_dump",  "pg_restore", "url",      "tmp_dir", "lock_wait_timeout", "server_version_num",
      "min_free", "estimate",   "progress", NULL};
  tide_dump_opts o;
  tide_dump_result res;
  tide_error err = {0};
  lua_progress p = {L, 0, 0};
  spool *sp;
  check_keys(L, 1, keys);
  lua_settop(L, 1);
  memset(&o, 0, sizeof o);
  sp = push_spool(L);             /* [opts, spool] */
  lua_getfield(L, 1, "progress"); /* [opts, spool, progress] */
  if (!lua_isnil(L, 3)) {
    luaL_checktype(L, 3, LUA_TFUNCTION);
    p.fn = 3;
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
  sp->fd = res.spool_fd;
  snprintf(sp->path, sizeof sp->path, "%s", res.path);
  push_result(L, &res);
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "spool");
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

static const luaL_Reg dump_functions[] = {
    {"spool", l_spool},
    {"sweep_spools", l_sweep_spools},
    {"pg_tool_version", l_pg_tool_version},
    {"dump", l_dump},
    {"verify_archive", l_verify_archive},
    {"file_digest", l_file_digest},
    {"restore_archive", l_restore_archive},
    {"disk_free", l_disk_free},
    {NULL, NULL},
};

void tide_dump_register(lua_State *L) {
  if (luaL_newmetatable(L, TIDE_SPOOL)) { /* [core, mt] */
    luaL_setfuncs(L, spool_metamethods, 0);
    luaL_newlib(L, spool_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, dump_functions, 0);
}
