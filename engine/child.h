/* child.h: the children of dump.c (see child.c): their environment, the secrets of the
 * connection string they are handed, and their start, wait and stop. */
#ifndef TIDE_CHILD_H
#define TIDE_CHILD_H

#include <sys/types.h>

#include "tide.h"

/* err says tide was interrupted by the caught signal (tide_interrupted). */
void tide_child_interrupted(tide_error *err);

/* The environment of a child: what a program needs to run and, with `connection`, libpq's
 * variables; then `extra` (NULL-terminated: "NAME=value" replaces an inherited NAME, a bare
 * "NAME" drops it). NULL when out of memory. Free with tide_child_env_free. */
char **tide_child_env(int connection, const char *const extra[]);
void tide_child_env_free(char **env);

/* A connection string split for a child: what goes on its command line, and its secrets. */
typedef struct tide_conn_secrets {
  char *safe;     /* the connection string without its secrets, for --dbname ("" for none) */
  char *password; /* only a password a passfile cannot hold (a line break): PGPASSWORD */
  int passfile;   /* in-memory file "*:*:*:*:password", or -1 */
  int service;    /* in-memory service file "[tide]" with the other secrets, or -1 */
} tide_conn_secrets;

void tide_conn_secrets_init(tide_conn_secrets *cs);
void tide_conn_secrets_free(tide_conn_secrets *cs);
/* Splits a URL, keyword string or bare database name (read by tide_conninfo_parse) into
 * cs->safe (no secret keyword) and in-memory files holding the secrets (dir only for systems
 * without memfd). -1 with err on failure, never quoting a secret. */
int tide_conn_secrets_split(const char *conninfo, const char *dir, tide_conn_secrets *cs,
                            tide_error *err);
/* The environment of a child connecting with cs (tide_child_env_free frees it); NULL on OOM. */
char **tide_conn_secrets_env(const tide_conn_secrets *cs);

/* A running child whose stderr tide keeps the tail of (for the one-line failure message). */
typedef struct tide_child {
  pid_t pid;
  int err_fd;
  char tail[2048];
  size_t tail_len;
  int status;
  int done;
} tide_child;

typedef struct tide_spawn_opts {
  char *const *argv;
  char *const *env;
  const char *stdout_path; /* stdout into this existing file, */
  int stdout_fd;           /* or into this descriptor (-1: /dev/null) */
  int fds[2];              /* become the child's descriptors 3 and 4 (-1: none) */
} tide_spawn_opts;

/* Starts s->argv[0] (looked up on PATH, absolute folders only). -1 with err on failure. */
int tide_child_start(tide_child *c, const tide_spawn_opts *s, tide_error *err);
/* Waits up to timeout_ms, collecting stderr; 1 when the child exited. */
int tide_child_poll(tide_child *c, int timeout_ms);
/* Stops a child still running (SIGTERM, then SIGKILL after 5 s) and closes its stderr. */
void tide_child_finish(tide_child *c);
/* Waits for the exit, calling progress every 250 ms; -1 with err when interrupted. */
int tide_child_wait(tide_child *c, tide_progress_fn progress, void *ud, const char *stage,
                    unsigned long long done, unsigned long long total, tide_error *err);
/* err: "<what> exited with status N: <last stderr line>" or "was killed by signal N". */
void tide_child_failure(tide_child *c, const char *what, tide_error *err);
int tide_child_ok(const tide_child *c);

#endif
