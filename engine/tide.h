/* tide.h: what the engine's C files share: the error struct of the plain C layer, the
 * tide.Error type, and one register function per Lua-visible service of tide.core. */
#ifndef TIDE_H
#define TIDE_H

#include <stddef.h>

#include <lua.h>

/* The most tide prints or stores of one piece of user input (a revision's message, a statement,
 * a name, a server's message or notice): longer text is cut at a UTF-8 character boundary and
 * ends in " ... [cut, N bytes]", N the bytes cut. Lua sees it as core.echo_limit (errors.cut). */
#define TIDE_ECHO_LIMIT 1024
/* core.c: how many of the len bytes of s to keep under TIDE_ECHO_LIMIT (len when all fit). */
size_t tide_echo_keep(const char *s, size_t len);
/* core.c: pushes s (len bytes) cut to TIDE_ECHO_LIMIT with the marker. */
void tide_push_echo(lua_State *L, const char *s, size_t len);

/* Failures of the plain C layer (no Lua): a stage-free description that the bindings turn
 * into a tide.Error. Fields are empty strings when unknown. */
typedef struct tide_error {
  char sqlstate[6];
  char message[TIDE_ECHO_LIMIT + 64]; /* a quoted input cut to the limit, and the marker */
} tide_error;

void tide_error_set(tide_error *err, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* tide.Error: errors are tables with this metatable (see core.c). */
#define TIDE_ERROR "tide.Error"

/* Pushes a new tide.Error table {kind = kind, message = message} and leaves it on the stack. */
void tide_error_push(lua_State *L, const char *kind, const char *message);
/* Raises a tide.Error built from err (kind names the stage: "connect", "sql", "io" ...). */
int tide_error_raise(lua_State *L, const char *kind, const tide_error *err);
/* Raises a tide.Error {kind = kind, message = the formatted text}: how every binding reports a
 * failure (return tide_error_raisef(L, "io", "%s: %s", path, strerror(errno))). Only a call
 * that breaks a binding's contract (a wrong argument type, from tide's own Lua) keeps Lua's
 * "bad argument" error from luaL_check* and luaL_argcheck. */
int tide_error_raisef(lua_State *L, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The NULL sentinel shared by query parameters and results (core.null). */
void tide_push_null(lua_State *L);
int tide_is_null(lua_State *L, int idx);

/* conn.c: connects under conninfo (URL, keywords or "" for libpq's PG* defaults) with
 * fallback_application_name; NULL and err filled on failure (never naming the password). */
struct pg_conn;
struct pg_conn *tide_pg_connect(const char *conninfo, const char *application_name,
                                tide_error *err);

/* conninfo.c: connection strings, the one place that reads them and finds their secrets.
 * tide_conninfo_parse reads a URL, a keyword string or a bare database name (as libpq reads
 * `dbname`; "" gives libpq's defaults) into libpq's option array, NULL with err on failure
 * (never quoting the string); free it with tide_conninfo_free, which wipes the secrets first.
 * A secret keyword is one libpq marks as such (password, sslpassword ...).
 * tide_conninfo_secrets sets marks[i] for every byte of s (strlen(s) marks) that holds a
 * secret: URL userinfo passwords, URL parameters whose percent-decoded name is secret,
 * keyword-string values, checked against what libpq's own PQconninfoParse reads (when that
 * finds a secret the marks miss, the whole string is marked). Everything that hides a secret
 * is built on it: tide_mask_password overwrites those bytes with 'x' in place, keeping the
 * length (argv, so `ps` stops showing them); tide_redact returns a malloc'd copy with each run
 * replaced by "****" (NULL when out of memory), as core.redact does for Lua; and
 * tide_redact_quoted replaces, in a message (size bytes) about a connection string libpq
 * cannot parse, each secret of that string the message quotes by "****". */
struct _PQconninfoOption;
int tide_conninfo_is_conninfo(const char *s);
struct _PQconninfoOption *tide_conninfo_parse(const char *conninfo, tide_error *err);
void tide_conninfo_free(struct _PQconninfoOption *opts);
int tide_conninfo_is_secret(const char *keyword);
/* Whether name (len bytes) is an environment variable libpq reads (PGHOST ... PGPASSWORD). */
int tide_conninfo_is_variable(const char *name, size_t len);
void tide_conninfo_secrets(const char *s, unsigned char *marks);
void tide_mask_password(char *arg);
char *tide_redact(const char *s);
void tide_redact_quoted(const char *conninfo, char *message, size_t size);

/* sys.c: no core files (they would hold secrets) and a process that cannot be ptrace-attached
 * by other processes of the same user; called first thing in main. */
void tide_no_core_dumps(void);
/* sys.c: while caught (tide_signals_catch, counted; tide_signals_release), SIGINT and SIGTERM
 * set tide_interrupted to the signal's number instead of killing tide: the backup's loops watch
 * it, stop their children and return an error, so that spools and partial uploads are removed
 * before tide exits (with 128 + the signal's number). */
#include <signal.h>
extern volatile sig_atomic_t tide_interrupted;
void tide_signals_catch(void);
void tide_signals_release(void);
const char *tide_signal_name(int sig);

/* core.c: the normalisation of checksum algorithm 1 (see core.checksum); out holds n bytes. */
size_t tide_checksum_normalize_v1(const char *s, size_t n, char *out);

/* Each sets its functions into the tide.core table at the top of the stack. */
void tide_conn_register(lua_State *L);
void tide_conninfo_register(lua_State *L);
void tide_sys_register(lua_State *L);

/* ---- backup (sigv4.c, dump.c, dest*.c) ------------------------------------------------ */
#include <time.h>

/* sigv4.c: AWS Signature Version 4, header signing. The path is the decoded path (it is
 * percent-encoded here, once, as S3 expects); the query is sent as-is and canonicalised. Every
 * header given is signed (include host and x-amz-date; for S3 also x-amz-content-sha256). */
typedef struct tide_sigv4_header {
  const char *name, *value;
} tide_sigv4_header;

typedef struct tide_sigv4_request {
  const char *method, *path, *query; /* query without '?', may be NULL */
  const tide_sigv4_header *headers;
  size_t nheaders;
  const char *payload_hash; /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
  const char *amz_date;     /* YYYYMMDDTHHMMSSZ, equal to the x-amz-date header */
  int normalize_path;       /* 1 for the generic services, 0 for S3 */
} tide_sigv4_request;

typedef struct tide_sigv4_credentials {
  const char *access_key, *secret_key, *region, *service;
} tide_sigv4_credentials;

typedef struct tide_sigv4_result {
  char *canonical_request, *string_to_sign, *signed_headers, *authorization;
  char signature[65];
} tide_sigv4_result;

int tide_sigv4_sign(const tide_sigv4_request *req, const tide_sigv4_credentials *cred,
                    tide_sigv4_result *res, tide_error *err);
void tide_sigv4_result_free(tide_sigv4_result *res);
/* Percent-encodes all but the unreserved set (and '/' when keep_slash); malloc'd, NULL on OOM. */
char *tide_sigv4_uri_encode(const char *s, int keep_slash);
int tide_sigv4_sha256_hex(const void *data, size_t len, char out[65]);
void tide_sigv4_amz_date(time_t t, char out[17]);
/* Progress of a long step ("dump", "verify", "upload", "download"); non-zero stops the work. */
typedef int (*tide_progress_fn)(void *ud, const char *stage, unsigned long long done,
                                unsigned long long total);

/* dump.c: pg_dump into a temporary file, verified by a full read, hashed. */
typedef struct tide_dump_opts {
  const char *pg_dump, *pg_restore; /* paths of the tools */
  const char *conninfo;             /* URL or keywords; "" for libpq's PG* variables */
  const char *tmp_dir;
  const char *lock_wait_timeout; /* pg_dump --lock-wait-timeout, e.g. "30s" */
  int server_version_num;        /* refuse an older pg_dump; 0 skips the check */
  unsigned long long min_free;   /* bytes that must be free in tmp_dir before starting */
  unsigned long long estimate;   /* expected archive size, for progress only */
  tide_progress_fn progress;
  void *progress_ud;
  /* when set, the full read (pg_restore) is left running in it once the archive is hashed:
   * the caller finishes it (tide_verify_finish) or stops it (tide_verify_stop) */
  struct tide_verify *deferred;
} tide_dump_opts;

typedef struct tide_dump_result {
  char path[4096]; /* the verified archive (the caller removes it) */
  int spool_fd;    /* holds the archive's lock (see tide_spool_create); the caller closes it */
  unsigned long long size;
  char sha256[65], md5[33];
  char pg_dump_version[256];
  int pg_dump_version_num;
} tide_dump_result;

int tide_dump_run(const tide_dump_opts *o, tide_dump_result *res, tide_error *err);
int tide_dump_verify(const char *pg_restore, const char *path, tide_dump_result *res,
                     tide_progress_fn progress, void *ud, tide_error *err);
int tide_dump_digest(const char *path, tide_dump_result *res, tide_error *err);
/* A verification still running: pg_restore reading an archive back (tide.Verification). */
typedef struct tide_verify tide_verify;
/* Waits for the read to end: 0 when pg_restore read the whole archive, else -1 with err (the
 * same answer on every later call). */
int tide_verify_finish(tide_verify *v, tide_error *err);
/* The tide.Verification at idx, or NULL when the value is something else. */
tide_verify *tide_verify_test(lua_State *L, int idx);
int tide_dump_restore(const char *pg_restore, const char *conninfo, const char *path, int clean,
                      tide_error *err);
int tide_dump_tool_version(const char *tool, char *out, size_t outsz, int *version_num,
                           tide_error *err);
int tide_dump_disk_free(const char *dir, unsigned long long *bytes, tide_error *err);
/* A spool: dir/<prefix>-XXXXXX, 0600, locked (flock) while its descriptor (returned) is open. */
int tide_spool_create(const char *dir, const char *prefix, char *path, size_t pathsz,
                      tide_error *err);
/* Whether the file open at fd is a stale spool: ours, unchanged for min_age seconds, its lock
 * free (its process is gone); remove_stale also removes dir/name when it is. */
int tide_spool_is_stale(int fd, time_t min_age);
int tide_spool_remove_stale(const char *dir, const char *name, time_t min_age);
void tide_dump_register(lua_State *L);
/* dest_lua.c: tide.Destination (core.destination); the plain C layer is in dest.h. */
void tide_dest_register(lua_State *L);
/* ---- end backup ---------------------------------------------------------------------------- */

int luaopen_tide_core(lua_State *L);

#endif
