/* sigv4.c: AWS Signature Version 4 for S3 requests, signed in tide's own code. Debian 12's
 * libcurl 7.88 CURLOPT_AWS_SIGV4 omits x-amz-content-sha256, does not sort query parameters and
 * signs `?uploads` wrongly, so dest_s3.c builds every Authorization header here. Plain C, no
 * Lua: spec/c/test_sigv4.c checks it against AWS's published test suite. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tide.h"
#include "util.h"

static int is_unreserved(unsigned char c) {
  return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

static void buf_encode(tide_buf *b, const char *s, size_t n, int keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (is_unreserved(c) || (keep_slash && c == '/')) {
      tide_buf_addc(b, (char)c);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      tide_buf_add(b, e, 3);
    }
  }
}

/* Percent-decodes s[0..n) into out (which has room for n bytes); returns the decoded length. */
static size_t decode(const char *s, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < n && (hi = tide_hex_digit(s[i + 1])) >= 0 &&
        (lo = tide_hex_digit(s[i + 2])) >= 0) {
      out[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      out[o++] = s[i];
    }
  }
  return o;
}

char *tide_sigv4_uri_encode(const char *s, int keep_slash) {
  tide_buf b = {0};
  buf_encode(&b, s, strlen(s), keep_slash);
  tide_buf_add(&b, "", 0);
  if (b.failed) {
    free(b.p);
    return NULL;
  }
  if (!b.p)
    return strdup("");
  return b.p;
}

int tide_sigv4_sha256_hex(const void *data, size_t len, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
    return -1;
  tide_hex(md, 32, out);
  return 0;
}

void tide_sigv4_amz_date(time_t t, char out[17]) {
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* RFC 3986 dot-segment removal plus collapsing of empty segments, as the generic AWS services
 * (not S3) do before signing. Writes into out (room for strlen(path) + 2). */
static void normalize_path(const char *path, char *out) {
  size_t n = 0;
  const char *p = path;
  int trailing = 0;
  out[n++] = '/';
  while (*p) {
    const char *seg;
    size_t len;
    while (*p == '/')
      p++;
    if (!*p)
      break;
    seg = p;
    while (*p && *p != '/')
      p++;
    len = (size_t)(p - seg);
    trailing = *p == '/';
    if (len == 1 && seg[0] == '.') {
      trailing = 1;
      continue;
    }
    if (len == 2 && seg[0] == '.' && seg[1] == '.') {
      /* drop the last segment written */
      if (n > 1) {
        n--; /* the slash after it */
        while (n > 1 && out[n - 1] != '/')
          n--;
      }
      trailing = 1;
      continue;
    }
    memcpy(out + n, seg, len);
    n += len;
    out[n++] = '/';
  }
  /* out always ends with '/'; drop it unless the path ended in a directory */
  if (n > 1 && !trailing)
    n--;
  out[n] = '\0';
}

typedef struct qparam {
  char *key, *value; /* encoded */
} qparam;

static int cmp_qparam(const void *a, const void *b) {
  const qparam *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  return c ? c : strcmp(x->value, y->value);
}

/* Canonical query string: every name and value decoded, then encoded with the unreserved set,
 * sorted by name then value; a bare name gets an empty value. */
static int canonical_query(const char *query, tide_buf *out) {
  qparam *params = NULL;
  size_t n = 0, cap = 0;
  int rc = -1;
  const char *p = query ? query : "";
  char *tmp = malloc(strlen(p) + 1);
  if (!tmp)
    return -1;
  while (*p) {
    const char *end = strchr(p, '&'), *eq;
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > 0) {
      tide_buf k = {0}, v = {0};
      size_t dl;
      eq = memchr(p, '=', len);
      if (n == cap) {
        qparam *grown = realloc(params, (cap = cap ? 2 * cap : 8) * sizeof *params);
        if (!grown)
          goto cleanup;
        params = grown;
      }
      dl = decode(p, eq ? (size_t)(eq - p) : len, tmp);
      buf_encode(&k, tmp, dl, 0);
      tide_buf_add(&k, "", 0);
      dl = eq ? decode(eq + 1, len - (size_t)(eq + 1 - p), tmp) : 0;
      buf_encode(&v, tmp, dl, 0);
      tide_buf_add(&v, "", 0);
      params[n].key = k.p;
      params[n].value = v.p;
      n++;
      if (k.failed || v.failed)
        goto cleanup;
    }
    p += len;
    if (*p == '&')
      p++;
  }
  if (n) /* qsort(NULL, 0, ...) is undefined */
    qsort(params, n, sizeof *params, cmp_qparam);
  for (size_t i = 0; i < n; i++) {
    if (i)
      tide_buf_addc(out, '&');
    tide_buf_str(out, params[i].key);
    tide_buf_addc(out, '=');
    tide_buf_str(out, params[i].value);
  }
  rc = out->failed ? -1 : 0;
cleanup:
  for (size_t i = 0; i < n; i++) {
    free(params[i].key);
    free(params[i].value);
  }
  free(params);
  free(tmp);
  return rc;
}

typedef struct hline {
  char *name;  /* lowercased */
  char *value; /* trimmed, inner whitespace runs collapsed */
  size_t order;
} hline;

static int cmp_hline(const void *a, const void *b) {
  const hline *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c)
    return c;
  return x->order < y->order ? -1 : x->order > y->order;
}

static char *lower_dup(const char *s) {
  char *d = strdup(s);
  for (char *q = d; q && *q; q++)
    *q = (char)tolower((unsigned char)*q);
  return d;
}

static char *trim_dup(const char *s) {
  size_t n = strlen(s), o = 0;
  char *d = malloc(n + 1);
  int space = 0;
  if (!d)
    return NULL;
  while (*s && isspace((unsigned char)*s))
    s++;
  for (; *s; s++) {
    if (isspace((unsigned char)*s)) {
      space = 1;
      continue;
    }
    if (space && o)
      d[o++] = ' ';
    space = 0;
    d[o++] = *s;
  }
  d[o] = '\0';
  return d;
}

static int hmac_sha256(const void *key, size_t keylen, const char *msg, unsigned char out[32]) {
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &len) ||
      len != 32)
    return -1;
  return 0;
}

void tide_sigv4_result_free(tide_sigv4_result *res) {
  free(res->canonical_request);
  free(res->string_to_sign);
  free(res->authorization);
  free(res->signed_headers);
  res->canonical_request = res->string_to_sign = res->authorization = res->signed_headers = NULL;
}

int tide_sigv4_sign(const tide_sigv4_request *req, const tide_sigv4_credentials *cred,
                    tide_sigv4_result *res, tide_error *err) {
  tide_buf creq = {0}, sts = {0}, auth = {0}, signed_names = {0};
  hline *lines = NULL;
  size_t nlines = 0;
  char *path = NULL;
  char date[9], scope[256], hash[65];
  unsigned char k[32];
  int rc = -1;

  memset(res, 0, sizeof *res);
  if (!req->method || !req->path || !req->amz_date || strlen(req->amz_date) != 16 ||
      !cred->access_key || !cred->secret_key || !cred->region || !cred->service) {
    tide_error_set(
        err, NULL,
        "sigv4: method, path, amz_date, access key, secret, region and service are required");
    return -1;
  }
  memcpy(date, req->amz_date, 8);
  date[8] = '\0';
  if ((size_t)snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", date, cred->region,
                       cred->service) >= sizeof scope) {
    tide_error_set(err, NULL, "sigv4: region or service name too long");
    return -1;
  }

  /* 1. the canonical request */
  tide_buf_str(&creq, req->method);
  tide_buf_addc(&creq, '\n');
  if (req->path[0] != '/') {
    tide_error_set(err, NULL, "sigv4: the path must start with /");
    goto cleanup;
  }
  if (req->normalize_path) {
    if (!(path = malloc(strlen(req->path) + 2)))
      goto oom;
    normalize_path(req->path, path);
  } else if (!(path = strdup(req->path))) {
    goto oom;
  }
  buf_encode(&creq, path, strlen(path), 1);
  tide_buf_addc(&creq, '\n');
  if (canonical_query(req->query, &creq) != 0)
    goto oom;
  tide_buf_addc(&creq, '\n');

  if (req->nheaders && !(lines = calloc(req->nheaders, sizeof *lines)))
    goto oom;
  for (size_t i = 0; i < req->nheaders; i++) {
    lines[i].name = lower_dup(req->headers[i].name);
    lines[i].value = trim_dup(req->headers[i].value ? req->headers[i].value : "");
    lines[i].order = i;
    nlines++;
    if (!lines[i].name || !lines[i].value)
      goto oom;
  }
  if (nlines)
    qsort(lines, nlines, sizeof *lines, cmp_hline);
  for (size_t i = 0; i < nlines; i++) {
    if (i == 0 || strcmp(lines[i].name, lines[i - 1].name) != 0) {
      if (i) {
        tide_buf_addc(&creq, '\n');
        tide_buf_addc(&signed_names, ';');
      }
      tide_buf_str(&creq, lines[i].name);
      tide_buf_addc(&creq, ':');
      tide_buf_str(&signed_names, lines[i].name);
    } else {
      tide_buf_addc(&creq, ',');
    }
    tide_buf_str(&creq, lines[i].value);
  }
  tide_buf_str(&creq, "\n\n");
  tide_buf_str(&creq, signed_names.p ? signed_names.p : "");
  tide_buf_addc(&creq, '\n');
  tide_buf_str(&creq, req->payload_hash ? req->payload_hash : "UNSIGNED-PAYLOAD");
  if (creq.failed || signed_names.failed)
    goto oom;

  /* 2. the string to sign */
  if (tide_sigv4_sha256_hex(creq.p, creq.len, hash) != 0)
    goto crypto;
  tide_buf_str(&sts, "AWS4-HMAC-SHA256\n");
  tide_buf_str(&sts, req->amz_date);
  tide_buf_addc(&sts, '\n');
  tide_buf_str(&sts, scope);
  tide_buf_addc(&sts, '\n');
  tide_buf_str(&sts, hash);

  /* 3. the signing key and the signature */
  {
    tide_buf secret = {0};
    int bad;
    tide_buf_str(&secret, "AWS4");
    tide_buf_str(&secret, cred->secret_key);
    bad = secret.failed || hmac_sha256(secret.p, secret.len, date, k) != 0;
    if (secret.p)
      OPENSSL_cleanse(secret.p, secret.len);
    free(secret.p);
    if (bad || hmac_sha256(k, 32, cred->region, k) != 0 ||
        hmac_sha256(k, 32, cred->service, k) != 0 || hmac_sha256(k, 32, "aws4_request", k) != 0)
      goto crypto;
  }
  if (sts.failed)
    goto oom;
  {
    unsigned char sig[32];
    if (hmac_sha256(k, 32, sts.p, sig) != 0)
      goto crypto;
    tide_hex(sig, 32, res->signature);
  }
  tide_buf_str(&auth, "AWS4-HMAC-SHA256 Credential=");
  tide_buf_str(&auth, cred->access_key);
  tide_buf_addc(&auth, '/');
  tide_buf_str(&auth, scope);
  tide_buf_str(&auth, ", SignedHeaders=");
  tide_buf_str(&auth, signed_names.p ? signed_names.p : "");
  tide_buf_str(&auth, ", Signature=");
  tide_buf_str(&auth, res->signature);
  if (auth.failed)
    goto oom;

  res->canonical_request = creq.p;
  res->string_to_sign = sts.p;
  res->authorization = auth.p;
  res->signed_headers = signed_names.p;
  creq.p = sts.p = auth.p = signed_names.p = NULL;
  rc = 0;
  goto cleanup;
oom:
  tide_error_set(err, NULL, "sigv4: out of memory");
  goto cleanup;
crypto:
  tide_error_set(err, NULL, "sigv4: OpenSSL digest failed");
cleanup:
  OPENSSL_cleanse(k, sizeof k);
  for (size_t i = 0; i < nlines; i++) {
    free(lines[i].name);
    free(lines[i].value);
  }
  free(lines);
  free(path);
  free(creq.p);
  free(sts.p);
  free(auth.p);
  free(signed_names.p);
  return rc;
}
