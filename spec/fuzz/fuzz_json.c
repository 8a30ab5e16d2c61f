/* fuzz_json.c: libFuzzer target for tide.json (backup manifests and --json are read back
 * through it). decode either returns a value or raises a "json: ..." message; what it returns
 * encodes and decodes back to the same encoding. */
#include "fuzz_lua.h"

static const char *property =
    "local json = require 'tide.json'\n"
    "local ok, v = pcall(json.decode, ...)\n"
    "if not ok then\n"
    "  if tostring(v):find('instruction budget') or tostring(v):find('not enough memory') then error(v, 0) end\n"
    "  assert(type(v) == 'string' and v:match('^json: '), 'unexpected error: ' .. tostring(v))\n"
    "  return\n"
    "end\n"
    "local once = json.encode(v)\n"
    "assert(json.encode(json.decode(once)) == once, 'round trip changed ' .. once)\n";

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  lua_State *L = fuzz_state();
  fuzz_check(L, property, data, size);
  lua_close(L);
  return 0;
}
