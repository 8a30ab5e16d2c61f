/* test_sigv4.c: engine/sigv4.c against every case of AWS's SigV4 test suite
 * (spec/fixtures/sigv4-test-suite, header signing: canonical request, string to sign, signature
 * and Authorization header) and against the S3 worked examples of the S3 API reference.
 * Run from the source directory (CTest does). Exit status 0 only when every check passes. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tide.h"

#define SUITE "spec/fixtures/sigv4-test-suite"

static int failures, checks;

static void check_str(const char *what, const char *name, const char *got, const char *want) {
  checks++;
  if (!got || !want || strcmp(got, want) != 0) {
    failures++;
    fprintf(stderr, "FAIL %s: %s\n--- want\n%s\n--- got\n%s\n", name, what, want ? want : "(null)",
            got ? got : "(null)");
  }
}

static char *slurp(const char *dir, const char *file) {
  char path[1024];
  FILE *f;
  char *buf;
  long n;
  snprintf(path, sizeof path, "%s/%s", dir, file);
  if (!(f = fopen(path, "rb")))
    return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  if (buf)
    buf[n] = '\0';
  fclose(f);
  return buf;
}

/* The value of "key": "..." or "key": true/false in a flat-enough JSON text (context.json). */
static int json_field(const char *json, const char *key, char *out, size_t outsz) {
  char pat[128];
  const char *p, *q;
  snprintf(pat, sizeof pat, "\"%s\"", key);
  if (!(p = strstr(json, pat)))
    return 0;
  p += strlen(pat);
  while (*p == ' ' || *p == ':' || *p == '\n')
    p++;
  if (*p == '"') {
    q = strchr(++p, '"');
  } else {
    q = p;
    while (*q && *q != ',' && *q != '\n' && *q != '}')
      q++;
  }
  if (!q || (size_t)(q - p) >= outsz)
    return 0;
  memcpy(out, p, (size_t)(q - p));
  out[q - p] = '\0';
  return 1;
}

typedef struct parsed {
  char method[16];
  char *path, *query;
  tide_sigv4_header headers[32];
  size_t nheaders;
  char *storage; /* owns the strings above */
  const char *body;
  size_t body_len;
} parsed;

/* request.txt: "METHOD target HTTP/1.1", headers (a line starting with whitespace continues the
 * previous value), a blank line, the body. */
static int parse_request(char *text, parsed *r) {
  char *line = text, *next, *sp;
  int first = 1;
  memset(r, 0, sizeof *r);
  r->storage = text;
  while (line) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    if (first) {
      char *target;
      first = 0;
      sp = strchr(line, ' ');
      if (!sp)
        return -1;
      *sp = '\0';
      snprintf(r->method, sizeof r->method, "%s", line);
      target = sp + 1;
      sp = strrchr(target, ' ');
      if (!sp)
        return -1;
      *sp = '\0';
      r->path = target;
      if ((sp = strchr(target, '?'))) {
        *sp = '\0';
        r->query = sp + 1;
      }
    } else if (*line == '\0') {
      r->body = next ? next : "";
      r->body_len = strlen(r->body);
      return 0;
    } else if ((*line == ' ' || *line == '\t') && r->nheaders) {
      /* folded continuation: glue it onto the previous value in place (the text is ours) */
      char *prev = (char *)r->headers[r->nheaders - 1].value;
      size_t plen = strlen(prev);
      prev[plen] = '\n'; /* the NUL we wrote over the newline: whitespace again */
      (void)plen;
    } else {
      char *colon = strchr(line, ':');
      if (!colon || r->nheaders == 32)
        return -1;
      *colon = '\0';
      r->headers[r->nheaders].name = line;
      r->headers[r->nheaders].value = colon + 1;
      r->nheaders++;
    }
    line = next;
  }
  r->body = "";
  return 0;
}

static void trim_trailing_newlines(char *s) {
  size_t n = s ? strlen(s) : 0;
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
    s[--n] = '\0';
}

static void run_case(const char *name) {
  char dir[512], ak[128], sk[128], token[1024], region[64], service[64], ts[64], normalize[16],
      sign_body[16], omit[16] = "false", amz_date[17], payload[65];
  char *context, *request, *want_creq, *want_sts, *want_sig, *signed_req;
  parsed r;
  tide_sigv4_header headers[40];
  size_t nh = 0;
  tide_sigv4_request req;
  tide_sigv4_credentials cred;
  tide_sigv4_result res;
  tide_error err = {0};
  int has_token;

  snprintf(dir, sizeof dir, "%s/%s", SUITE, name);
  context = slurp(dir, "context.json");
  request = slurp(dir, "request.txt");
  want_creq = slurp(dir, "header-canonical-request.txt");
  want_sts = slurp(dir, "header-string-to-sign.txt");
  want_sig = slurp(dir, "header-signature.txt");
  signed_req = slurp(dir, "header-signed-request.txt");
  checks++;
  if (!context || !request || !want_creq || !want_sts || !want_sig || !signed_req ||
      !json_field(context, "access_key_id", ak, sizeof ak) ||
      !json_field(context, "secret_access_key", sk, sizeof sk) ||
      !json_field(context, "region", region, sizeof region) ||
      !json_field(context, "service", service, sizeof service) ||
      !json_field(context, "timestamp", ts, sizeof ts) ||
      !json_field(context, "normalize", normalize, sizeof normalize) ||
      !json_field(context, "sign_body", sign_body, sizeof sign_body) ||
      parse_request(request, &r) != 0) {
    failures++;
    fprintf(stderr, "FAIL %s: cannot read the case\n", name);
    goto done;
  }
  has_token = json_field(context, "token", token, sizeof token);
  json_field(context, "omit_session_token", omit, sizeof omit);
  /* 2015-08-30T12:36:00Z -> 20150830T123600Z */
  snprintf(amz_date, sizeof amz_date, "%.4s%.2s%.2sT%.2s%.2s%.2sZ", ts, ts + 5, ts + 8, ts + 11,
           ts + 14, ts + 17);
  tide_sigv4_sha256_hex(r.body, r.body_len, payload);

  for (size_t i = 0; i < r.nheaders; i++)
    headers[nh++] = r.headers[i];
  headers[nh++] = (tide_sigv4_header){"X-Amz-Date", amz_date};
  if (strcmp(sign_body, "true") == 0)
    headers[nh++] = (tide_sigv4_header){"x-amz-content-sha256", payload};
  if (has_token && strcmp(omit, "true") != 0)
    headers[nh++] = (tide_sigv4_header){"X-Amz-Security-Token", token};

  req = (tide_sigv4_request){.method = r.method,
                             .path = r.path,
                             .query = r.query,
                             .headers = headers,
                             .nheaders = nh,
                             .payload_hash = payload,
                             .amz_date = amz_date,
                             .normalize_path = strcmp(normalize, "true") == 0};
  cred = (tide_sigv4_credentials){ak, sk, region, service};
  if (tide_sigv4_sign(&req, &cred, &res, &err) != 0) {
    checks++;
    failures++;
    fprintf(stderr, "FAIL %s: %s\n", name, err.message);
    goto done;
  }
  trim_trailing_newlines(want_creq);
  trim_trailing_newlines(want_sts);
  trim_trailing_newlines(want_sig);
  check_str("canonical request", name, res.canonical_request, want_creq);
  check_str("string to sign", name, res.string_to_sign, want_sts);
  check_str("signature", name, res.signature, want_sig);
  {
    char *a = strstr(signed_req, "Authorization:");
    char *end = a ? strchr(a, '\n') : NULL;
    if (end)
      *end = '\0';
    check_str("Authorization header", name, res.authorization,
              a ? a + strlen("Authorization:") : NULL);
  }
  tide_sigv4_result_free(&res);
done:
  free(context);
  free(request);
  free(want_creq);
  free(want_sts);
  free(want_sig);
  free(signed_req);
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_suite(void) {
  DIR *d = opendir(SUITE);
  struct dirent *e;
  char *names[256];
  int n = 0;
  if (!d) {
    fprintf(stderr, "FAIL: %s is missing (run from the source directory)\n", SUITE);
    failures++;
    return 0;
  }
  while ((e = readdir(d)) && n < 256) {
    char path[600];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s/context.json", SUITE, e->d_name);
    if (e->d_name[0] != '.' && stat(path, &st) == 0)
      names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_names);
  for (int i = 0; i < n; i++) {
    run_case(names[i]);
    free(names[i]);
  }
  return n;
}

/* The S3 API reference's worked examples ("Signature Calculations for the Authorization Header:
 * Transferring Payload in a Single Chunk"): S3 signs the path as sent, unnormalised. */
static void s3_example(const char *name, const char *method, const char *path, const char *query,
                       const tide_sigv4_header *extra, size_t nextra, const char *payload,
                       const char *want_sig) {
  tide_sigv4_header headers[8];
  size_t nh = 0;
  tide_sigv4_request req;
  tide_sigv4_credentials cred = {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                 "us-east-1", "s3"};
  tide_sigv4_result res;
  tide_error err = {0};
  headers[nh++] = (tide_sigv4_header){"Host", "examplebucket.s3.amazonaws.com"};
  headers[nh++] = (tide_sigv4_header){"x-amz-date", "20130524T000000Z"};
  headers[nh++] = (tide_sigv4_header){"x-amz-content-sha256", payload};
  for (size_t i = 0; i < nextra; i++)
    headers[nh++] = extra[i];
  req = (tide_sigv4_request){method, path, query, headers, nh, payload, "20130524T000000Z", 0};
  if (tide_sigv4_sign(&req, &cred, &res, &err) != 0) {
    checks++;
    failures++;
    fprintf(stderr, "FAIL %s: %s\n", name, err.message);
    return;
  }
  check_str("signature", name, res.signature, want_sig);
  tide_sigv4_result_free(&res);
}

static void run_s3_examples(void) {
  const char *empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  const tide_sigv4_header range[] = {{"Range", "bytes=0-9"}};
  const tide_sigv4_header put[] = {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                                   {"x-amz-storage-class", "REDUCED_REDUNDANCY"}};
  char body_hash[65];
  tide_sigv4_sha256_hex("Welcome to Amazon S3.", 21, body_hash);
  check_str("payload hash", "s3 PUT object", body_hash,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  s3_example("s3 GET object", "GET", "/test.txt", NULL, range, 1, empty,
             "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  s3_example("s3 PUT object", "PUT", "/test$file.text", NULL, put, 2, body_hash,
             "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
  s3_example("s3 GET bucket lifecycle", "GET", "/", "lifecycle", NULL, 0, empty,
             "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
  s3_example("s3 GET bucket (list objects)", "GET", "/", "max-keys=2&prefix=J", NULL, 0, empty,
             "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
  /* query order must not matter: the signer sorts */
  s3_example("s3 GET bucket, unsorted query", "GET", "/", "prefix=J&max-keys=2", NULL, 0, empty,
             "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void run_helpers(void) {
  char *e = tide_sigv4_uri_encode("backups/2026 11/a+b~c$.dump", 1);
  check_str("uri_encode keep slash", "helpers", e, "backups/2026%2011/a%2Bb~c%24.dump");
  free(e);
  e = tide_sigv4_uri_encode("a/b", 0);
  check_str("uri_encode no slash", "helpers", e, "a%2Fb");
  free(e);
}

int main(void) {
  int cases = run_suite();
  run_s3_examples();
  run_helpers();
  if (cases < 30) {
    fprintf(stderr, "FAIL: only %d suite cases found\n", cases);
    failures++;
  }
  printf("test_sigv4: %d suite cases, %d checks, %d failures\n", cases, checks, failures);
  return failures ? 1 : 0;
}
