/* test_mask_password.c: tide_mask_password (sys.c), which hides passwords in argv from `ps`
 * and /proc/PID/cmdline. Each case is an argument and what must be left of it, following the
 * way libpq itself reads URLs (fe-connect.c, conninfo_uri_parse_options/_params) and keyword
 * strings (conninfo_parse). No server needed. */
#include <stdio.h>
#include <string.h>

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

int main(void) {
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
  printf("%d failed\n", failures);
  return failures ? 1 : 0;
}
