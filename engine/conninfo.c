/* conninfo.c: connection strings, the one place that reads them and the one place that finds
 * their secrets. tide_conninfo_parse is how tide reads a URL, keyword string or bare database
 * name (the connection itself is libpq's, in conn.c; pg_dump's copy of it, in dump.c);
 * tide_conninfo_secrets finds the bytes that hold a secret, and everything that hides one is
 * built on it: argv masking (tide_mask_password), what tide prints, logs and stores of a URL
 * (tide_redact, core.redact, config.redact in Lua) and libpq messages that quote a connection
 * string (tide_redact_quoted). Part of tide.core: core.redact. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <libpq-fe.h>
#include <lua.h>

#include "tide.h"
#include "util.h"

/* ---- reading a connection string -------------------------------------------------------- */

PQconninfoOption *tide_conninfo_parse(const char *conninfo, tide_error *err) {
  PQconninfoOption *opts;
  char *perr = NULL, *quoted = NULL;
  /* `--url app`: a database name, as libpq reads it */
  if (conninfo[0] && !tide_conninfo_is_conninfo(conninfo)) {
    char *p;
    if (!(quoted = malloc(2 * strlen(conninfo) + 16))) {
      tide_error_set(err, NULL, "out of memory");
      return NULL;
    }
    p = quoted + strlen(strcpy(quoted, "dbname='"));
    for (const char *v = conninfo; *v; v++) {
      if (*v == '\'' || *v == '\\')
        *p++ = '\\';
      *p++ = *v;
    }
    strcpy(p, "'");
    conninfo = quoted;
  }
  opts = PQconninfoParse(conninfo, &perr);
  free(quoted);
  /* libpq's message may quote the string: do not repeat it, it can carry a password */
  if (!opts)
    tide_error_set(err, NULL, perr ? "the connection string is not valid" : "out of memory");
  PQfreemem(perr);
  return opts;
}

void tide_conninfo_free(PQconninfoOption *opts) {
  if (!opts)
    return;
  for (PQconninfoOption *o = opts; o->keyword; o++) /* libpq's copies of the secrets too */
    if (o->val && tide_conninfo_is_secret(o->keyword))
      memset(o->val, 0, strlen(o->val));
  PQconninfoFree(opts);
}

/* Whether name (len bytes) is an environment variable libpq reads for a connection option:
 * every one its option table names (PGHOST ... PGPASSWORD, PGPASSFILE ...), read from libpq. */
int tide_conninfo_is_variable(const char *name, size_t len) {
  static char names[1024]; /* NUL-separated, ending with an empty name */
  static int ready;
  if (!ready) {
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse("", &perr);
    size_t used = 0;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
      size_t n = o->envvar ? strlen(o->envvar) + 1 : 0;
      if (n && used + n + 1 <= sizeof names) {
        memcpy(names + used, o->envvar, n);
        used += n;
      }
    }
    names[used] = '\0';
    PQconninfoFree(opts);
    PQfreemem(perr);
    ready = 1;
  }
  for (const char *p = names; *p; p += strlen(p) + 1)
    if (strlen(p) == len && strncmp(p, name, len) == 0)
      return 1;
  return 0;
}

/* ---- the secrets of a connection string ------------------------------------------------- */

/* The keywords libpq itself marks as secret (dispchar "*": password, sslpassword ...), read once
 * from PQconninfoParse's option table, so a keyword a newer libpq adds is hidden too. */
static const char *secret_names[8];

static void load_secret_names(void) {
  static char store[256];
  static int ready;
  size_t used = 0, n = 0;
  char *perr = NULL;
  PQconninfoOption *opts;
  if (ready)
    return;
  ready = 1;
  opts = PQconninfoParse("", &perr); /* the whole option table, nothing read from outside */
  for (PQconninfoOption *o = opts; o && o->keyword; o++) {
    size_t len = strlen(o->keyword) + 1;
    if (!o->dispchar || !strchr(o->dispchar, '*') ||
        n + 1 >= sizeof secret_names / sizeof *secret_names || used + len > sizeof store)
      continue;
    memcpy(store + used, o->keyword, len);
    secret_names[n++] = store + used;
    used += len;
  }
  PQconninfoFree(opts);
  PQfreemem(perr);
  if (n == 0) { /* libpq out of memory: the two it had when this was written */
    secret_names[n++] = "password";
    secret_names[n++] = "sslpassword";
  }
  secret_names[n] = NULL;
}

int tide_conninfo_is_secret(const char *keyword) {
  load_secret_names();
  for (size_t i = 0; secret_names[i]; i++)
    if (strcmp(keyword, secret_names[i]) == 0)
      return 1;
  return 0;
}

static void mark(unsigned char *marks, size_t from, size_t to) {
  if (to > from)
    memset(marks + from, 1, to - from);
}

/* Whether [a, b) percent-decodes (as libpq decodes a URI's parameter names) to a secret keyword. */
static int secret_key(const char *a, const char *b) {
  char key[64];
  size_t n = 0;
  for (const char *p = a; p < b; p++) {
    int c = (unsigned char)*p;
    if (c == '%' && b - p >= 3 && tide_hex_digit(p[1]) >= 0 && tide_hex_digit(p[2]) >= 0) {
      c = tide_hex_digit(p[1]) * 16 + tide_hex_digit(p[2]);
      p += 2;
    }
    if (n + 1 >= sizeof key || c == 0)
      return 0;
    key[n++] = (char)c;
  }
  key[n] = '\0';
  return tide_conninfo_is_secret(key);
}

/* URIs (anywhere in s, also inside a keyword string's value): the userinfo's password, which
 * libpq ends at the first '@' or '/', and every query parameter whose decoded name is secret,
 * up to the next '&' (libpq does not stop at spaces or '#'). */
static void mark_uris(const char *s, size_t n, unsigned char *marks) {
  for (const char *p = strstr(s, "://"); p; p = strstr(p + 3, "://")) {
    const char *user = p + 3, *end = user + strcspn(user, "@/"), *colon, *q;
    if (*end == '@' && (colon = memchr(user, ':', (size_t)(end - user))))
      mark(marks, (size_t)(colon + 1 - s), (size_t)(end - s));
    if (!(q = strchr(user, '?')))
      continue;
    for (const char *k = q + 1; k < s + n;) {
      const char *amp = k + strcspn(k, "&"), *eq = memchr(k, '=', (size_t)(amp - k));
      if (eq && secret_key(k, eq))
        mark(marks, (size_t)(eq + 1 - s), (size_t)(amp - s));
      k = *amp ? amp + 1 : amp;
    }
  }
}

/* Where a keyword string's value that starts at v ends, as libpq's conninfo_parse reads it: a
 * quoted value runs to the closing quote ('\' escaping the next character), an unquoted one to
 * whitespace ('\' escaping the next character, a space included). */
static const char *value_end(const char *v) {
  const char *end;
  if (*v == '\'') {
    for (end = v + 1; *end && *end != '\''; end++)
      if (*end == '\\' && end[1])
        end++;
    return *end ? end + 1 : end;
  }
  for (end = v; *end && !isspace((unsigned char)*end); end++)
    if (*end == '\\' && end[1])
      end++;
  return end;
}

/* A keyword string, token by token as libpq reads it (keyword, blanks, '=', blanks, value),
 * until it stops making sense to libpq. */
static void mark_keywords(const char *s, unsigned char *marks) {
  const char *p = s;
  for (;;) {
    const char *name, *name_end, *v, *end;
    while (isspace((unsigned char)*p))
      p++;
    if (!*p)
      return;
    name = p;
    while (*p && *p != '=' && !isspace((unsigned char)*p))
      p++;
    name_end = p;
    while (isspace((unsigned char)*p))
      p++;
    if (*p != '=')
      return;
    p++;
    while (isspace((unsigned char)*p))
      p++;
    v = p;
    end = value_end(v);
    if (name_end - name < 64) {
      char key[64];
      memcpy(key, name, (size_t)(name_end - name));
      key[name_end - name] = '\0';
      if (tide_conninfo_is_secret(key))
        mark(marks, (size_t)(v - s), (size_t)(end - s));
    }
    p = end;
  }
}

/* Belt and braces for text libpq would not accept (its own parse errors quote such text): any
 * `secret = value` wherever it stands, the value read as a URI parameter after a URI's '?', as
 * a keyword string's value elsewhere. */
static void mark_patterns(const char *s, unsigned char *marks) {
  const char *scheme = strstr(s, "://"), *query = scheme ? strchr(scheme + 3, '?') : NULL;
  load_secret_names();
  for (size_t i = 0; secret_names[i]; i++) {
    size_t len = strlen(secret_names[i]);
    for (const char *kw = strstr(s, secret_names[i]); kw; kw = strstr(kw + 1, secret_names[i])) {
      const char *v = kw + len, *end;
      v += strspn(v, " \t");
      if (*v != '=')
        continue;
      v++;
      v += strspn(v, " \t");
      end = query && kw > query ? v + strcspn(v, "&") : value_end(v);
      mark(marks, (size_t)(v - s), (size_t)(end - s));
    }
  }
}

int tide_conninfo_is_conninfo(const char *s) {
  return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0 ||
         strchr(s, '=') != NULL;
}

/* The proof: what libpq parses from the text with the marked bytes overwritten must hold no
 * secret but the overwriting. When it does (a spelling the passes above do not know), the
 * whole string is marked: hiding too much is the safe way to be wrong. */
static void check_with_libpq(const char *s, size_t n, size_t from, unsigned char *marks) {
  char *masked, *perr = NULL;
  PQconninfoOption *opts;
  if (!tide_conninfo_is_conninfo(s + from) || !(masked = malloc(n - from + 1))) {
    return;
  }
  for (size_t i = from; i < n; i++)
    masked[i - from] = marks[i] ? 'x' : s[i];
  masked[n - from] = '\0';
  opts = PQconninfoParse(masked, &perr);
  for (PQconninfoOption *o = opts; o && o->keyword; o++) {
    if (!o->val || !o->val[0] || !tide_conninfo_is_secret(o->keyword))
      continue;
    if (strspn(o->val, "x") != strlen(o->val))
      mark(marks, from, n);
  }
  PQconninfoFree(opts);
  PQfreemem(perr);
  free(masked);
}

void tide_conninfo_secrets(const char *s, unsigned char *marks) {
  size_t n = strlen(s);
  const char *eq;
  memset(marks, 0, n);
  mark_uris(s, n, marks);
  mark_keywords(s, marks);
  mark_patterns(s, marks);
  check_with_libpq(s, n, 0, marks);
  /* an option's value, `--url=postgresql://...`, is checked on its own too */
  if (s[0] == '-' && (eq = strchr(s, '=')))
    check_with_libpq(s, n, (size_t)(eq + 1 - s), marks);
}

/* Overwrites every secret of a connection string in place with 'x', keeping the length, so `ps`
 * and /proc/PID/cmdline stop showing it once tide runs. The caller has already copied the
 * argument into Lua. Without memory to work in, the whole argument goes. */
void tide_mask_password(char *arg) {
  size_t n = strlen(arg);
  unsigned char *marks = malloc(n ? n : 1);
  if (!marks) {
    memset(arg, 'x', n);
    return;
  }
  tide_conninfo_secrets(arg, marks);
  for (size_t i = 0; i < n; i++)
    if (marks[i])
      arg[i] = 'x';
  free(marks);
}

/* Writes the n bytes of s to out (room for 2n + 5 bytes, terminated) with each run of marked
 * bytes replaced by "****"; marks has n bytes. */
static size_t write_redacted(const char *s, size_t n, const unsigned char *marks, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (!marks[i]) {
      out[o++] = s[i];
    } else if (i == 0 || !marks[i - 1]) {
      memcpy(out + o, "****", 4);
      o += 4;
    }
  }
  out[o] = '\0';
  return o;
}

char *tide_redact(const char *s) {
  size_t n = strlen(s);
  unsigned char *marks = malloc(n ? n : 1);
  char *out = malloc(2 * n + 5);
  if (marks && out) {
    tide_conninfo_secrets(s, marks);
    write_redacted(s, n, marks, out);
  }
  free(marks);
  if (!marks) {
    free(out);
    return NULL;
  }
  return out;
}

/* core.redact(text) -> text with every secret of a connection string replaced by ****: what
 * tide prints of a URL. Hiding works on what libpq parses (see tide_conninfo_secrets). A NUL
 * byte (possible in a Lua string only) is read as an ordinary character, so that a secret
 * holding one is hidden whole. The buffers are userdata: a memory error leaks nothing. */
static int l_redact(lua_State *L) {
  size_t n, o;
  const char *s = luaL_checklstring(L, 1, &n);
  char *text = lua_newuserdatauv(L, n + 1, 0);
  unsigned char *marks = lua_newuserdatauv(L, n ? n : 1, 0);
  char *out = lua_newuserdatauv(L, 2 * n + 5, 0);
  for (size_t i = 0; i < n; i++)
    text[i] = s[i] ? s[i] : '\1';
  text[n] = '\0';
  tide_conninfo_secrets(text, marks);
  o = write_redacted(s, n, marks, out);
  lua_pushlstring(L, out, o);
  return 1;
}

/* libpq quotes a value it cannot percent-decode in its parse error ("invalid percent-encoded
 * token: "hunter2%zz""), the password included. Only parse errors quote the connection
 * string, and hiding a short password everywhere would garble the others, so a connection
 * string that parses leaves the message alone. */
void tide_redact_quoted(const char *conninfo, char *message, size_t size) {
  size_t n, len = strlen(message), o = 0;
  unsigned char *marks = NULL;
  char *out = NULL;
  tide_error ignored;
  PQconninfoOption *opts;
  if (!conninfo || !conninfo[0])
    return;
  if ((opts = tide_conninfo_parse(conninfo, &ignored))) {
    tide_conninfo_free(opts);
    return;
  }
  n = strlen(conninfo);
  if (!(marks = malloc(n)) || !(out = malloc(4 * len + 1))) {
    snprintf(message, size, "invalid connection string");
    goto cleanup;
  }
  tide_conninfo_secrets(conninfo, marks);
  /* every secret of conninfo (a run of marked bytes), wherever message quotes it, is **** */
  for (size_t i = 0; i < len;) {
    size_t quoted = 0;
    for (size_t j = 0; j < n && !quoted; j++) {
      size_t k = j;
      if (!marks[j] || (j > 0 && marks[j - 1]))
        continue;
      while (k < n && marks[k])
        k++;
      if (k - j <= len - i && memcmp(message + i, conninfo + j, k - j) == 0)
        quoted = k - j;
      j = k;
    }
    if (quoted) {
      memcpy(out + o, "****", 4);
      o += 4;
      i += quoted;
    } else {
      out[o++] = message[i++];
    }
  }
  out[o] = '\0';
  snprintf(message, size, "%s", out);
cleanup:
  free(marks);
  free(out);
}

void tide_conninfo_register(lua_State *L) {
  lua_pushcfunction(L, l_redact);
  lua_setfield(L, -2, "redact");
}
