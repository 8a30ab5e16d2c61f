/* spool.h: tide.Spool for dump.c's core.dump (see spool.c). */
#ifndef TIDE_SPOOL_H
#define TIDE_SPOOL_H

#include <lua.h>

typedef struct tide_spool tide_spool;

/* Pushes a closed tide.Spool: made before the file exists, so a memory error leaks nothing. */
tide_spool *tide_spool_push(lua_State *L);
/* The spool takes fd (holding the file's lock) and path: spool:close(), __close or __gc
 * removes the file. */
void tide_spool_own(tide_spool *sp, int fd, const char *path);
/* tide.Spool's metatable, core.spool and core.sweep_spools into the table at the top. */
void tide_spool_register(lua_State *L);

#endif
