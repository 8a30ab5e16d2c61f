/* test_conn.c: the plain C layer of conn.c, without Lua, against the sandbox server
 * (PGHOST/PGPORT/PGUSER/PGPASSFILE from tools/pg-sandbox). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "check.h"
#include "tide.h"

static void connects_with_libpq_defaults(void) {
  tide_error err = {{0}, {0}};
  PGconn *pg = tide_pg_connect("", NULL, &err);
  CHECK(pg != NULL, "connect with PG* defaults failed: %s", err.message);
  if (pg) {
    PGresult *res = PQexec(pg, "SELECT current_setting('application_name')");
    CHECK(PQresultStatus(res) == PGRES_TUPLES_OK, "query failed");
    CHECK(strcmp(PQgetvalue(res, 0, 0), "tide") == 0, "fallback_application_name: got %s",
          PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(pg);
  }
}

static void reports_a_refused_connection_without_the_password(void) {
  tide_error err = {{0}, {0}};
  PGconn *pg =
      tide_pg_connect("postgresql://tide:hunter2secret@127.0.0.1:1/postgres", "spec", &err);
  CHECK(pg == NULL, "connected to port 1");
  CHECK(strcmp(err.sqlstate, "08006") == 0, "sqlstate %s", err.sqlstate);
  CHECK(strstr(err.message, "127.0.0.1") != NULL, "message names the host: %s", err.message);
  CHECK(strstr(err.message, "hunter2") == NULL, "message shows the password: %s", err.message);
  CHECK(strchr(err.message, '\n') == NULL, "message is one line: %s", err.message);
}

static void reports_a_wrong_password(void) {
  tide_error err = {{0}, {0}};
  char url[256];
  snprintf(url, sizeof url, "postgresql://tide:wrong-hunter2@%s:%s/postgres?passfile=/dev/null",
           getenv("PGHOST"), getenv("PGPORT"));
  PGconn *pg = tide_pg_connect(url, NULL, &err);
  CHECK(pg == NULL, "connected with a wrong password");
  CHECK(strstr(err.message, "password authentication failed") != NULL, "message: %s", err.message);
  CHECK(strstr(err.message, "hunter2") == NULL, "message shows the password: %s", err.message);
}

int main(void) {
  if (!getenv("PGPORT")) {
    printf("not ok: PGPORT is not set: run through tools/test (it starts the sandbox)\n");
    return 1;
  }
  connects_with_libpq_defaults();
  reports_a_refused_connection_without_the_password();
  reports_a_wrong_password();
  printf("%d failed\n", failures);
  return failures ? 1 : 0;
}
