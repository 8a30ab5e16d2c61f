/* conn.c: tide.Conn, a libpq connection: exec (many statements, no parameters), query (one
 * statement, $n parameters, typed rows), server notices, a handler called while a long
 * statement runs (progress), and the facts the tracking tables and the lock report need
 * (backend pid, server version, user). What goes in and out of a statement (parameters,
 * rows, a failed result as a tide.Error) is pg_values.c's.
 *
 * Two layers, as libpq itself: tide_pg_* work on a PGconn and report failures through a
 * PGresult or a message; the static l_conn_* bindings turn those into tide.Error tables. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <libpq-fe.h>
#include <lua.h>

#include "pg_values.h"
#include "tide.h"
#include "util.h"

#define TIDE_CONN "tide.Conn"

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
    double left = next - tide_now();
    int n = poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 0);
    if (n < 0 && errno != EINTR)
      return;
    if (n > 0 && !PQconsumeInput(c->pg))
      return;
    if (n == 0) {
      double now = tide_now();
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
  const char *sql = tide_pg_check_text(L, 2, 0);
  PGresult **failed = tide_pg_push_result_box(L), *res;
  double started = tide_now();
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
    tide_pg_push_error(L, c->pg, *failed, 2);
    PQclear(*failed);
    *failed = NULL;
    deliver_notices(L, c, 1);
    return lua_error(L);
  }
  deliver_notices(L, c, 0);
  return 0;
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
  box = tide_pg_push_result_box(L); /* [.., prepared, box] */
  res = *box = PQprepare(c->pg, server, sql, 0, NULL);
  if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
    tide_pg_push_error(L, c->pg, res, 3); /* sql is prepare_args' argument 3 */
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
  const char **values = tide_pg_push_params(L, first, &nparams);
  PGresult **box, *res;
  ExecStatusType st;
  PGresult *extra;
  double started = tide_now();
  int sent;
  box = tide_pg_push_result_box(L);
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
    tide_pg_push_error(L, c->pg, res, first - 1); /* the SQL comes right before the parameters */
    PQclear(res);
    *box = NULL;
    deliver_notices(L, c, 1);
    return lua_error(L);
  }
  tide_pg_push_rows(L, res); /* [.., rows, count] */
  PQclear(res);
  *box = NULL;
  deliver_notices(L, c, 0);
  return 2;
}

/* conn:query(sql, ...) -> rows, count | raises tide.Error. One statement; nil and core.null are
 * SQL NULL; rows are tables keyed by column name; count is the affected or returned rows. */
static int l_conn_query(lua_State *L) {
  conn *c = check_conn(L);
  const char *sql = tide_pg_check_text(L, 2, 0);
  return run_statement(L, c, NULL, sql, 3);
}

/* The (name, sql) arguments of prepared and prepare: sql prepared once per connection; returns
 * the statement's server-side name (in buf) and sets *sql. */
static const char *prepare_args(lua_State *L, conn *c, char *buf, size_t size, const char **sql) {
  const char *name = tide_pg_check_text(L, 2, 0);
  const char *server = server_name(L, c, name, buf, size);
  *sql = tide_pg_check_text(L, 3, 0);
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
  tide_pg_values_register(L);
  if (luaL_newmetatable(L, TIDE_CONN)) { /* [core, mt] */
    luaL_setfuncs(L, conn_metamethods, 0);
    luaL_newlib(L, conn_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, conn_functions, 0);
}
