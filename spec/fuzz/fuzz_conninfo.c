/* fuzz_conninfo.c: libFuzzer target for connection strings: tide_mask_password (argv masking)
 * and tide.config.redact (every printed URL), one finder of secrets in C (conninfo.c). A password
 * placed in a URL or a keyword string, under any name libpq reads as a secret (%70assword is
 * password to it), must be gone from both results, and masking must never change the length. */
#include "fuzz_lua.h"

static const char *property =
    "local data = ...\n"
    "local redact = require('tide.config').redact\n"
    "assert(type(redact(data)) == 'string')\n"
    "-- a password made of the mask's own characters would match the mask: keep those out\n"
    "local pw = data:gsub('[@/?#&=*%s\\'\\\\]', '')\n"
    "if #pw < 6 then return end\n"
    "for _, url in ipairs { 'postgresql://app:' .. pw .. '@db.internal:5432/app',\n"
    "                       'postgres://:' .. pw .. '@h/d?sslmode=require',\n"
    "                       'postgresql://h/d?user=u&password=' .. pw .. '&x=1',\n"
    "                       'host=h password=' .. pw .. ' dbname=d',\n"
    "                       \"host=h password='\" .. pw .. \"' dbname=d\",\n"
    "                       'postgresql://h/d?%70assword=' .. pw,\n"
    "                       'host=h sslpassword=' .. pw .. ' dbname=d' } do\n"
    "  local shown = redact(url)\n"
    "  local rest = url:gsub(pw:gsub('%p', '%%%0'), '', 1)\n"
    "  if not rest:find(pw, 1, true) then\n"
    "    assert(not shown:find(pw, 1, true), 'redact kept the password: ' .. shown)\n"
    "  end\n"
    "end\n";

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  char *copy = malloc(size + 1);
  lua_State *L;
  if (!copy)
    abort();
  memcpy(copy, data, size);
  copy[size] = '\0';
  tide_mask_password(copy);
  if (strlen(copy) != strnlen((const char *)data, size))
    abort();
  free(copy);
  L = fuzz_state();
  fuzz_check(L, property, data, size);
  lua_close(L);
  return 0;
}
