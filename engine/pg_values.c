/* pg_values.c: what crosses between Lua and a libpq statement, for conn.c: parameters out as
 * text, rows in as typed Lua values, and a failed result (or a failure of the connection) as
 * one tide.Error with the server's fields. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <libpq-fe.h>
#include <lua.h>

#include "pg_values.h"
#include "tide.h"

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

/* ---- a failed statement --------------------------------------------------------------- */

/* A field of the error, cut to TIDE_ECHO_LIMIT: a message or detail can quote the input. */
static void set_diag(lua_State *L, const PGresult *res, int code, const char *name) {
  const char *v = PQresultErrorField(res, code);
  if (v && v[0]) {
    tide_push_echo(L, v, strlen(v));
    lua_setfield(L, -2, name);
  }
}

void tide_pg_push_error(lua_State *L, PGconn *pg, const PGresult *res, int sql) {
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

/* ---- values out ------------------------------------------------------------------------ */

/* __gc of a TIDE_RESULT box: clears a result that a Lua error left behind */
static int l_result_clear(lua_State *L) {
  PGresult **box = luaL_checkudata(L, 1, TIDE_RESULT);
  PQclear(*box);
  *box = NULL;
  return 0;
}

PGresult **tide_pg_push_result_box(lua_State *L) {
  PGresult **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, TIDE_RESULT);
  return box;
}

/* libpq sends C strings: everything after a NUL would be dropped without a word (and
 * PostgreSQL text cannot hold NUL anyway). */
const char *tide_pg_check_text(lua_State *L, int idx, int param) {
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

/* Writes d as the shortest text that reads back as exactly d (PostgreSQL's own float8out does
 * the same), or Infinity/-Infinity/NaN in the spellings float8in accepts. Lua's own tostring
 * keeps 14 digits only, which would silently change 2^53 or 1/3 on their way to the server. */
static const char *float_text(double d, char *buf, size_t size) {
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

const char **tide_pg_push_params(lua_State *L, int first, int *count) {
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
      lua_pushstring(L, float_text(lua_tonumber(L, idx), buf, sizeof buf));
      lua_replace(L, idx); /* the stack keeps the text alive until the statement has run */
      values[i] = lua_tostring(L, idx);
    } else if (lua_type(L, idx) == LUA_TNUMBER || lua_type(L, idx) == LUA_TSTRING) {
      lua_tostring(L, idx); /* converts integers in place: the stack keeps it alive */
      values[i] = tide_pg_check_text(L, idx, i + 1);
    } else {
      tide_error_raisef(L, "usage", "parameter $%d: cannot send a %s to the server", i + 1,
                        luaL_typename(L, idx));
    }
  }
  *count = nparams;
  return values;
}

/* ---- rows in --------------------------------------------------------------------------- */

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

void tide_pg_push_rows(lua_State *L, PGresult *res) {
  int nrows = PQntuples(res), ncols = PQnfields(res);
  lua_createtable(L, nrows, 0); /* [.., rows] */
  for (int r = 0; r < nrows; r++) {
    lua_createtable(L, 0, ncols); /* [.., rows, row] */
    for (int f = 0; f < ncols; f++) {
      push_value(L, res, r, f);
      lua_setfield(L, -2, PQfname(res, f));
    }
    lua_rawseti(L, -2, r + 1);
  }
  if (PQresultStatus(res) == PGRES_TUPLES_OK)
    lua_pushinteger(L, nrows);
  else
    lua_pushinteger(L, atoll(PQcmdTuples(res)));
}

void tide_pg_values_register(lua_State *L) {
  if (luaL_newmetatable(L, TIDE_RESULT)) {
    lua_pushcfunction(L, l_result_clear);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}
