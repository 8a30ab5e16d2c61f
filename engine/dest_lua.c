/* dest_lua.c: tide.Destination, the Lua face of the backup destinations (core.destination).
 * Thin bindings over dest.h: every failure raises a tide.Error ({kind = "backup"} for what the
 * destination reports, {kind = "usage"} for a wrong call), never a bare string. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "dest.h"

#define TIDE_DESTINATION "tide.Destination"

/* Raises {kind = "usage", message = ...}: a call the binding cannot take. */
static int usage(lua_State *L, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  tide_error_push(L, "usage", msg);
  return lua_error(L);
}

static const char *arg_string(lua_State *L, int idx, const char *what) {
  if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TNUMBER)
    usage(L, "%s: a string expected, got %s", what, luaL_typename(L, idx));
  return lua_tostring(L, idx);
}

typedef struct ldest {
  tide_dest *u; /* NULL once closed */
  lua_State *L; /* the thread of the running method, for the progress callback */
  int progress_ref;
  int failed_ref; /* the progress callback's error, re-raised after the operation */
} ldest;

static ldest *self(lua_State *L) {
  ldest *d = luaL_testudata(L, 1, TIDE_DESTINATION);
  if (!d)
    usage(L, "a tide.Destination expected (call its methods with `:`)");
  return d;
}

static ldest *check_dest(lua_State *L) {
  ldest *d = self(L);
  if (!d->u)
    usage(L, "destination is closed");
  return d;
}

/* In protected mode: an error in the callback stops the transfer; nothing raises inside libcurl. */
static int progress_to_lua(void *ud, const char *stage, unsigned long long done,
                           unsigned long long total) {
  ldest *d = ud;
  lua_State *L = d->L;
  if (d->progress_ref == LUA_NOREF || !L)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, d->progress_ref);
  lua_pushstring(L, stage);
  lua_pushinteger(L, (lua_Integer)done);
  lua_pushinteger(L, (lua_Integer)total);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    luaL_unref(L, LUA_REGISTRYINDEX, d->failed_ref);
    d->failed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
  }
  return 0;
}

static int raise_dest(lua_State *L, ldest *d, const tide_error *err) {
  if (d->failed_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->failed_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, d->failed_ref);
    d->failed_ref = LUA_NOREF;
    return lua_error(L);
  }
  return tide_error_raise(L, "backup", err);
}

static const char *field_string(lua_State *L, int idx, const char *key) {
  const char *s = NULL;
  lua_getfield(L, idx, key);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      usage(L, "%s: a string expected, got %s", key, luaL_typename(L, -1));
    s = lua_tostring(L, -1);
  }
  lua_pop(L, 1); /* the table keeps the string alive */
  return s;
}

static lua_Number field_number(lua_State *L, int idx, const char *key) {
  lua_Number v = 0;
  lua_getfield(L, idx, key);
  if (!lua_isnil(L, -1)) {
    if (!lua_isnumber(L, -1))
      usage(L, "core.destination: %s: a number expected, got %s", key, luaL_typename(L, -1));
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* core.destination{url=, access_key_id=, secret_access_key=, session_token=, region=, endpoint=,
 *   headers={"Name: value", ...}, ca_file=, deadline=, max_attempts=, backoff_base=, backoff_cap=,
 *   low_speed_limit=, low_speed_time=, connect_timeout=, multipart_threshold=, part_size=,
 *   parallel=, debug=, progress=fn(stage, done, total)} -> tide.Destination | raises tide.Error */
static int l_destination(lua_State *L) {
  static const char *const keys[] = {"url",
                                     "access_key_id",
                                     "secret_access_key",
                                     "session_token",
                                     "region",
                                     "endpoint",
                                     "headers",
                                     "ca_file",
                                     "deadline",
                                     "max_attempts",
                                     "backoff_base",
                                     "backoff_cap",
                                     "low_speed_limit",
                                     "low_speed_time",
                                     "connect_timeout",
                                     "multipart_threshold",
                                     "part_size",
                                     "parallel",
                                     "debug",
                                     "progress",
                                     NULL};
  tide_dest_opts o;
  tide_error err = {0};
  const char **headers = NULL;
  ldest *d;
  int rc;
  if (!lua_istable(L, 1))
    return usage(L, "core.destination: a table of options expected");
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    int ok = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING)
      for (int i = 0; keys[i]; i++)
        ok |= strcmp(lua_tostring(L, -1), keys[i]) == 0;
    if (!ok)
      return usage(L, "core.destination: unknown option `%s`", luaL_tolstring(L, -1, NULL));
  }
  /* the userdata first, closed, so a failure below leaves nothing to leak */
  d = lua_newuserdatauv(L, sizeof *d, 0); /* [opts, dest] */
  d->u = NULL;
  d->L = NULL;
  d->progress_ref = d->failed_ref = LUA_NOREF;
  luaL_setmetatable(L, TIDE_DESTINATION);
  memset(&o, 0, sizeof o);
  o.url = field_string(L, 1, "url");
  if (!o.url)
    return usage(L, "core.destination: url is required");
  o.access_key = field_string(L, 1, "access_key_id");
  o.secret_key = field_string(L, 1, "secret_access_key");
  o.session_token = field_string(L, 1, "session_token");
  o.region = field_string(L, 1, "region");
  o.endpoint = field_string(L, 1, "endpoint");
  o.ca_file = field_string(L, 1, "ca_file");
  o.deadline = field_number(L, 1, "deadline");
  o.max_attempts = (int)field_number(L, 1, "max_attempts");
  o.backoff_base = field_number(L, 1, "backoff_base");
  o.backoff_cap = field_number(L, 1, "backoff_cap");
  o.low_speed_limit = (long)field_number(L, 1, "low_speed_limit");
  o.low_speed_time = (long)field_number(L, 1, "low_speed_time");
  o.connect_timeout = (long)field_number(L, 1, "connect_timeout");
  o.multipart_threshold = (unsigned long long)field_number(L, 1, "multipart_threshold");
  o.part_size = (unsigned long long)field_number(L, 1, "part_size");
  o.parallel = (int)field_number(L, 1, "parallel");
  lua_getfield(L, 1, "debug");
  o.debug = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "headers") == LUA_TTABLE) { /* [opts, dest, headers] */
    o.nheaders = (size_t)luaL_len(L, -1);
    headers = lua_newuserdatauv(L, (o.nheaders + 1) * sizeof *headers, 0); /* freed by the GC */
    for (size_t i = 0; i < o.nheaders; i++) {
      size_t len;
      lua_geti(L, -2, (lua_Integer)i + 1);
      headers[i] = arg_string(L, -1, "core.destination: a header");
      len = lua_rawlen(L, -1);
      if (strlen(headers[i]) != len) /* C would send it cut at the NUL */
        return usage(L, "core.destination: header %d contains a NUL byte", (int)i + 1);
      lua_pop(L, 1); /* the headers table keeps it alive */
    }
    o.headers = headers;
  }
  if (lua_getfield(L, 1, "progress") == LUA_TFUNCTION)
    d->progress_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);
  o.progress = progress_to_lua;
  o.progress_ud = d;
  rc = tide_dest_open(&d->u, &o, &err); /* copies every string it keeps */
  if (rc != 0)
    return tide_error_raise(L, "backup", &err);
  lua_settop(L, 2);
  return 1;
}

/* dest:display() -> "s3://bucket/prefix/" (no credentials) */
static int l_dest_display(lua_State *L) {
  lua_pushstring(L, tide_dest_display(check_dest(L)->u));
  return 1;
}

/* The gate of a put_file: the verification of the archive must have succeeded. */
static int verified(void *ud, tide_error *err) {
  return tide_verify_finish(ud, err);
}

/* dest:put_file(name, path, {sha256=, md5=, size=} [, verification]) -> etag | raises tide.Error
 * With a tide.Verification still reading the archive back, the object becomes visible only once
 * that read succeeded; a failed read abandons the upload (nothing left under name). */
static int l_dest_put_file(lua_State *L) {
  ldest *d = check_dest(L);
  const char *name = arg_string(L, 2, "put_file: name"), *path = arg_string(L, 3, "put_file: path");
  const char *sha, *md5;
  lua_Integer size;
  char etag[128];
  tide_error err = {0};
  tide_dest_gate gate = {verified, NULL};
  if (!lua_istable(L, 4))
    return usage(L, "put_file: a table {sha256=, md5=, size=} expected");
  sha = field_string(L, 4, "sha256");
  md5 = field_string(L, 4, "md5");
  lua_getfield(L, 4, "size");
  if (!lua_isinteger(L, -1))
    return usage(L, "put_file: size: an integer expected");
  size = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (!sha || !md5)
    return usage(L, "put_file: sha256 and md5 are required");
  if (!lua_isnoneornil(L, 5) && !(gate.ud = tide_verify_test(L, 5)))
    return usage(L, "put_file: a tide.Verification expected as the fourth argument");
  d->L = L;
  if (tide_dest_put_file(d->u, name, path, sha, md5, (unsigned long long)size,
                         gate.ud ? &gate : NULL, etag, sizeof etag, &err) != 0)
    return raise_dest(L, d, &err);
  lua_pushstring(L, etag);
  return 1;
}

/* dest:put_string(name, data) | raises tide.Error */
static int l_dest_put_string(lua_State *L) {
  ldest *d = check_dest(L);
  const char *name = arg_string(L, 2, "put_string: name"),
             *data = arg_string(L, 3, "put_string: data");
  size_t len = lua_rawlen(L, 3);
  tide_error err = {0};
  d->L = L;
  if (tide_dest_put_data(d->u, name, data, len, &err) != 0)
    return raise_dest(L, d, &err);
  return 0;
}

/* dest:head(name) -> {size=, etag=} | nil when absent | raises tide.Error */
static int l_dest_head(lua_State *L) {
  ldest *d = check_dest(L);
  int exists = 0;
  unsigned long long size = 0;
  char etag[128];
  tide_error err = {0};
  d->L = L;
  if (tide_dest_head(d->u, arg_string(L, 2, "head: name"), &exists, &size, etag, sizeof etag,
                     &err) != 0)
    return raise_dest(L, d, &err);
  if (!exists) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)size);
  lua_setfield(L, -2, "size");
  if (etag[0]) {
    lua_pushstring(L, etag);
    lua_setfield(L, -2, "etag");
  }
  return 1;
}

/* dest:get_file(name, path [, max_size]) -> {size=, sha256=} | raises tide.Error: an object
 * larger than max_size bytes is refused, not downloaded */
static int l_dest_get_file(lua_State *L) {
  ldest *d = check_dest(L);
  unsigned long long size = 0;
  lua_Integer max = lua_isnoneornil(L, 4) ? 0 : lua_tointeger(L, 4);
  char sha[65];
  tide_error err = {0};
  if (max < 0 || (!lua_isnoneornil(L, 4) && !lua_isinteger(L, 4)))
    return usage(L, "get_file: max_size: a size in bytes expected");
  d->L = L;
  if (tide_dest_get_file(d->u, arg_string(L, 2, "get_file: name"),
                         arg_string(L, 3, "get_file: path"), (unsigned long long)max, &size, sha,
                         &err) != 0)
    return raise_dest(L, d, &err);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)size);
  lua_setfield(L, -2, "size");
  lua_pushstring(L, sha);
  lua_setfield(L, -2, "sha256");
  return 1;
}

/* dest:get_string(name) -> data | raises tide.Error */
static int l_dest_get_string(lua_State *L) {
  ldest *d = check_dest(L);
  char *data = NULL;
  size_t len = 0;
  tide_error err = {0};
  d->L = L;
  if (tide_dest_get_data(d->u, arg_string(L, 2, "get_string: name"), &data, &len, &err) != 0)
    return raise_dest(L, d, &err);
  lua_pushlstring(L, data, len); /* only a memory error can raise here */
  free(data);
  return 1;
}

/* dest:list() -> {{name=, size=, mtime=}, ...} (names relative to the destination; mtime in
 * seconds since the epoch, when known) | raises tide.Error */
static int l_dest_list(lua_State *L) {
  ldest *d = check_dest(L);
  tide_dest_entry *e = NULL;
  size_t n = 0;
  tide_error err = {0};
  d->L = L;
  if (tide_dest_list(d->u, &e, &n, &err) != 0)
    return raise_dest(L, d, &err);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, e[i].name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, (lua_Integer)e[i].size);
    lua_setfield(L, -2, "size");
    if (e[i].mtime) {
      lua_pushinteger(L, (lua_Integer)e[i].mtime);
      lua_setfield(L, -2, "mtime");
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  tide_dest_entries_free(e, n);
  return 1;
}

/* dest:sweep(max_age) -> {name, ...} | raises tide.Error: removes the temporary objects of tide's
 * own that a killed tide left behind (file://: temporary files whose writer is gone; s3://:
 * multipart uploads of archives started over max_age seconds ago) */
static int l_dest_sweep(lua_State *L) {
  ldest *d = check_dest(L);
  lua_Number max_age = lua_tonumber(L, 2);
  tide_dest_entry *e = NULL;
  size_t n = 0;
  tide_error err = {0};
  if (!lua_isnumber(L, 2))
    return usage(L, "sweep: max_age: a number of seconds expected");
  d->L = L;
  if (tide_dest_sweep(d->u, max_age, &e, &n, &err) != 0)
    return raise_dest(L, d, &err);
  lua_createtable(L, (int)n, 0); /* a memory error here leaks e: rare, and bounded */
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, e[i].name);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  tide_dest_entries_free(e, n);
  return 1;
}

/* dest:delete(name) | raises tide.Error (absent objects are not an error) */
static int l_dest_delete(lua_State *L) {
  ldest *d = check_dest(L);
  tide_error err = {0};
  d->L = L;
  if (tide_dest_delete(d->u, arg_string(L, 2, "delete: name"), &err) != 0)
    return raise_dest(L, d, &err);
  return 0;
}

/* dest:close(); also __gc and __close. Idempotent. */
static int l_dest_close(lua_State *L) {
  ldest *d = self(L);
  tide_dest_close(d->u);
  d->u = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, d->progress_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, d->failed_ref);
  d->progress_ref = d->failed_ref = LUA_NOREF;
  return 0;
}

static int l_dest_tostring(lua_State *L) {
  ldest *d = self(L);
  lua_pushfstring(L, "tide.Destination (%s)", d->u ? tide_dest_display(d->u) : "closed");
  return 1;
}

static const luaL_Reg dest_methods[] = {
    {"display", l_dest_display},
    {"put_file", l_dest_put_file},
    {"put_string", l_dest_put_string},
    {"head", l_dest_head},
    {"get_file", l_dest_get_file},
    {"get_string", l_dest_get_string},
    {"list", l_dest_list},
    {"delete", l_dest_delete},
    {"sweep", l_dest_sweep},
    {"close", l_dest_close},
    {NULL, NULL},
};

static const luaL_Reg dest_metamethods[] = {
    {"__gc", l_dest_close},
    {"__close", l_dest_close},
    {"__tostring", l_dest_tostring},
    {"__index", NULL},
    {NULL, NULL},
};

static const luaL_Reg dest_functions[] = {
    {"destination", l_destination},
    {NULL, NULL},
};

void tide_dest_register(lua_State *L) {
  if (luaL_newmetatable(L, TIDE_DESTINATION)) { /* [core, mt] */
    luaL_setfuncs(L, dest_metamethods, 0);
    luaL_newlib(L, dest_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, dest_functions, 0);
}
