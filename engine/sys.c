/* sys.c: the operating-system facts and waits Lua cannot reach on its own: directory listing,
 * monotonic time, sleeping, process and user identity, terminals, signals. Part of tide.core. */
#include <dirent.h>
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "tide.h"
#include "util.h"

#define TIDE_DIR "tide.Dir"
#define TIDE_SIGNALS "tide.SignalGuard"

/* ---- the process ------------------------------------------------------------------------ */

void tide_no_core_dumps(void) {
  struct rlimit none = {0, 0};
  /* a core file of tide would hold the database password, AWS keys, bearer tokens */
  setrlimit(RLIMIT_CORE, &none);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

volatile sig_atomic_t tide_interrupted;

static int catching;
static struct sigaction saved_int, saved_term;

static void on_signal(int sig) {
  tide_interrupted = sig;
}

void tide_signals_catch(void) {
  struct sigaction sa;
  if (catching++)
    return;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: a blocked poll or read returns EINTR at once */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &saved_int);
  sigaction(SIGTERM, &sa, &saved_term);
}

void tide_signals_release(void) {
  if (catching == 0 || --catching)
    return;
  sigaction(SIGINT, &saved_int, NULL);
  sigaction(SIGTERM, &saved_term, NULL);
}

const char *tide_signal_name(int sig) {
  return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

/* core.catch_signals() -> guard: until the guard is closed (it is to-be-closed), SIGINT and
 * SIGTERM only set a flag that the backup's C loops watch: they stop their children, and the
 * caller removes what it made, before tide exits. Nested guards are counted. */
static int l_catch_signals(lua_State *L) {
  int *active = lua_newuserdatauv(L, sizeof *active, 0);
  *active = 0;
  luaL_setmetatable(L, TIDE_SIGNALS);
  tide_signals_catch();
  *active = 1;
  return 1;
}

/* guard:close(), and __gc: idempotent, never raises */
static int l_signals_release(lua_State *L) {
  int *active = luaL_checkudata(L, 1, TIDE_SIGNALS);
  if (*active)
    tide_signals_release();
  *active = 0;
  return 0;
}

/* __close: as close, and then, leaving normally while a signal arrived that no C loop saw (it
 * came between two of them), raises it as the tide.Error {kind = "sigterm" | "sigint"} the
 * loops would have: once the default action is back, nothing else would act on it. */
static int l_signals_close(lua_State *L) {
  l_signals_release(L);
  if (tide_interrupted && !catching && lua_isnoneornil(L, 2)) {
    int sig = tide_interrupted;
    lua_pushfstring(L, "interrupted by %s", tide_signal_name(sig));
    tide_error_push(L, sig == SIGINT ? "sigint" : "sigterm", lua_tostring(L, -1));
    return lua_error(L);
  }
  return 0;
}

/* core.interrupted() -> "SIGTERM" | "SIGINT" | nil: the signal that asked tide to stop */
static int l_interrupted(lua_State *L) {
  if (!tide_interrupted)
    return 0;
  lua_pushstring(L, tide_signal_name(tide_interrupted));
  return 1;
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

/* Raises the tide.Error {kind = "io", message = "path: reason", path = path} of a failed call. */
static int raise_io(lua_State *L, const char *path, int e) {
  lua_pushfstring(L, "%s: %s", path, strerror(e));
  tide_error_push(L, "io", lua_tostring(L, -1));
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  return lua_error(L);
}

/* core.listdir(path) -> sorted array of names (no "." or "..") | raises tide.Error (kind "io")
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
  if (!(*box = opendir(path)))
    return raise_io(L, path, errno);
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
    return raise_io(L, path, failed);
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

/* core.filestamp(path) -> stamp, settled | raises tide.Error (kind "io")
 * The stamp is an opaque string that changes whenever the file's content can have changed: size,
 * mtime, ctime, inode and device. ctime is set by the kernel on every write or rename, and
 * neither tar nor touch can set it back. `settled` says both times are over two seconds old:
 * a write in the same timestamp tick as the one stamped could otherwise keep the stamp as it
 * was (git's "racily clean" entries), so only settled stamps may vouch for cached content. */
static int l_filestamp(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  struct timespec now;
  if (stat(path, &st) != 0)
    return raise_io(L, path, errno);
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

/* core.mkdir(path) -> true | raises tide.Error (kind "io"); an existing folder is fine */
static int l_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (mkdir(path, 0777) != 0 && errno != EEXIST)
    return raise_io(L, path, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.now() -> seconds on a monotonic clock (float) */
static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)tide_now());
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
    return raise_io(L, "/dev/urandom", errno);
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    return tide_error_raisef(L, "io", "/dev/urandom: short read");
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
    {"catch_signals", l_catch_signals},
    {"interrupted", l_interrupted},
    {NULL, NULL},
};

void tide_sys_register(lua_State *L) {
  if (luaL_newmetatable(L, TIDE_DIR)) {
    lua_pushcfunction(L, l_dir_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, TIDE_SIGNALS)) {
    lua_pushcfunction(L, l_signals_release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_signals_close);
    lua_setfield(L, -2, "__close");
    lua_newtable(L);
    lua_pushcfunction(L, l_signals_release);
    lua_setfield(L, -2, "close");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, sys_functions, 0);
}
