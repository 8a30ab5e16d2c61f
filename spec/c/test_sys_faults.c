/* test_sys_faults.c: sys.c under failure: core.listdir with a Lua allocation failing at every
 * point must neither leak its DIR (counted in /proc/self/fd) nor heap memory (LeakSanitizer
 * in the ASan build), and core.random_bytes must not leak its FILE. No server needed. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "tide.h"

static int failures;
static long allocs_left = -1; /* -1: no limit; else fail every allocation once it reaches 0 */

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

static int open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  while (d && readdir(d))
    n++;
  if (d)
    closedir(d);
  return n;
}

/* [core] -> [core]: core[fn](arg) with a growing allocation budget until it succeeds */
static void survives_every_allocation_failure(lua_State *L, const char *fn, const char *arg,
                                              lua_Integer n) {
  int fds = open_fds(), status = LUA_ERRMEM;
  long k;
  for (k = 0; k < 100000 && status == LUA_ERRMEM; k++) {
    lua_getfield(L, -1, fn);
    if (arg)
      lua_pushstring(L, arg);
    else
      lua_pushinteger(L, n);
    allocs_left = k;
    status = lua_pcall(L, 1, 1, 0);
    allocs_left = -1;
    lua_pop(L, 1);
    lua_gc(L, LUA_GCCOLLECT);
    if (open_fds() != fds) {
      failures++;
      printf("not ok: %s failing after %ld allocations leaks a descriptor\n", fn, k);
      fds = open_fds();
    }
  }
  if (status != LUA_OK || k < 2) {
    failures++;
    printf("not ok: %s: status %d after %ld budgets\n", fn, status, k);
  }
}

int main(void) {
  lua_State *L = lua_newstate(limited_alloc, NULL);
  luaL_openlibs(L);
  luaL_requiref(L, "tide.core", luaopen_tide_core, 0); /* [core] */
  survives_every_allocation_failure(L, "listdir", "spec", 0);
  survives_every_allocation_failure(L, "random_bytes", NULL, 64);
  lua_close(L);
  printf("%d failed\n", failures);
  return failures ? 1 : 0;
}
