/* core.c: luaopen_tide_core, the `tide.core` module: the tide.Error type, the NULL sentinel,
 * checksums, and the registration of every C service (conn.c, sys.c, ...). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <openssl/evp.h>

#include "tide.h"
#include "util.h"

void tide_error_set(tide_error *err, const char *sqlstate, const char *fmt, ...) {
  va_list ap;
  snprintf(err->sqlstate, sizeof err->sqlstate, "%s", sqlstate ? sqlstate : "");
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
}

void tide_error_push(lua_State *L, const char *kind, const char *message) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, message);
  lua_setfield(L, -2, "message");
  luaL_setmetatable(L, TIDE_ERROR);
}

int tide_error_raise(lua_State *L, const char *kind, const tide_error *err) {
  tide_error_push(L, kind, err->message);
  if (err->sqlstate[0]) {
    lua_pushstring(L, err->sqlstate);
    lua_setfield(L, -2, "sqlstate");
  }
  return lua_error(L);
}

int tide_error_raisef(lua_State *L, const char *kind, const char *fmt, ...) {
  tide_error err;
  va_list ap;
  err.sqlstate[0] = '\0';
  va_start(ap, fmt);
  vsnprintf(err.message, sizeof err.message, fmt, ap);
  va_end(ap);
  return tide_error_raise(L, kind, &err);
}

/* tostring(err) -> "ERROR 42P07: relation "users" already exists" or the bare message */
static int l_error_tostring(lua_State *L) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (lua_getfield(L, 1, "sqlstate") == LUA_TSTRING) {
    luaL_addstring(&b, "ERROR ");
    luaL_addvalue(&b);
    luaL_addstring(&b, ": ");
  } else {
    lua_pop(L, 1);
  }
  if (lua_getfield(L, 1, "message") == LUA_TSTRING)
    luaL_addvalue(&b);
  else
    lua_pop(L, 1);
  luaL_pushresult(&b);
  return 1;
}

static const luaL_Reg error_metamethods[] = {
    {"__tostring", l_error_tostring},
    {NULL, NULL},
};

size_t tide_echo_keep(const char *s, size_t len) {
  size_t keep = TIDE_ECHO_LIMIT;
  if (len <= keep)
    return len;
  while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80)
    keep--; /* s[keep] is the first byte cut: not in the middle of a character */
  return keep;
}

void tide_push_echo(lua_State *L, const char *s, size_t len) {
  size_t keep = tide_echo_keep(s, len);
  lua_pushlstring(L, s, keep);
  if (keep < len) {
    lua_pushfstring(L, " ... [cut, %I bytes]", (lua_Integer)(len - keep));
    lua_concat(L, 2);
  }
}

/* The NULL sentinel is a unique light userdata: cheap to compare, impossible to forge from Lua. */
static const char null_sentinel = 0;

void tide_push_null(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&null_sentinel);
}

int tide_is_null(lua_State *L, int idx) {
  return lua_islightuserdata(L, idx) && lua_touserdata(L, idx) == (void *)&null_sentinel;
}

/* SHA-256 fetched once: EVP_sha256() makes OpenSSL 3 look the algorithm up on every digest,
 * which cost more than hashing a revision file. Lives as long as the process. */
static const EVP_MD *sha256_md(void) {
  static EVP_MD *md;
  if (!md)
    md = EVP_MD_fetch(NULL, "SHA256", NULL);
  return md ? md : EVP_sha256();
}

/* core.sha256(s) -> lowercase hex digest */
static int l_sha256(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  if (!EVP_Digest(s, len, md, &mdlen, sha256_md(), NULL))
    return tide_error_raisef(L, "internal", "sha256 failed");
  tide_hex(md, mdlen, hex);
  lua_pushlstring(L, hex, 2 * mdlen);
  return 1;
}

/* The checksum of a revision file, algorithm version 1: SHA-256 of the text with line endings
 * made LF, trailing blanks (space, tab) cut from every line and trailing blank lines cut from
 * the end, so that re-saving a file in another editor keeps its checksum. Writes the
 * normalised text to out (at least n bytes) and returns its length. */
size_t tide_checksum_normalize_v1(const char *s, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (ch == '\r') { /* CRLF and a lone CR both end a line */
      ch = '\n';
      if (i + 1 < n && s[i + 1] == '\n')
        i++;
    }
    if (ch == '\n')
      while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '\t'))
        o--;
    out[o++] = ch;
  }
  while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '\t' || out[o - 1] == '\n'))
    o--;
  return o;
}

/* core.checksum(source) -> hex SHA-256 of the normalised source (algorithm version 1) */
static int l_checksum(lua_State *L) {
  size_t len, normal_len;
  const char *s = luaL_checklstring(L, 1, &len);
  char *normal = malloc(len ? len : 1);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  int ok;
  if (!normal)
    return tide_error_raisef(L, "internal", "out of memory computing a checksum");
  normal_len = tide_checksum_normalize_v1(s, len, normal);
  ok = EVP_Digest(normal, normal_len, md, &mdlen, sha256_md(), NULL);
  free(normal); /* before anything that can raise */
  if (!ok)
    return tide_error_raisef(L, "internal", "sha256 failed");
  tide_hex(md, mdlen, hex);
  lua_pushlstring(L, hex, 2 * mdlen);
  return 1;
}

/* core.error(kind, message [, fields]) -> a tide.Error table (not raised) */
static int l_error_new(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  const char *message = luaL_checkstring(L, 2);
  tide_error_push(L, kind, message);
  if (lua_istable(L, 3)) {
    lua_pushnil(L); /* [.., err, nil] */
    while (lua_next(L, 3)) {
      lua_pushvalue(L, -2); /* [.., err, key, value, key] */
      lua_insert(L, -2);    /* [.., err, key, key, value] */
      lua_settable(L, -4);
    }
  }
  return 1;
}

/* core.run_limited's budget: one Lua state per process and no nesting, so one static record.
 * The allocator it puts in front of the state's own counts every byte of the state from the
 * start of the call; the count hook counts instructions down, step at a time (a million, or
 * the whole budget when it is smaller). */
#define HOOK_STEP 1000000
static struct {
  lua_Alloc f; /* the allocator wrapped */
  void *ud;
  size_t used, limit;
  int refused;              /* an allocation was refused */
  lua_Integer instructions; /* left */
  int step;
  int exhausted;      /* the instructions ran out */
  const char *source; /* "@path" of the file, to name the line it was on */
  int line;
} budget;

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  size_t old = ptr ? osize : 0; /* without ptr, osize tells the kind of object, not a size */
  void *p;
  (void)ud;
  if (nsize > old && nsize - old > budget.limit - budget.used) {
    budget.refused = 1;
    return NULL; /* Lua collects garbage, tries once more, then raises "not enough memory" */
  }
  p = budget.f(budget.ud, ptr, osize, nsize);
  if (p || nsize == 0)
    budget.used = budget.used - old + nsize;
  return p;
}

static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (!budget.exhausted) {
    lua_Debug frame;
    budget.instructions -= budget.step;
    if (budget.instructions > 0)
      return;
    budget.exhausted = 1;
    for (int level = 0; lua_getstack(L, level, &frame); level++) /* the deepest frame in the file */
      if (lua_getinfo(L, "Sl", &frame) && strcmp(frame.source, budget.source) == 0) {
        budget.line = frame.currentline;
        break;
      }
    /* from now on at every instruction: a pcall in the file cannot keep it going */
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
  }
  tide_error_push(L, "load", "the load budget ran out");
  lua_error(L);
}

/* core.run_limited(fn, path, instructions, bytes) -> true, result | false, err, why, line
 * Calls fn() (the top level of tide.lua or of a revision file, with what tide reads of its
 * result) with at most `instructions` Lua instructions and `bytes` more memory. On failure why
 * is "instructions", "memory" or nil (fn's own error), and line the line of path it was on. */
static int l_run_limited(lua_State *L) {
  lua_Integer instructions = luaL_checkinteger(L, 3), bytes = luaL_checkinteger(L, 4);
  lua_Hook outer = lua_gethook(L); /* a harness's own hook (the fuzz targets') comes back after */
  int outer_mask = lua_gethookmask(L), outer_count = lua_gethookcount(L), status;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_argcheck(L, instructions > 0, 3, "a positive number of instructions");
  luaL_argcheck(L, bytes > 0, 4, "a positive number of bytes");
  lua_pushfstring(L, "@%s", luaL_checkstring(L, 2)); /* [fn, path, n, bytes, source] */
  budget.source = lua_tostring(L, 5);
  budget.instructions = instructions;
  budget.exhausted = budget.refused = budget.line = 0;
  budget.used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
  budget.limit = budget.used + (size_t)bytes;
  budget.f = lua_getallocf(L, &budget.ud);
  lua_pushvalue(L, 1);
  lua_setallocf(L, limited_alloc, NULL);
  budget.step = instructions < HOOK_STEP ? (int)instructions : HOOK_STEP;
  lua_sethook(L, count_hook, LUA_MASKCOUNT, budget.step);
  status = lua_pcall(L, 0, 1, 0);
  lua_sethook(L, outer, outer_mask, outer_count);
  lua_setallocf(L, budget.f, budget.ud); /* [.., result or error] */
  if (status == LUA_OK) {
    lua_pushboolean(L, 1);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 0);
  lua_insert(L, -2);
  if (budget.exhausted)
    lua_pushliteral(L, "instructions");
  else if (budget.refused)
    lua_pushliteral(L, "memory");
  else
    lua_pushnil(L);
  if (budget.line > 0)
    lua_pushinteger(L, budget.line);
  else
    lua_pushnil(L);
  return 4;
}

static const luaL_Reg core_functions[] = {
    {"sha256", l_sha256},   {"checksum", l_checksum},
    {"error", l_error_new}, {"run_limited", l_run_limited},
    {NULL, NULL},
};

int luaopen_tide_core(lua_State *L) {
  if (luaL_newmetatable(L, TIDE_ERROR)) {
    luaL_setfuncs(L, error_metamethods, 0);
    lua_pushstring(L, TIDE_ERROR);
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);

  luaL_newlib(L, core_functions);
  lua_pushliteral(L, TIDE_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, TIDE_ECHO_LIMIT);
  lua_setfield(L, -2, "echo_limit");
  tide_push_null(L);
  lua_setfield(L, -2, "null");
  luaL_getmetatable(L, TIDE_ERROR);
  lua_setfield(L, -2, "Error");

  tide_conn_register(L);
  tide_conninfo_register(L);
  tide_sys_register(L);
  tide_dump_register(L);
  tide_dest_register(L);
  return 1;
}
