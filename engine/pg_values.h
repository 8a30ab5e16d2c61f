/* pg_values.h: the values of a libpq statement for conn.c (see pg_values.c). Each may raise a
 * Lua error; a result being read sits in a box from tide_pg_push_result_box meanwhile. */
#ifndef TIDE_PG_VALUES_H
#define TIDE_PG_VALUES_H

#include <libpq-fe.h>
#include <lua.h>

/* Pushes an empty box (a userdata whose __gc clears the PGresult it holds), filled by the
 * caller right after libpq returns a result and emptied after PQclear. */
PGresult **tide_pg_push_result_box(lua_State *L);
/* The string at idx (the SQL when param is 0, else parameter $param); raises a tide.Error
 * (kind "usage") when it holds a NUL byte. */
const char *tide_pg_check_text(lua_State *L, int idx, int param);
/* Parameters first..top as text for libpq: nil and core.null are NULL, booleans t/f, floats in
 * round-trip precision. The returned array and every text live on the Lua stack. */
const char **tide_pg_push_params(lua_State *L, int first, int *count);
/* Pushes rows (tables keyed by column name, typed values) and the count of rows returned or
 * affected of a successful res. */
void tide_pg_push_rows(lua_State *L, PGresult *res);
/* Pushes the tide.Error (kind "sql") of a failed statement: res may be NULL (a client-side
 * failure such as a lost connection), then the message comes from pg. The statement is the Lua
 * string at index sql, kept as `query` without a copy (it can be 50 MB). */
void tide_pg_push_error(lua_State *L, PGconn *pg, const PGresult *res, int sql);
/* Creates the box's metatable; called by tide_conn_register. */
void tide_pg_values_register(lua_State *L);

#endif
