/* main.c: the `tide` host program. Builds the Lua state, preloads tide.core and the Lua library
 * embedded at build time, and runs tide.cli in protected mode (as lua.c runs its script). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "embedded.h"
#include "tide.h"

/* Exit code for a failure tide did not foresee (a bug): see README "Exit codes". */
#define EXIT_INTERNAL 70

/* package.preload loader for one embedded module; upvalue 1 is its index in tide_embedded. */
static int load_embedded(lua_State *L) {
  const struct tide_embedded *m = &tide_embedded[lua_tointeger(L, lua_upvalueindex(1))];
  /* "bt": the build embeds bytecode when luac5.4 is there, source otherwise (embed.cmake) */
  if (luaL_loadbufferx(L, m->source, m->size, m->chunkname, "bt") != LUA_OK)
    return tide_error_raisef(L, "internal", "%s", lua_tostring(L, -1)); /* a broken build */
  lua_pushstring(L, m->module);
  lua_call(L, 1, 1);
  return 1;
}

/* package.preload loader for tide.build: what this binary was built from ({library_id}). */
static int load_build(lua_State *L) {
  lua_createtable(L, 0, 1);
  lua_pushstring(L, tide_library_id);
  lua_setfield(L, -2, "library_id");
  return 1;
}

static void preload(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE); /* [preload] */
  lua_pushcfunction(L, luaopen_tide_core);
  lua_setfield(L, -2, "tide.core");
  lua_pushcfunction(L, load_build);
  lua_setfield(L, -2, "tide.build");
  for (int i = 0; tide_embedded[i].module; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, tide_embedded[i].module);
  }
  lua_pop(L, 1);
}

/* Message handler: the error as tide.errors.normalize makes it (a tide.Error, the one
 * normaliser the CLI and the runner use too), with the traceback attached; the raw value when
 * the library itself cannot load. */
static int on_error(lua_State *L) {
  lua_getglobal(L, "require"); /* [err, require] */
  lua_pushliteral(L, "tide.errors");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_getfield(L, -1, "normalize") == LUA_TFUNCTION) {
    lua_pushvalue(L, 1); /* [err, errors, normalize, err] */
    if (lua_pcall(L, 1, 1, 0) == LUA_OK)
      lua_replace(L, 1); /* [tide.Error, errors] */
  }
  lua_settop(L, 1);
  if (lua_istable(L, 1)) {
    luaL_traceback(L, L, "", 1); /* "\nstack traceback:...", as debug.traceback("") */
    lua_setfield(L, 1, "traceback");
    return 1;
  }
  luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
  return 1;
}

/* [argc, argv] -> runs require("tide.cli").main(args), leaves the exit code */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  /* Copy and mask argv first: loading the libraries takes a while, and `ps` shows it all along. */
  lua_createtable(L, argc, 0); /* [argc, argv, args] */
  for (int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
    tide_mask_password(argv[i]);
  }
  luaL_openlibs(L);
  preload(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "tide.cli");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "main"); /* [argc, argv, args, cli, main] */
  lua_pushvalue(L, 3);
  lua_call(L, 1, 1);
  return 1;
}

int main(int argc, char **argv) {
  lua_State *L;
  int status, code;
  tide_no_core_dumps(); /* argv may hold a password already; the environment, AWS keys */
  L = luaL_newstate();
  if (!L) {
    fputs("tide: cannot create the Lua state: out of memory\n", stderr);
    return EXIT_INTERNAL;
  }
  lua_pushcfunction(L, on_error);
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 1);
  if (status != LUA_OK) {
    const char *msg = NULL;
    if (lua_istable(L, -1) && lua_getfield(L, -1, "traceback") == LUA_TSTRING) {
      luaL_tolstring(L, -2, NULL); /* [err, traceback, message] */
      lua_insert(L, -2);
      lua_concat(L, 2);
      msg = lua_tostring(L, -1);
    } else {
      msg = lua_isstring(L, -1) ? lua_tostring(L, -1) : "(error object is not a string)";
    }
    fprintf(stderr, "tide: internal error: %s\n", msg);
    code = EXIT_INTERNAL;
  } else {
    code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
  }
  lua_close(L);
  if (tide_interrupted && code == 128 + tide_interrupted) {
    /* a backup stopped by SIGINT/SIGTERM has cleaned up: now die of the signal, so that a
     * calling shell sees it as such (and a script stops on Ctrl-C); as PID 1 the signal is
     * ignored and the code stands */
    signal(tide_interrupted, SIG_DFL);
    raise(tide_interrupted);
  }
  return code;
}
