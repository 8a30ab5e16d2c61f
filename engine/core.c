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

/* Lowercase hex of n bytes into out (2n + 1 bytes). */
static void hex_encode(const unsigned char *bytes, unsigned int n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (unsigned int i = 0; i < n; i++) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 15];
  }
  out[2 * n] = '\0';
}

/* core.sha256(s) -> lowercase hex digest */
static int l_sha256(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  if (!EVP_Digest(s, len, md, &mdlen, sha256_md(), NULL))
    return luaL_error(L, "sha256 failed");
  hex_encode(md, mdlen, hex);
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
    return luaL_error(L, "out of memory computing a checksum");
  normal_len = tide_checksum_normalize_v1(s, len, normal);
  ok = EVP_Digest(normal, normal_len, md, &mdlen, sha256_md(), NULL);
  free(normal); /* before anything that can raise */
  if (!ok)
    return luaL_error(L, "sha256 failed");
  hex_encode(md, mdlen, hex);
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

static const luaL_Reg core_functions[] = {
    {"sha256", l_sha256},
    {"checksum", l_checksum},
    {"error", l_error_new},
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
  tide_sys_register(L);
  tide_dump_register(L);
  tide_upload_register(L);
  return 1;
}
