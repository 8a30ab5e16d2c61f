/* test_conn_faults.c: conn.c under failure: libpq parse errors that quote the password, and a
 * Lua allocation failure at every point of conn:query/conn:exec (with and without an on_wait
 * handler called while the statement runs), which must not leak the PGresult held at that
 * moment nor leave the connection busy. Results are counted with a libpq event procedure, so a leak
 * shows in a plain build too, not only under LeakSanitizer. Needs the sandbox server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <libpq-events.h>
#include <libpq-fe.h>
#include <lua.h>
#include <lualib.h>

#include "check.h"
#include "tide.h"

static void hides_a_password_libpq_cannot_decode(void) {
  static const char *const urls[] = {
      "postgresql://u:hunter2%zzsecret@127.0.0.1:1/db",
      "postgresql://u:hunter2%00secret@127.0.0.1:1/db",
      "postgresql://127.0.0.1:1/db?password=hunter2%zzsecret",
  };
  for (size_t i = 0; i < sizeof urls / sizeof *urls; i++) {
    tide_error err = {{0}, {0}};
    PGconn *pg = tide_pg_connect(urls[i], NULL, &err);
    CHECK(pg == NULL, "connected with %s", urls[i]);
    CHECK(strstr(err.message, "percent-encoded") != NULL, "message: %s", err.message);
    CHECK(strstr(err.message, "hunter2") == NULL && strstr(err.message, "secret") == NULL,
          "message shows the password: %s", err.message);
  }
}

/* ---- allocation failures ------------------------------------------------------------------ */

static long allocs_left = -1; /* -1: no limit; else fail every allocation once it reaches 0 */
static int results_alive;

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud, (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  if (allocs_left == 0)
    return NULL; /* stays failing, so Lua's emergency collection cannot rescue the call */
  if (allocs_left > 0)
    allocs_left--;
  return realloc(ptr, nsize);
}

static int count_results(PGEventId id, void *info, void *passthrough) {
  (void)info, (void)passthrough;
  if (id == PGEVT_RESULTCREATE)
    results_alive++;
  else if (id == PGEVT_RESULTDESTROY)
    results_alive--;
  return 1;
}

/* [conn] -> [conn]: runs conn:method(sql) with k Lua allocations allowed, returns the status */
static int call_limited(lua_State *L, const char *method, const char *sql, long k) {
  int status;
  lua_getfield(L, -1, method); /* [conn, method] */
  lua_pushvalue(L, -2);
  lua_pushstring(L, sql);
  allocs_left = k;
  status = lua_pcall(L, 2, 0, 0);
  allocs_left = -1;
  if (status != LUA_OK)
    lua_pop(L, 1); /* [conn] */
  return status;
}

/* [conn] -> [conn]: conn:on_wait(a handler that allocates, 0.01). A handler that fails (out
 * of memory) is dropped, so it is set again before each call. */
static void set_wait_handler(lua_State *L) {
  lua_getfield(L, -1, "on_wait"); /* [conn, on_wait] */
  lua_pushvalue(L, -2);
  if (luaL_loadstring(L, "return function(s) return { s, tostring(s) } end") != LUA_OK)
    lua_error(L);
  lua_call(L, 0, 1);
  lua_pushnumber(L, 0.01);
  lua_call(L, 3, 0); /* [conn] */
}

static void frees_the_result_when_lua_runs_out_of_memory(void) {
  static const struct {
    const char *method, *sql;
    int wait;
  } calls[] = {
      {"query", "SELECT g AS n, 'row ' || g AS t, g::float8 AS f FROM generate_series(1, 40) g", 0},
      {"query", "SELECT 1/0", 0},
      {"exec", "SELECT 1; SELECT 1/0", 0},
      {"query", "SELECT pg_sleep(0.02), g AS n FROM generate_series(1, 3) g", 1},
      {"exec", "SELECT pg_sleep(0.02); SELECT 1/0", 1},
  };
  lua_State *L = lua_newstate(limited_alloc, NULL);
  PGconn *pg;
  luaL_openlibs(L);
  luaL_requiref(L, "tide.core", luaopen_tide_core, 0); /* [core] */
  lua_getfield(L, -1, "connect");
  lua_pushliteral(L, "");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) { /* [core, conn] */
    CHECK(0, "connect: %s", luaL_tolstring(L, -1, NULL));
    lua_close(L);
    return;
  }
  /* conn.c's userdata starts with its PGconn: the only way in for the event procedure */
  pg = *(PGconn **)lua_touserdata(L, -1);
  CHECK(PQregisterEventProc(pg, count_results, "count_results", NULL), "event procedure");
  for (size_t i = 0; i < sizeof calls / sizeof *calls; i++) {
    int status = LUA_ERRMEM;
    long k;
    for (k = 0; k < 100000 && status == LUA_ERRMEM; k++) {
      if (calls[i].wait)
        set_wait_handler(L);
      status = call_limited(L, calls[i].method, calls[i].sql, k);
      lua_gc(L, LUA_GCCOLLECT);
      CHECK(results_alive == 0, "%s(%s) failing after %ld allocations leaks %d result(s)",
            calls[i].method, calls[i].sql, k, results_alive);
      results_alive = 0; /* report each leak once */
    }
    CHECK(k > 1, "%s(%s): the allocation limit never hit", calls[i].method, calls[i].sql);
    /* whatever failed, the connection is ready for the next statement */
    CHECK(call_limited(L, "exec", "SELECT 1", -1) == LUA_OK, "after %s(%s): connection busy",
          calls[i].method, calls[i].sql);
  }
  lua_close(L);
}

int main(void) {
  if (!getenv("PGPORT")) {
    printf("not ok: PGPORT is not set: run through tools/test (it starts the sandbox)\n");
    return 1;
  }
  hides_a_password_libpq_cannot_decode();
  frees_the_result_when_lua_runs_out_of_memory();
  printf("%d failed\n", failures);
  return failures ? 1 : 0;
}
