/* sys.c: the operating-system facts and waits Lua cannot reach on its own: directory listing,
 * monotonic time, sleeping, process and user identity, terminals. Part of tide.core. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pwd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "tide.h"

#define TIDE_DIR "tide.Dir"

/* Overwrites the password of a URL (scheme://user:PASSWORD@host) or of a keyword string
 * (password=PASSWORD) in place, so `ps` and /proc/PID/cmdline stop showing it once tide runs.
 * The caller has already copied the argument into Lua. */
void tide_mask_password(char *arg) {
  char *scheme = strstr(arg, "://");
  if (scheme) {
    /* libpq ends the userinfo at the first '@' or '/', as this does */
    char *user = scheme + 3, *end = user + strcspn(user, "@/"), *colon = strchr(user, ':');
    if (*end == '@' && colon && colon < end)
      memset(colon + 1, 'x', (size_t)(end - colon - 1));
  }
  /* keyword strings and URL query parameters: password=VALUE, password = VALUE, password='a b' */
  char *query = scheme ? strchr(scheme + 3, '?') : NULL;
  for (char *kw = strstr(arg, "password"); kw; kw = strstr(kw + 1, "password")) {
    char *v = kw + strlen("password"), *end;
    v += strspn(v, " \t");
    if (*v != '=')
      continue;
    v++;
    v += strspn(v, " \t");
    if (query && kw > query) { /* a URL's query value runs to '&', spaces and '#' included */
      end = v + strcspn(v, "&");
    } else if (*v == '\'') { /* quoted values may hold spaces and \' */
      for (end = v + 1; *end && *end != '\''; end++)
        if (*end == '\\' && end[1])
          end++;
      if (*end)
        end++;
    } else { /* as libpq: to whitespace, '\' escaping the next character ('&' is plain) */
      for (end = v; *end && !isspace((unsigned char)*end); end++)
        if (*end == '\\' && end[1])
          end++;
    }
    memset(v, 'x', (size_t)(end - v));
  }
}

static int cmp_strings(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* __gc of the box holding listdir's DIR: closes it when a Lua error cut the listing short */
static int l_dir_close(lua_State *L) {
  DIR **box = luaL_checkudata(L, 1, TIDE_DIR);
  if (*box)
    closedir(*box);
  *box = NULL;
  return 0;
}

/* core.listdir(path) -> sorted array of names (no "." or "..") | nil, message
 * Names go straight into Lua (no C heap), the DIR sits in a box: a memory error leaks nothing. */
static int l_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR **box = lua_newuserdatauv(L, sizeof *box, 0);
  const char **names;
  struct dirent *e;
  lua_Integer n = 0;
  int failed;
  *box = NULL;
  luaL_setmetatable(L, TIDE_DIR);
  lua_newtable(L); /* [path, box, unsorted] */
  if (!(*box = opendir(path))) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  for (;;) {
    errno = 0; /* readdir returns NULL at the end and on failure: only errno tells */
    if (!(e = readdir(*box)))
      break;
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      lua_pushstring(L, e->d_name);
      lua_rawseti(L, -2, ++n);
    }
  }
  failed = errno;
  closedir(*box);
  *box = NULL;
  if (failed) /* a partial listing could hide a revision file */
    return luaL_error(L, "%s: %s", path, strerror(failed));
  /* the strings stay alive in the unsorted table while their pointers are sorted */
  names = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *names, 0); /* [.., unsorted, names] */
  for (lua_Integer i = 0; i < n; i++) {
    lua_rawgeti(L, -2, i + 1);
    names[i] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  qsort(names, (size_t)n, sizeof *names, cmp_strings);
  lua_createtable(L, (int)n, 0); /* [.., unsorted, names, sorted] */
  for (lua_Integer i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* core.isdir(path) -> boolean */
static int l_isdir(lua_State *L) {
  struct stat st;
  lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0 && S_ISDIR(st.st_mode));
  return 1;
}

/* Whether t is more than seconds before now. */
static int older_than(const struct timespec *t, const struct timespec *now, time_t seconds) {
  time_t sec = now->tv_sec - seconds;
  return t->tv_sec < sec || (t->tv_sec == sec && t->tv_nsec < now->tv_nsec);
}

/* core.filestamp(path) -> stamp, settled | nil, message
 * The stamp is an opaque string that changes whenever the file's content can have changed: size,
 * mtime, ctime, inode and device. ctime is set by the kernel on every write or rename, and
 * neither tar nor touch can set it back. `settled` says both times are over two seconds old:
 * a write in the same timestamp tick as the one stamped could otherwise keep the stamp as it
 * was (git's "racily clean" entries), so only settled stamps may vouch for cached content. */
static int l_filestamp(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  struct timespec now;
  if (stat(path, &st) != 0) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  clock_gettime(CLOCK_REALTIME, &now);
  /* raw bytes, not text: it is only ever compared, and a start stamps every revision file */
  int64_t v[7] = {(int64_t)st.st_size,         (int64_t)st.st_mtim.tv_sec,
                  (int64_t)st.st_mtim.tv_nsec, (int64_t)st.st_ctim.tv_sec,
                  (int64_t)st.st_ctim.tv_nsec, (int64_t)st.st_ino,
                  (int64_t)st.st_dev};
  lua_pushlstring(L, (const char *)v, sizeof v);
  lua_pushboolean(L, older_than(&st.st_mtim, &now, 2) && older_than(&st.st_ctim, &now, 2));
  return 2;
}

/* core.mkdir(path) -> true | nil, message (an existing folder is fine) */
static int l_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (mkdir(path, 0777) != 0 && errno != EEXIST) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.now() -> seconds on a monotonic clock (float) */
static int l_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.sleep(seconds) */
static int l_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  struct timespec ts;
  luaL_argcheck(L, s == s, 1, "not a number"); /* NaN would reach the time_t conversion */
  if (s <= 0)
    return 0;
  if (s > 1e9) /* about 31 years: converting a larger double to time_t may overflow */
    s = 1e9;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
  return 0;
}

/* core.pid() -> this process's id */
static int l_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* core.hostname() -> string */
static int l_hostname(lua_State *L) {
  char name[256];
  if (gethostname(name, sizeof name) != 0)
    name[0] = '\0';
  name[sizeof name - 1] = '\0';
  lua_pushstring(L, name);
  return 1;
}

/* core.username() -> the OS user running tide */
static int l_username(lua_State *L) {
  struct passwd *pw = getpwuid(geteuid());
  if (pw && pw->pw_name)
    lua_pushstring(L, pw->pw_name);
  else
    lua_pushfstring(L, "uid %d", (int)geteuid());
  return 1;
}

/* core.isatty(fd) -> boolean */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* core.random_bytes(n) -> string of n bytes from the kernel (run ids, jitter) */
static int l_random_bytes(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_Buffer b;
  FILE *f;
  char *buf;
  luaL_argcheck(L, n >= 0 && n <= 4096, 1, "between 0 and 4096");
  buf = luaL_buffinitsize(L, &b, (size_t)n); /* may raise: before the FILE exists */
  f = fopen("/dev/urandom", "rb");
  if (!f)
    return luaL_error(L, "/dev/urandom: %s", strerror(errno));
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    return luaL_error(L, "/dev/urandom: short read");
  }
  fclose(f);
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

static const luaL_Reg sys_functions[] = {
    {"listdir", l_listdir},
    {"mkdir", l_mkdir},
    {"isdir", l_isdir},
    {"filestamp", l_filestamp},
    {"now", l_now},
    {"sleep", l_sleep},
    {"pid", l_pid},
    {"hostname", l_hostname},
    {"username", l_username},
    {"isatty", l_isatty},
    {"random_bytes", l_random_bytes},
    {NULL, NULL},
};

void tide_sys_register(lua_State *L) {
  if (luaL_newmetatable(L, TIDE_DIR)) {
    lua_pushcfunction(L, l_dir_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, sys_functions, 0);
}
