/* check.h: the C unit tests' one assertion. CHECK(cond, fmt, ...) counts a failure and prints
 * "not ok: file:line: message" without stopping, so one run reports every broken case; main
 * returns `failures ? 1 : 0`. */
#ifndef TIDE_CHECK_H
#define TIDE_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      failures++;                                                                                  \
      printf("not ok: %s:%d: ", __FILE__, __LINE__);                                               \
      printf(__VA_ARGS__);                                                                         \
      printf("\n");                                                                                \
    }                                                                                              \
  } while (0)

#endif
