/* fuzz_revision.c: libFuzzer target for the revision loader and validator
 * (lua/tide/revisions.lua). Whatever a file contains, loading it either yields a valid revision
 * or raises a tide.Error of kind "load" naming the file: never another error, which tide would
 * report as an internal error (exit 70). */
#include <stdio.h>
#include <unistd.h>

#include "fuzz_lua.h"

static const char *property =
    "local path = ...\n"
    "local revisions = require 'tide.revisions'\n"
    "revisions.limits = { instructions = 1000000, memory_mb = 16 } -- within the harness's own\n"
    "local errors = require 'tide.errors'\n"
    "local ok, rev = pcall(revisions.load_file, path)\n"
    "if ok then\n"
    "  assert(type(rev.revision) == 'string' and rev.revision:match('^[%w_.-]+$'), 'bad id')\n"
    "  assert(type(rev.upgrade) == 'function' and type(rev.message) == 'string', 'bad fields')\n"
    "  assert(#rev.checksum == 64, 'bad checksum')\n"
    "  for _, p in ipairs(rev.parents) do assert(type(p) == 'string', 'bad parent') end\n"
    "elseif tostring(rev):find('instruction budget') or tostring(rev):find('not enough memory') then\n"
    "  error(tostring(rev), 0)\n"
    "else\n"
    "  assert(errors.is_error(rev), 'not a tide.Error: ' .. tostring(rev))\n"
    "  assert(rev.kind == 'load', 'kind ' .. tostring(rev.kind))\n"
    "  assert(rev.message:find(path, 1, true), 'message does not name the file: ' .. rev.message)\n"
    "end\n";

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  char path[64];
  FILE *f;
  lua_State *L;
  snprintf(path, sizeof path, "/tmp/tide-fuzz-%d.lua", (int)getpid());
  f = fopen(path, "wb");
  if (!f)
    abort();
  fwrite(data, 1, size, f);
  fclose(f);
  L = fuzz_state();
  fuzz_check(L, property, (const unsigned char *)path, strlen(path));
  lua_close(L);
  return 0;
}
