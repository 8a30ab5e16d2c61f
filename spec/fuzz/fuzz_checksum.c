/* fuzz_checksum.c: libFuzzer target for checksum algorithm 1 (core.checksum, core.c). The C
 * normalisation must agree byte for byte with its definition, written here as the three Lua
 * substitutions it replaced: a stored checksum must never depend on which one computed it. */
#include "fuzz_lua.h"

static const char *property =
    "local source = ...\n"
    "local core = require 'tide.core'\n"
    "local text = source:gsub('\\r\\n?', '\\n'):gsub('[ \\t]+\\n', '\\n')\n"
    "text = text:match('^(.-)[ \\t\\n]*$')\n"
    "assert(core.checksum(source) == core.sha256(text), 'normalisation differs')\n";

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  lua_State *L = fuzz_state();
  fuzz_check(L, property, data, size);
  lua_close(L);
  return 0;
}
