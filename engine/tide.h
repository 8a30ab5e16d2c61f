/* tide.h: what the engine's C files share: the error struct of the plain C layer, the
 * tide.Error type, and one register function per Lua-visible service of tide.core. */
#ifndef TIDE_H
#define TIDE_H

#include <stddef.h>

#include <lua.h>

/* Failures of the plain C layer (no Lua): a stage-free description that the bindings turn
 * into a tide.Error. Fields are empty strings when unknown. */
typedef struct tide_error {
  char sqlstate[6];
  char message[1024];
} tide_error;

void tide_error_set(tide_error *err, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* tide.Error: errors are tables with this metatable (see core.c). */
#define TIDE_ERROR "tide.Error"

/* Pushes a new tide.Error table {kind = kind, message = message} and leaves it on the stack. */
void tide_error_push(lua_State *L, const char *kind, const char *message);
/* Raises a tide.Error built from err (kind names the stage: "connect", "sql", "io" ...). */
int tide_error_raise(lua_State *L, const char *kind, const tide_error *err);

/* The NULL sentinel shared by query parameters and results (core.null). */
void tide_push_null(lua_State *L);
int tide_is_null(lua_State *L, int idx);

/* conn.c: connects under conninfo (URL, keywords or "" for libpq's PG* defaults) with
 * fallback_application_name; NULL and err filled on failure (never naming the password). */
struct pg_conn;
struct pg_conn *tide_pg_connect(const char *conninfo, const char *application_name,
                                tide_error *err);

/* Each sets its functions into the tide.core table at the top of the stack. */
void tide_conn_register(lua_State *L);
void tide_sys_register(lua_State *L);

int luaopen_tide_core(lua_State *L);

#endif
