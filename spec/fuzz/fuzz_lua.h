/* fuzz_lua.h: what the libFuzzer targets share: a Lua state with a memory cap and an
 * instruction budget, tide.core preloaded and the Lua library read from the source tree. */
#ifndef TIDE_FUZZ_LUA_H
#define TIDE_FUZZ_LUA_H

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "tide.h"

#define FUZZ_MEMORY_CAP (64u << 20)
#define FUZZ_INSTRUCTIONS 2000000

static size_t fuzz_memory_used;

/* Refuses to grow past the cap, so `string.rep("x", 1e10)` is a Lua memory error, not a crash. */
static void *fuzz_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (!ptr)
    osize = 0;
  if (nsize == 0) {
    free(ptr);
    fuzz_memory_used -= osize;
    return NULL;
  }
  if (nsize > osize && fuzz_memory_used + (nsize - osize) > FUZZ_MEMORY_CAP)
    return NULL;
  ptr = realloc(ptr, nsize);
  if (ptr)
    fuzz_memory_used += nsize - osize;
  return ptr;
}

static void fuzz_budget(lua_State *L, lua_Debug *ar) {
  (void)ar;
  luaL_error(L, "fuzz: instruction budget exhausted");
}

/* A fresh state per input keeps inputs independent; it costs ~100 µs. */
static lua_State *fuzz_state(void) {
  lua_State *L = lua_newstate(fuzz_alloc, NULL);
  if (!L)
    abort();
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_tide_core);
  lua_setfield(L, -2, "tide.core");
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  lua_pushliteral(L, TIDE_SOURCE_DIR "/lua/?.lua");
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_sethook(L, fuzz_budget, LUA_MASKCOUNT, FUZZ_INSTRUCTIONS);
  return L;
}

/* Runs `chunk` (Lua source defining the property) with the input as `...`; a failed property
 * (an error raised by the chunk) aborts so libFuzzer records the input. */
static void fuzz_check(lua_State *L, const char *chunk, const unsigned char *data, size_t size) {
  if (luaL_loadstring(L, chunk) != LUA_OK)
    abort();
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    /* the memory cap and the instruction budget are the harness's limits, not findings */
    if (msg && (strstr(msg, "not enough memory") || strstr(msg, "instruction budget")))
      return;
    fprintf(stderr, "property failed: %s\n", msg ? msg : "(non-string error)");
    abort();
  }
}

#endif
