/* child.c: the children tide starts (pg_dump, pg_restore, their --version), for dump.c.
 *
 * What a child gets: argv without any secret; an environment of libpq's connection variables
 * and what a program needs to run, never the AWS keys or tokens tide holds; the secrets of the
 * connection string in files that exist only in memory (the password as a passfile,
 * sslpassword and friends as a service file, as /dev/fd/3 and /dev/fd/4); no other descriptor
 * of tide's. It dies with tide (PR_SET_PDEATHSIG), and SIGINT/SIGTERM caught by tide stop it
 * before the spool is removed. */
#define _GNU_SOURCE /* memfd_create, close_range, mkostemp */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "child.h"
#include "tide.h"
#include "util.h"

extern char **environ;

void tide_child_interrupted(tide_error *err) {
  tide_error_set(err, NULL, "interrupted by %s", tide_signal_name(tide_interrupted));
}

/* ---- the environment of a child -------------------------------------------------------- */

/* Where a child finds the secrets of its connection string: in-memory files it inherits as
 * these descriptors. */
#define CHILD_PASSFILE_FD 3
#define CHILD_SERVICE_FD 4

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
  return tide_conninfo_is_variable(entry, len);
}

void tide_child_env_free(char **env) {
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
char **tide_child_env(int connection, const char *const extra[]) {
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
  tide_child_env_free(env);
  return NULL;
}

/* ---- the secrets of a connection string -------------------------------------------------- */

void tide_conn_secrets_init(tide_conn_secrets *cs) {
  cs->safe = cs->password = NULL;
  cs->passfile = cs->service = -1;
}

void tide_conn_secrets_free(tide_conn_secrets *cs) {
  if (cs->password)
    memset(cs->password, 0, strlen(cs->password));
  free(cs->password);
  free(cs->safe);
  if (cs->passfile >= 0)
    close(cs->passfile);
  if (cs->service >= 0)
    close(cs->service);
  tide_conn_secrets_init(cs);
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

/* Splits a libpq URL, keyword string or bare database name into what goes on the child's
 * command line (no secret keyword, as libpq names them) and the secrets: the password into a
 * passfile, the others (sslpassword ...) into a service file, both in memory (see
 * secret_file; dir is only for systems without memfd). On failure err says why, never quoting
 * a secret. */
int tide_conn_secrets_split(const char *conninfo, const char *dir, tide_conn_secrets *cs,
                            tide_error *err) {
  PQconninfoOption *opts = NULL, *o;
  char *service = NULL;
  const char *password = NULL, *named_service = NULL;
  size_t len = 1, slen = 16;
  int rc = -1;
  tide_conn_secrets_init(cs);
  if (!conninfo || !*conninfo) {
    cs->safe = strdup("");
    return cs->safe ? 0 : (tide_error_set(err, NULL, "out of memory"), -1);
  }
  if (!(opts = tide_conninfo_parse(conninfo, err)))
    goto cleanup;
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
  tide_conninfo_free(opts);
  if (rc != 0)
    tide_conn_secrets_free(cs);
  return rc;
}

/* The environment of a child connecting with cs: the URL's password, when there is one, in
 * place of any inherited PGPASSWORD or PGPASSFILE. */
char **tide_conn_secrets_env(const tide_conn_secrets *cs) {
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
  env = tide_child_env(1, extra);
  if (pw) {
    memset(pw, 0, strlen(pw));
    free(pw);
  }
  return env;
}

/* ---- child processes ------------------------------------------------------------------- */

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
static void child_exec(const char *path, const tide_spawn_opts *s, int err_w, int status_fd,
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
  /* none of tide's own descriptors (connections, the lock, spools) reaches the tide_child */
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

int tide_child_start(tide_child *c, const tide_spawn_opts *s, tide_error *err) {
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

static void child_drain(tide_child *c) {
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
int tide_child_poll(tide_child *c, int timeout_ms) {
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
void tide_child_finish(tide_child *c) {
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
int tide_child_wait(tide_child *c, tide_progress_fn progress, void *ud, const char *stage,
                    unsigned long long done, unsigned long long total, tide_error *err) {
  while (!tide_child_poll(c, 250)) {
    if (tide_interrupted) {
      tide_child_interrupted(err);
      return -1;
    }
    if (progress && progress(ud, stage, done, total) != 0) {
      tide_error_set(err, NULL, "interrupted");
      return -1;
    }
  }
  if (tide_interrupted) { /* a Ctrl-C reaches the child too: say why it stopped */
    tide_child_interrupted(err);
    return -1;
  }
  return 0;
}

/* The last non-empty line of the child's stderr, without the "pg_dump: error: " noise kept. */
static const char *last_line(tide_child *c) {
  char *end = c->tail + c->tail_len, *start;
  while (end > c->tail && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
    *--end = '\0';
  start = end;
  while (start > c->tail && start[-1] != '\n')
    start--;
  return start;
}

/* "exited with status 1: <last stderr line>" or "was killed by signal 9" */
void tide_child_failure(tide_child *c, const char *what, tide_error *err) {
  const char *line = last_line(c);
  if (WIFSIGNALED(c->status))
    tide_error_set(err, NULL, "%s was killed by signal %d%s%s", what, WTERMSIG(c->status),
                   *line ? ": " : "", line);
  else
    tide_error_set(err, NULL, "%s exited with status %d%s%s", what, WEXITSTATUS(c->status),
                   *line ? ": " : "", line);
}

int tide_child_ok(const tide_child *c) {
  return WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0;
}
