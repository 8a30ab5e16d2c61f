/* conn.c: tide.Conn, a libpq connection: exec (many statements, no parameters), query (one
 * statement, $n parameters, typed rows), server notices, a handler called while a long
 * statement runs (progress), and the facts the tracking tables and the lock report need
 * (backend pid, server version, user).
 *
 * Two layers, as libpq itself: tide_pg_* work on a PGconn and report failures through a
 * PGresult or a message; the static l_conn_* bindings turn those into tide.Error tables. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <libpq-fe.h>
#include <lua.h>

#include "tide.h"

#define TIDE_CONN "tide.Conn"
/* A PGresult held while Lua allocates (rows, error fields): a memory error raised there skips
 * the PQclear after it, so the result sits in a userdata whose __gc clears it. */
#define TIDE_RESULT "tide.PGresult"

/* Type OIDs from pg_type.h, which client code should not include. */
#define BOOLOID 16
#define INT8OID 20
#define INT2OID 21
#define INT4OID 23
#define OIDOID 26
#define FLOAT4OID 700
#define FLOAT8OID 701

/* What notices may hold between two deliveries; beyond it they are counted, not kept. */
#define NOTICES_MAX (1u << 20)

typedef struct notices {
  char *text; /* server notices not yet delivered, one per line, each cut to TIDE_ECHO_LIMIT */
  size_t len, cap;
  unsigned long dropped; /* notices past NOTICES_MAX */
} notices;

typedef struct conn {
  PGconn *pg; /* NULL once closed; first, as test_conn_faults.c reads it */
  notices pending;
  unsigned generation; /* of prepared statement names: conn:forget_prepared() adds one */
  double wait_every;   /* seconds between calls of the on_wait handler; 0: no handler */
  int waiting;         /* the on_wait handler is running: the connection is busy */
} conn;

/* Uservalues of a tide.Conn */
#define UV_NOTICE 1   /* the notice handler */
#define UV_PREPARED 2 /* prepared statement name -> SQL */
#define UV_WAIT 3     /* the on_wait handler */

/* ---- plain C layer ---------------------------------------------------------------------- */

/* Room for need more bytes (and the NUL) in n; 0 when out of memory. */
static int notices_reserve(notices *n, size_t need) {
  if (n->len + need + 1 > n->cap) {
    size_t cap = (n->cap + need + 1) * 2;
    char *text = realloc(n->text, cap);
    if (!text)
      return 0;
    n->text = text;
    n->cap = cap;
  }
  return 1;
}

/* Called by libpq inside PQgetResult: only record; Lua hears of it after the call returns. */
static void notice_receiver(void *arg, const PGresult *res) {
  notices *n = arg;
  const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY);
  const char *message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  size_t len, keep, need;
  char cut[64] = "";
  if (!message)
    return;
  if (!severity)
    severity = "NOTICE";
  /* a notice can quote what it is about whole: a 50 MB identifier, say */
  len = strlen(message);
  keep = tide_echo_keep(message, len);
  if (keep < len)
    snprintf(cut, sizeof cut, " ... [cut, %zu bytes]", len - keep);
  need = strlen(severity) + keep + strlen(cut) + 3;
  if (n->len + need + 1 > NOTICES_MAX) {
    n->dropped++;
    return;
  }
  if (!notices_reserve(n, need))
    return; /* a lost notice is better than a crash */
  n->len += (size_t)snprintf(n->text + n->len, n->cap - n->len, "%s: %.*s%s\n", severity, (int)keep,
                             message, cut);
}

/* Starts a blocking connection with libpq's defaults (PG* variables, passfile) under conninfo,
 * which may be a URL, a keyword string or empty; dbname, when given, replaces the database it
 * names (the server's maintenance database, say). NULL only when out of memory. */
static PGconn *open_connection(const char *conninfo, const char *application_name,
                               const char *dbname) {
  const char *keys[6], *values[6];
  int n = 0;
  /* Keywords before dbname are defaults the URL can override; PGCONNECT_TIMEOUT wins too. */
  if (!getenv("PGCONNECT_TIMEOUT")) {
    keys[n] = "connect_timeout";
    values[n++] = "10";
  }
  keys[n] = "fallback_application_name";
  values[n++] = application_name ? application_name : "tide";
  if (conninfo && conninfo[0]) { /* none: libpq uses PGDATABASE or the user name */
    keys[n] = "dbname";
    values[n++] = conninfo;
  }
  if (dbname) { /* a second dbname is a plain name, and the later keyword wins */
    keys[n] = "dbname";
    values[n++] = dbname;
  }
  /* After the URL, so it always holds: tide's text (revision messages, sql.literal, file
   * sources) is UTF-8, and a literal escaped byte by byte is only safe in an encoding where no
   * multibyte character holds a quote or backslash byte (PGCLIENTENCODING=SJIS breaks it). */
  keys[n] = "client_encoding";
  values[n++] = "UTF8";
  keys[n] = NULL;
  values[n] = NULL;
  PGconn *pg = PQconnectdbParams(keys, values, 1);
  /* tide reads the fields of an error; the full text would add a display of the failing line,
   * built with two int arrays as long as the line (420 MB for a 50 MB statement) */
  if (pg)
    PQsetErrorVerbosity(pg, PQERRORS_TERSE);
  return pg;
}

/* err for a connection that failed: libpq's first line (which names host and cause). */
static void connect_failure(PGconn *pg, const char *conninfo, tide_error *err) {
  char *msg = PQerrorMessage(pg);
  size_t len = strcspn(msg, "\n");
  size_t keep = tide_echo_keep(msg, len); /* the server may quote a 100 KB database name */
  /* libpq 15 can report several attempts; the first line names host and cause. */
  if (keep < len)
    tide_error_set(err, "08006", "%.*s ... [cut, %zu bytes]", (int)keep, msg, len - keep);
  else
    tide_error_set(err, "08006", "%.*s", (int)len, msg);
  tide_redact_quoted(conninfo, err->message, sizeof err->message);
}

/* Connects with libpq's defaults under conninfo, which may be a URL, a keyword string or
 * empty. Returns NULL and fills err on failure; libpq's messages never contain the password. */
PGconn *tide_pg_connect(const char *conninfo, const char *application_name, tide_error *err) {
  PGconn *pg = open_connection(conninfo, application_name, NULL);
  if (!pg) {
    tide_error_set(err, "", "out of memory connecting to the database");
    return NULL;
  }
  if (PQstatus(pg) != CONNECTION_OK) {
    connect_failure(pg, conninfo, err);
    PQfinish(pg);
    return NULL;
  }
  return pg;
}

/* Writes d as the shortest text that reads back as exactly d (PostgreSQL's own float8out does
 * the same), or Infinity/-Infinity/NaN in the spellings float8in accepts. Lua's own tostring
 * keeps 14 digits only, which would silently change 2^53 or 1/3 on their way to the server. */
static const char *tide_pg_float_text(double d, char *buf, size_t size) {
  if (isnan(d))
    return "NaN";
  if (isinf(d))
    return d > 0 ? "Infinity" : "-Infinity";
  for (int digits = 15; digits <= 17; digits++) {
    snprintf(buf, size, "%.*g", digits, d);
    if (strtod(buf, NULL) == d)
      break;
  }
  return buf;
}

/* ---- tide.Error from a failed result ------------------------------------------------------ */

/* A field of the error, cut to TIDE_ECHO_LIMIT: a message or detail can quote the input. */
static void set_diag(lua_State *L, const PGresult *res, int code, const char *name) {
  const char *v = PQresultErrorField(res, code);
  if (v && v[0]) {
    tide_push_echo(L, v, strlen(v));
    lua_setfield(L, -2, name);
  }
}

/* Pushes a tide.Error for a failed statement: res may be NULL (client-side failure such as a
 * lost connection), then the message comes from the connection. The statement is the Lua
 * string at index sql, kept as `query` without a copy (it can be 50 MB). */
static void push_sql_error(lua_State *L, PGconn *pg, const PGresult *res, int sql) {
  const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  const char *position;
  if (primary) {
    tide_error_push(L, "sql", "");
    set_diag(L, res, PG_DIAG_MESSAGE_PRIMARY, "message");
  } else {
    char buf[1024];
    const char *msg = res ? PQresultErrorMessage(res) : "";
    size_t len;
    if (res && PQresultStatus(res) == PGRES_EMPTY_QUERY)
      msg = "the query is empty"; /* not an error to libpq, so it has no message */
    if (!msg[0])
      msg = PQerrorMessage(pg);
    snprintf(buf, sizeof buf, "%s", msg[0] ? msg : "unknown libpq failure");
    for (len = strlen(buf); len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '); len--)
      buf[len - 1] = '\0';
    for (char *p = buf; *p; p++)
      if (*p == '\n' || *p == '\t')
        *p = ' ';
    tide_error_push(L, "sql", buf);
  }
  if (res) {
    set_diag(L, res, PG_DIAG_SQLSTATE, "sqlstate");
    set_diag(L, res, PG_DIAG_SEVERITY_NONLOCALIZED, "severity");
    set_diag(L, res, PG_DIAG_MESSAGE_DETAIL, "detail");
    set_diag(L, res, PG_DIAG_MESSAGE_HINT, "hint");
    set_diag(L, res, PG_DIAG_CONTEXT, "context");
    set_diag(L, res, PG_DIAG_SCHEMA_NAME, "schema");
    set_diag(L, res, PG_DIAG_TABLE_NAME, "table");
    set_diag(L, res, PG_DIAG_COLUMN_NAME, "column");
    set_diag(L, res, PG_DIAG_CONSTRAINT_NAME, "constraint");
    position = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
    if (position) {
      lua_pushinteger(L, atoi(position));
      lua_setfield(L, -2, "position");
    }
  }
  if (PQstatus(pg) == CONNECTION_BAD) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "connection_lost");
    if (!lua_getfield(L, -1, "sqlstate")) {
      lua_pushliteral(L, "08006");
      lua_setfield(L, -3, "sqlstate");
    }
    lua_pop(L, 1);
  }
  lua_pushvalue(L, sql);
  lua_setfield(L, -2, "query");
}

/* libpq stops in the COPY state: COPY FROM STDIN would wait for data forever and COPY TO STDOUT
 * hands out the same COPY result to every PQgetResult, an endless loop. exec and query do not
 * speak COPY: refuse the data in (the server then fails the statement), drop the data out (as
 * exec drops rows), and let the next PQgetResult carry the statement's outcome. */
static void leave_copy(PGconn *pg, ExecStatusType st) {
  char *data;
  if (st == PGRES_COPY_IN || st == PGRES_COPY_BOTH)
    PQputCopyEnd(pg, "COPY FROM STDIN is not supported by exec and query");
  if (st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
    while (PQgetCopyData(pg, &data, 0) > 0)
      PQfreemem(data);
}

static int is_copy(ExecStatusType st) {
  return st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH;
}

/* ---- bindings -------------------------------------------------------------------------- */

/* __gc of a TIDE_RESULT box: clears a result that a Lua error left behind */
static int l_result_clear(lua_State *L) {
  PGresult **box = luaL_checkudata(L, 1, TIDE_RESULT);
  PQclear(*box);
  *box = NULL;
  return 0;
}

/* Pushes an empty TIDE_RESULT box, filled by the caller right after libpq returns a result. */
static PGresult **push_result_box(lua_State *L) {
  PGresult **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, TIDE_RESULT);
  return box;
}

/* The string at idx (the SQL when param is 0, else parameter $param), refused when it holds a
 * NUL byte: libpq sends C strings, so everything after the NUL would be dropped without a word
 * (and PostgreSQL text cannot hold NUL anyway). */
static const char *check_text(lua_State *L, int idx, int param) {
  size_t len;
  const char *s = param ? lua_tolstring(L, idx, &len) : luaL_checklstring(L, idx, &len);
  if (strlen(s) != len) {
    char msg[64];
    if (param)
      snprintf(msg, sizeof msg, "parameter $%d contains a NUL byte", param);
    else
      snprintf(msg, sizeof msg, "the SQL contains a NUL byte");
    tide_error_push(L, "usage", msg);
    lua_error(L);
  }
  return s;
}

/* The connection is busy while its on_wait handler runs: a statement is in flight. */
static void check_not_waiting(lua_State *L, const conn *c) {
  if (c->waiting) {
    tide_error_push(L, "usage",
                    "connection is busy running a statement (called from its on_wait handler)");
    lua_error(L);
  }
}

static conn *check_conn(lua_State *L) {
  conn *c = luaL_checkudata(L, 1, TIDE_CONN);
  if (!c->pg) {
    tide_error_push(L, "usage", "connection is closed");
    lua_error(L);
  }
  check_not_waiting(L, c);
  return c;
}

/* Hands recorded notices to the handler set by conn:on_notice (default: stderr). Runs after
 * libpq returned, so a handler that raises leaks nothing. */
static void deliver_notices(lua_State *L, conn *c, int failing) {
  if (c->pending.dropped) {
    char line[96];
    int len = snprintf(line, sizeof line, "NOTICE: ... and %lu more notices, not shown\n",
                       c->pending.dropped);
    c->pending.dropped = 0;
    if (notices_reserve(&c->pending, (size_t)len)) {
      memcpy(c->pending.text + c->pending.len, line, (size_t)len + 1);
      c->pending.len += (size_t)len;
    }
  }
  if (!c->pending.len)
    return;
  if (lua_getiuservalue(L, 1, UV_NOTICE) == LUA_TFUNCTION) { /* [.., handler] */
    lua_pushlstring(L, c->pending.text, c->pending.len - 1);
    c->pending.len = 0;
    /* With a tide.Error about to be raised, a handler that fails must not replace it. */
    if (!failing)
      lua_call(L, 1, 0);
    else if (lua_pcall(L, 1, 0, 0) != LUA_OK)
      lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
    fwrite(c->pending.text, 1, c->pending.len, stderr);
    c->pending.len = 0;
  }
}

static double monotonic_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Calls the on_wait handler with the statement's elapsed seconds, and hands over the notices
 * that arrived meanwhile. Protected: a statement is in flight, so nothing may raise out of
 * here, and the statement's outcome must not depend on a progress display. A handler that
 * fails is dropped, with a warning on stderr. */
static void call_wait_handler(lua_State *L, conn *c, double elapsed) {
  c->waiting = 1;
  deliver_notices(L, c, 1);
  if (lua_getiuservalue(L, 1, UV_WAIT) != LUA_TFUNCTION) { /* [.., handler] */
    lua_pop(L, 1);
  } else {
    lua_pushnumber(L, elapsed);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) { /* [.., error] */
      fprintf(stderr, "tide: warning: the progress display failed and is off: %s\n",
              lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)");
      lua_pop(L, 1);
      c->wait_every = 0;
    }
  }
  c->waiting = 0;
}

/* Between PQsend* and the PQgetResult that follows: when an on_wait handler is set, waits on
 * the socket until a result is ready, calling the handler every wait_every seconds. It runs
 * between libpq calls, never inside one. A connection that fails is left to PQgetResult to
 * report. Without a handler PQgetResult simply blocks, as PQexec would. */
static void wait_for_result(lua_State *L, conn *c, double started) {
  double next = started + c->wait_every;
  int fd = PQsocket(c->pg);
  while (c->wait_every > 0 && fd >= 0 && PQisBusy(c->pg)) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    double left = next - monotonic_seconds();
    int n = poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 0);
    if (n < 0 && errno != EINTR)
      return;
    if (n > 0 && !PQconsumeInput(c->pg))
      return;
    if (n == 0) {
      double now = monotonic_seconds();
      call_wait_handler(L, c, now - started);
      next = now + c->wait_every;
    }
  }
}

/* core.connect(conninfo [, application_name [, {dbname=}]]) -> conn
 *   | raises tide.Error{kind="connect", dbname=the database it tried}
 * dbname replaces the database conninfo names (for the server's maintenance database). */
static int l_connect(lua_State *L) {
  const char *conninfo = luaL_optstring(L, 1, "");
  const char *appname = luaL_optstring(L, 2, "tide");
  const char *dbname = NULL;
  tide_error err = {{0}, {0}};
  char tried[256] = "";
  conn *c;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "dbname");
    dbname = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_pop(L, 1); /* the options table keeps the string alive */
  }
  /* The userdata exists, closed, before the resource: an allocation failure cannot leak it. */
  c = lua_newuserdatauv(L, sizeof *c, 3); /* UV_NOTICE, UV_PREPARED, UV_WAIT */
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, TIDE_CONN);
  c->pg = open_connection(conninfo, appname, dbname);
  if (!c->pg) {
    tide_error_set(&err, "", "out of memory connecting to the database");
    return tide_error_raise(L, "connect", &err);
  }
  if (PQstatus(c->pg) != CONNECTION_OK) {
    connect_failure(c->pg, conninfo, &err);
    snprintf(tried, sizeof tried, "%s", PQdb(c->pg) ? PQdb(c->pg) : "");
    PQfinish(c->pg);
    c->pg = NULL;
    tide_error_push(L, "connect", err.message);
    lua_pushstring(L, err.sqlstate);
    lua_setfield(L, -2, "sqlstate");
    if (tried[0]) {
      lua_pushstring(L, tried);
      lua_setfield(L, -2, "dbname");
    }
    return lua_error(L);
  }
  PQsetNoticeReceiver(c->pg, notice_receiver, &c->pending);
  return 1;
}

/* conn:exec(sql) -> nil | raises tide.Error. Runs one or more statements (simple protocol). */
static int l_conn_exec(lua_State *L) {
  conn *c = check_conn(L);
  const char *sql = check_text(L, 2, 0);
  PGresult **failed = push_result_box(L), *res;
  double started = monotonic_seconds();
  int ok = PQsendQuery(c->pg, sql);
  /* Drain every result so the connection is ready for the next call, keep the first error. */
  while (ok && (wait_for_result(L, c, started), res = PQgetResult(c->pg))) {
    ExecStatusType st = PQresultStatus(res);
    if (is_copy(st))
      leave_copy(c->pg, st);
    if ((st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE) && !*failed)
      *failed = res;
    else
      PQclear(res);
  }
  if (!ok || *failed) {
    push_sql_error(L, c->pg, *failed, 2);
    PQclear(*failed);
    *failed = NULL;
    deliver_notices(L, c, 1);
    return lua_error(L);
  }
  deliver_notices(L, c, 0);
  return 0;
}

static void push_value(lua_State *L, const PGresult *res, int row, int col) {
  const char *v = PQgetvalue(res, row, col);
  size_t len = (size_t)PQgetlength(res, row, col);
  if (PQgetisnull(res, row, col)) {
    tide_push_null(L);
    return;
  }
  switch (PQftype(res, col)) {
  case BOOLOID:
    lua_pushboolean(L, v[0] == 't');
    return;
  case INT2OID:
  case INT4OID:
  case INT8OID:
  case OIDOID:
    if (lua_stringtonumber(L, v))
      return;
    break;
  case FLOAT4OID:
  case FLOAT8OID:
    if (strcmp(v, "NaN") == 0)
      lua_pushnumber(L, (lua_Number)NAN);
    else if (strcmp(v, "Infinity") == 0)
      lua_pushnumber(L, (lua_Number)HUGE_VAL);
    else if (strcmp(v, "-Infinity") == 0)
      lua_pushnumber(L, -(lua_Number)HUGE_VAL);
    else if (!lua_stringtonumber(L, v))
      break;
    else if (lua_isinteger(L, -1)) {
      /* "3" reads as an integer and "-0" as the integer 0: make a float, with the sign */
      lua_Number d = (lua_Number)lua_tointeger(L, -1);
      lua_pop(L, 1);
      lua_pushnumber(L, copysign(d, v[0] == '-' ? -1.0 : 1.0));
    }
    return;
  default:
    break;
  }
  lua_pushlstring(L, v, len);
}

/* Parameters first..top as text for libpq: nil and core.null are NULL, booleans t/f, floats in
 * round-trip precision. The returned array and every text live on the Lua stack. */
static const char **push_params(lua_State *L, int first, int *count) {
  int nparams = lua_gettop(L) - first + 1;
  const char **values;
  if (nparams < 0)
    nparams = 0;
  if (nparams > 65535)
    tide_error_raisef(L, "usage", "too many parameters (%d, at most 65535)", nparams);
  values = lua_newuserdatauv(L, sizeof(char *) * (size_t)(nparams ? nparams : 1), 0);
  for (int i = 0; i < nparams; i++) {
    int idx = i + first;
    if (lua_isnoneornil(L, idx) || tide_is_null(L, idx)) {
      values[i] = NULL;
    } else if (lua_isboolean(L, idx)) {
      values[i] = lua_toboolean(L, idx) ? "t" : "f";
    } else if (lua_type(L, idx) == LUA_TNUMBER && !lua_isinteger(L, idx)) {
      char buf[32];
      lua_pushstring(L, tide_pg_float_text(lua_tonumber(L, idx), buf, sizeof buf));
      lua_replace(L, idx); /* the stack keeps the text alive until the statement has run */
      values[i] = lua_tostring(L, idx);
    } else if (lua_type(L, idx) == LUA_TNUMBER || lua_type(L, idx) == LUA_TSTRING) {
      lua_tostring(L, idx); /* converts integers in place: the stack keeps it alive */
      values[i] = check_text(L, idx, i + 1);
    } else {
      tide_error_raisef(L, "usage", "parameter $%d: cannot send a %s to the server", i + 1,
                        luaL_typename(L, idx));
    }
  }
  *count = nparams;
  return values;
}

/* The name `name` has on the server: itself until conn:forget_prepared(), then "name_gN", so a
 * statement the server may still hold under the old name can never collide with the new one. */
static const char *server_name(lua_State *L, const conn *c, const char *name, char *buf,
                               size_t size) {
  int n = c->generation ? snprintf(buf, size, "%s_g%u", name, c->generation)
                        : snprintf(buf, size, "%s", name);
  luaL_argcheck(L, n >= 0 && (size_t)n < size, 2, "prepared statement name too long");
  return buf;
}

/* Prepares `sql` once per connection under `server` (uservalue 2 remembers name -> sql). */
static void ensure_prepared(lua_State *L, conn *c, const char *name, const char *server,
                            const char *sql) {
  PGresult **box, *res;
  if (lua_getiuservalue(L, 1, UV_PREPARED) != LUA_TTABLE) { /* [.., prepared] */
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, UV_PREPARED);
  }
  if (lua_getfield(L, -1, name) == LUA_TSTRING) { /* [.., prepared, sql] */
    int same = strcmp(lua_tostring(L, -1), sql) == 0;
    lua_pop(L, 2);
    if (!same)
      tide_error_raisef(L, "usage", "prepared statement %s already exists with other SQL", name);
    return;
  }
  lua_pop(L, 1);
  box = push_result_box(L); /* [.., prepared, box] */
  res = *box = PQprepare(c->pg, server, sql, 0, NULL);
  if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
    push_sql_error(L, c->pg, res, 3); /* sql is prepare_args' argument 3 */
    PQclear(res);
    *box = NULL;
    deliver_notices(L, c, 1);
    lua_error(L);
  }
  PQclear(res);
  *box = NULL;
  lua_pop(L, 1);
  lua_pushstring(L, sql);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* Runs one statement (prepared under `name`, or unnamed when name is NULL) with the parameters
 * from index `first` on, and pushes rows and count. */
static int run_statement(lua_State *L, conn *c, const char *name, const char *sql, int first) {
  int nparams;
  const char **values = push_params(L, first, &nparams);
  PGresult **box, *res;
  ExecStatusType st;
  int nrows, ncols;
  PGresult *extra;
  double started = monotonic_seconds();
  int sent;
  box = push_result_box(L);
  if (name)
    sent = PQsendQueryPrepared(c->pg, name, nparams, values, NULL, NULL, 0);
  else
    sent = PQsendQueryParams(c->pg, sql, nparams, NULL, values, NULL, NULL, 0);
  if (sent)
    wait_for_result(L, c, started);
  res = *box = sent ? PQgetResult(c->pg) : NULL;
  st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (is_copy(st)) { /* the statement's own result follows the COPY data */
    leave_copy(c->pg, st);
    PQclear(res);
    res = *box = PQgetResult(c->pg);
    st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  }
  /* One statement, one result: drain to the end before anything can raise, so the connection
   * is ready for the next call whatever happens below. */
  while (sent && (extra = PQgetResult(c->pg)))
    PQclear(extra);
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    push_sql_error(L, c->pg, res, first - 1); /* the SQL comes right before the parameters */
    PQclear(res);
    *box = NULL;
    deliver_notices(L, c, 1);
    return lua_error(L);
  }
  nrows = PQntuples(res);
  ncols = PQnfields(res);
  lua_createtable(L, nrows, 0); /* [.., rows] */
  for (int r = 0; r < nrows; r++) {
    lua_createtable(L, 0, ncols); /* [.., rows, row] */
    for (int f = 0; f < ncols; f++) {
      push_value(L, res, r, f);
      lua_setfield(L, -2, PQfname(res, f));
    }
    lua_rawseti(L, -2, r + 1);
  }
  if (st == PGRES_TUPLES_OK)
    lua_pushinteger(L, nrows);
  else
    lua_pushinteger(L, atoll(PQcmdTuples(res)));
  PQclear(res);
  *box = NULL;
  deliver_notices(L, c, 0);
  return 2;
}

/* conn:query(sql, ...) -> rows, count | raises tide.Error. One statement; nil and core.null are
 * SQL NULL; rows are tables keyed by column name; count is the affected or returned rows. */
static int l_conn_query(lua_State *L) {
  conn *c = check_conn(L);
  const char *sql = check_text(L, 2, 0);
  return run_statement(L, c, NULL, sql, 3);
}

/* The (name, sql) arguments of prepared and prepare: sql prepared once per connection; returns
 * the statement's server-side name (in buf) and sets *sql. */
static const char *prepare_args(lua_State *L, conn *c, char *buf, size_t size, const char **sql) {
  const char *name = check_text(L, 2, 0);
  const char *server = server_name(L, c, name, buf, size);
  *sql = check_text(L, 3, 0);
  ensure_prepared(L, c, name, server, *sql);
  return server;
}

/* conn:prepared(name, sql, ...) -> rows, count | raises tide.Error. As query, but the server
 * parses and plans sql once per connection: for statements a run repeats (tide's bookkeeping).
 * Prepared statements outlive a rolled-back transaction, so a retry finds them still there. */
static int l_conn_prepared(lua_State *L) {
  conn *c = check_conn(L);
  char buf[128];
  const char *sql, *server = prepare_args(L, c, buf, sizeof buf, &sql);
  return run_statement(L, c, server, sql, 4);
}

/* conn:prepare(name, sql) -> server name: prepares sql under name once per connection without
 * running it, for an SQL-level `EXECUTE <server name>(...)` sent together with other statements
 * in one round trip. */
static int l_conn_prepare(lua_State *L) {
  conn *c = check_conn(L);
  char buf[128];
  const char *sql;
  lua_pushstring(L, prepare_args(L, c, buf, sizeof buf, &sql));
  return 1;
}

/* conn:forget_prepared(): after DEALLOCATE or DISCARD (which tide.db watches for) the server may
 * hold none of the statements prepared so far: prepare each again, under a new name. */
static int l_conn_forget_prepared(lua_State *L) {
  conn *c = check_conn(L);
  lua_pushnil(L);
  lua_setiuservalue(L, 1, UV_PREPARED);
  c->generation++;
  return 0;
}

/* conn:close(): idempotent; also __gc and __close */
static int l_conn_close(lua_State *L) {
  conn *c = luaL_checkudata(L, 1, TIDE_CONN);
  check_not_waiting(L, c);
  if (c->pg) {
    PQfinish(c->pg);
    c->pg = NULL;
  }
  free(c->pending.text);
  c->pending.text = NULL;
  c->pending.len = c->pending.cap = 0;
  return 0;
}

/* conn:closed() -> boolean */
static int l_conn_closed(lua_State *L) {
  conn *c = luaL_checkudata(L, 1, TIDE_CONN);
  lua_pushboolean(L, c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD);
  return 1;
}

/* conn:on_notice(fn | nil): fn(text) receives server notices, one per line */
static int l_conn_on_notice(lua_State *L) {
  check_conn(L);
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  lua_setiuservalue(L, 1, UV_NOTICE);
  return 0;
}

/* conn:on_wait(fn, seconds) | conn:on_wait(nil): while a statement of exec, query or prepared
 * runs, fn(elapsed_seconds) is called every `seconds` (a progress display). fn runs between
 * libpq calls with the statement in flight: the connection refuses to be used or closed from
 * it, and an error in it does not fail the statement (the handler is dropped instead). */
static int l_conn_on_wait(lua_State *L) {
  conn *c = check_conn(L);
  double every = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TFUNCTION);
    every = luaL_checknumber(L, 3);
    luaL_argcheck(L, every >= 0.01 && every <= 86400, 3, "seconds between 0.01 and 86400");
  }
  lua_settop(L, 2);
  lua_setiuservalue(L, 1, UV_WAIT);
  c->wait_every = every;
  return 0;
}

/* What libpq knows of the server's transaction after the last command: "idle" (none open),
 * "active", "intrans", "inerror" (open and failed) or "unknown" (the connection is bad). */
static const char *transaction_status(PGconn *pg) {
  static const char *const tx[] = {"idle", "active", "intrans", "inerror", "unknown"};
  PGTransactionStatusType ts = PQtransactionStatus(pg);
  return tx[ts <= PQTRANS_UNKNOWN ? ts : PQTRANS_UNKNOWN];
}

/* conn:transaction_status() -> "idle" | "active" | "intrans" | "inerror" | "unknown"; no round
 * trip: the server reports it with every command's end. */
static int l_conn_transaction_status(lua_State *L) {
  conn *c = check_conn(L);
  lua_pushstring(L, transaction_status(c->pg));
  return 1;
}

/* conn:info() -> {pid, server_version, user, dbname, host, port, transaction} */
static int l_conn_info(lua_State *L) {
  conn *c = check_conn(L);
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, PQbackendPID(c->pg));
  lua_setfield(L, -2, "pid");
  lua_pushinteger(L, PQserverVersion(c->pg));
  lua_setfield(L, -2, "server_version");
  lua_pushstring(L, PQuser(c->pg));
  lua_setfield(L, -2, "user");
  lua_pushstring(L, PQdb(c->pg));
  lua_setfield(L, -2, "dbname");
  lua_pushstring(L, PQhost(c->pg));
  lua_setfield(L, -2, "host");
  lua_pushstring(L, PQport(c->pg));
  lua_setfield(L, -2, "port");
  lua_pushstring(L, transaction_status(c->pg));
  lua_setfield(L, -2, "transaction");
  return 1;
}

static int l_conn_tostring(lua_State *L) {
  conn *c = luaL_checkudata(L, 1, TIDE_CONN);
  if (c->pg)
    lua_pushfstring(L, "tide.Conn (%s, pid %d)", PQdb(c->pg), PQbackendPID(c->pg));
  else
    lua_pushliteral(L, "tide.Conn (closed)");
  return 1;
}

static const luaL_Reg conn_functions[] = {
    {"connect", l_connect},
    {NULL, NULL},
};

static const luaL_Reg conn_methods[] = {
    {"exec", l_conn_exec},
    {"query", l_conn_query},
    {"prepared", l_conn_prepared},
    {"prepare", l_conn_prepare},
    {"close", l_conn_close},
    {"closed", l_conn_closed},
    {"on_notice", l_conn_on_notice},
    {"on_wait", l_conn_on_wait},
    {"info", l_conn_info},
    {"transaction_status", l_conn_transaction_status},
    {"forget_prepared", l_conn_forget_prepared},
    {NULL, NULL},
};

static const luaL_Reg conn_metamethods[] = {
    {"__gc", l_conn_close},
    {"__close", l_conn_close},
    {"__tostring", l_conn_tostring},
    {NULL, NULL},
};

void tide_conn_register(lua_State *L) {
  if (luaL_newmetatable(L, TIDE_RESULT)) {
    lua_pushcfunction(L, l_result_clear);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, TIDE_CONN)) { /* [core, mt] */
    luaL_setfuncs(L, conn_metamethods, 0);
    luaL_newlib(L, conn_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, conn_functions, 0);
}
