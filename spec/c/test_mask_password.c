/* test_mask_password.c: tide_mask_password and tide_redact (conninfo.c), which hide the secrets of
 * connection strings from `ps`, /proc/PID/cmdline and everything tide prints. Each case is an
 * argument and what must be left of it, following the way libpq itself reads URLs
 * (fe-connect.c, conninfo_uri_parse_options/_params) and keyword strings (conninfo_parse), and
 * checked against libpq's own PQconninfoParse. No server needed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "tide.h"

static int failures;

static void masks(const char *arg, const char *want) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", arg);
  tide_mask_password(buf);
  if (strcmp(buf, want) != 0) {
    failures++;
    printf("not ok: mask(%s)\n  got:  %s\n  want: %s\n", arg, buf, want);
  }
}

static void redacts(const char *arg, const char *want) {
  char *got = tide_redact(arg);
  if (!got || strcmp(got, want) != 0) {
    failures++;
    printf("not ok: redact(%s)\n  got:  %s\n  want: %s\n", arg, got ? got : "(null)", want);
  }
  free(got);
}

/* Every keyword libpq marks secret is one tide hides: the list comes from libpq, not from here. */
static void knows_libpq_secrets(void) {
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse("", &perr);
  int secrets = 0;
  for (PQconninfoOption *o = opts; o && o->keyword; o++) {
    int secret = o->dispchar && strchr(o->dispchar, '*');
    secrets += secret;
    if (secret != tide_conninfo_is_secret(o->keyword)) {
      failures++;
      printf("not ok: %s is %sa secret to libpq\n", o->keyword, secret ? "" : "not ");
    }
  }
  if (secrets < 2) {
    failures++;
    printf("not ok: libpq names %d secret keywords (password and sslpassword at least)\n", secrets);
  }
  PQconninfoFree(opts);
  PQfreemem(perr);
}

int main(void) {
  knows_libpq_secrets();
  /* URL userinfo: the password runs from the first ':' to the '@' */
  masks("postgresql://app:s3cret@db:5432/app", "postgresql://app:xxxxxx@db:5432/app");
  masks("postgres://:s3cret@h/d", "postgres://:xxxxxx@h/d");
  masks("postgresql://app@db:5432/app", "postgresql://app@db:5432/app");
  masks("--url=postgresql://a:b%40c@h/d", "--url=postgresql://a:xxxxx@h/d");
  /* URL query: a value runs to the next '&' (libpq does not stop at spaces or '#') */
  masks("postgresql://h/d?password=abc&sslmode=require",
        "postgresql://h/d?password=xxx&sslmode=require");
  masks("postgresql://h/d?password=ab cd&sslmode=require",
        "postgresql://h/d?password=xxxxx&sslmode=require");
  masks("postgresql://h/d?password=ab#cd", "postgresql://h/d?password=xxxxx");
  /* several passwords in one argument */
  masks("postgresql://u:one@h/d?sslpassword=two&password=three",
        "postgresql://u:xxx@h/d?sslpassword=xxx&password=xxxxx");
  /* keyword strings: an unquoted value runs to whitespace, '&' and '#' are ordinary characters */
  masks("host=h password=abc&def dbname=d", "host=h password=xxxxxxx dbname=d");
  masks("host=h password=ab#cd dbname=d", "host=h password=xxxxx dbname=d");
  masks("password = s3cret host=h", "password = xxxxxx host=h");
  /* ... and a backslash escapes the next character, a space included */
  masks("password=ab\\ cd host=h", "password=xxxxxx host=h");
  /* quoted values hold spaces and \' */
  masks("password='a b\\' c' host=h", "password=xxxxxxxxx host=h");
  masks("password='unterminated", "password=xxxxxxxxxxxxx");
  masks("sslpassword=k3y host=h", "sslpassword=xxx host=h");
  /* libpq skips the blanks after '=', so this password is "dbname=d" */
  masks("host=h password= dbname=d", "host=h password= xxxxxxxx");
  /* a keyword string that follows a URL in the same argument is still a keyword string */
  masks("dbname=postgresql://u:pw@h/d password=ab&cd",
        "dbname=postgresql://u:xx@h/d password=xxxxx");
  /* libpq percent-decodes a URI parameter's name: %70assword is password to it */
  masks("postgresql://h/d?%70assword=s3cret", "postgresql://h/d?%70assword=xxxxxx");
  masks("postgresql://h/d?ssl%70assword=k3y&user=u", "postgresql://h/d?ssl%70assword=xxx&user=u");
  masks("--url=postgresql://h/d?%70assword=s3cret", "--url=postgresql://h/d?%70assword=xxxxxx");
  /* ... and the value, which is hidden raw: its encoded and decoded forms both go */
  masks("postgresql://u:%73%33cret@h/d", "postgresql://u:xxxxxxxxxx@h/d");
  /* nothing else is touched */
  masks("upgrade", "upgrade");
  masks("postgresql://app@db:5432/app?sslmode=require",
        "postgresql://app@db:5432/app?sslmode=require");

  redacts("postgresql://app:s3cret@db:5432/app", "postgresql://app:****@db:5432/app");
  redacts("postgresql://h/d?%70assword=s3cret&sslmode=require",
          "postgresql://h/d?%70assword=****&sslmode=require");
  redacts("host=h password='a b' sslpassword=k dbname=d",
          "host=h password=**** sslpassword=**** dbname=d");
  redacts("postgresql://app@db/app", "postgresql://app@db/app");
  redacts("", "");
  printf("%d failed\n", failures);
  return failures ? 1 : 0;
}
