/* sigv4.c: AWS Signature Version 4 for S3 requests, signed in tide's own code. Debian 12's
 * libcurl 7.88 CURLOPT_AWS_SIGV4 omits x-amz-content-sha256, does not sort query parameters and
 * signs `?uploads` wrongly, so upload.c builds every Authorization header here. Plain C, no
 * Lua: spec/c/test_sigv4.c checks it against AWS's published test suite. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tide.h"

/* A growable string; every append fails closed (oom set, later appends ignored). */
typedef struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_addlen(sbuf *b, const char *s, size_t n) {
  if (b->oom)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    char *grown;
    while (cap < b->len + n + 1)
      cap *= 2;
    if (!(grown = realloc(b->p, cap))) {
      b->oom = 1;
      return;
    }
    b->p = grown;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_add(sbuf *b, const char *s) {
  sb_addlen(b, s, strlen(s));
}

static void sb_addc(sbuf *b, char c) {
  sb_addlen(b, &c, 1);
}

static int is_unreserved(unsigned char c) {
  return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

static void sb_encode(sbuf *b, const char *s, size_t n, int keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (is_unreserved(c) || (keep_slash && c == '/')) {
      sb_addc(b, (char)c);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      sb_addlen(b, e, 3);
    }
  }
}

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..n) into out (which has room for n bytes); returns the decoded length. */
static size_t decode(const char *s, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < n && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
        (lo = hexval((unsigned char)s[i + 2])) >= 0) {
      out[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      out[o++] = s[i];
    }
  }
  return o;
}

char *tide_sigv4_uri_encode(const char *s, int keep_slash) {
  sbuf b = {0};
  sb_encode(&b, s, strlen(s), keep_slash);
  sb_addlen(&b, "", 0);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  if (!b.p)
    return strdup("");
  return b.p;
}

void tide_sigv4_hex(const unsigned char *md, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[2 * n] = '\0';
}

int tide_sigv4_sha256_hex(const void *data, size_t len, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
    return -1;
  tide_sigv4_hex(md, 32, out);
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
static int canonical_query(const char *query, sbuf *out) {
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
      sbuf k = {0}, v = {0};
      size_t dl;
      eq = memchr(p, '=', len);
      if (n == cap) {
        qparam *grown = realloc(params, (cap = cap ? 2 * cap : 8) * sizeof *params);
        if (!grown)
          goto cleanup;
        params = grown;
      }
      dl = decode(p, eq ? (size_t)(eq - p) : len, tmp);
      sb_encode(&k, tmp, dl, 0);
      sb_addlen(&k, "", 0);
      dl = eq ? decode(eq + 1, len - (size_t)(eq + 1 - p), tmp) : 0;
      sb_encode(&v, tmp, dl, 0);
      sb_addlen(&v, "", 0);
      params[n].key = k.p;
      params[n].value = v.p;
      n++;
      if (k.oom || v.oom)
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
      sb_addc(out, '&');
    sb_add(out, params[i].key);
    sb_addc(out, '=');
    sb_add(out, params[i].value);
  }
  rc = out->oom ? -1 : 0;
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
  sbuf creq = {0}, sts = {0}, auth = {0}, signed_names = {0};
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
  sb_add(&creq, req->method);
  sb_addc(&creq, '\n');
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
  sb_encode(&creq, path, strlen(path), 1);
  sb_addc(&creq, '\n');
  if (canonical_query(req->query, &creq) != 0)
    goto oom;
  sb_addc(&creq, '\n');

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
        sb_addc(&creq, '\n');
        sb_addc(&signed_names, ';');
      }
      sb_add(&creq, lines[i].name);
      sb_addc(&creq, ':');
      sb_add(&signed_names, lines[i].name);
    } else {
      sb_addc(&creq, ',');
    }
    sb_add(&creq, lines[i].value);
  }
  sb_add(&creq, "\n\n");
  sb_add(&creq, signed_names.p ? signed_names.p : "");
  sb_addc(&creq, '\n');
  sb_add(&creq, req->payload_hash ? req->payload_hash : "UNSIGNED-PAYLOAD");
  if (creq.oom || signed_names.oom)
    goto oom;

  /* 2. the string to sign */
  if (tide_sigv4_sha256_hex(creq.p, creq.len, hash) != 0)
    goto crypto;
  sb_add(&sts, "AWS4-HMAC-SHA256\n");
  sb_add(&sts, req->amz_date);
  sb_addc(&sts, '\n');
  sb_add(&sts, scope);
  sb_addc(&sts, '\n');
  sb_add(&sts, hash);

  /* 3. the signing key and the signature */
  {
    sbuf secret = {0};
    int bad;
    sb_add(&secret, "AWS4");
    sb_add(&secret, cred->secret_key);
    bad = secret.oom || hmac_sha256(secret.p, secret.len, date, k) != 0;
    if (secret.p)
      OPENSSL_cleanse(secret.p, secret.len);
    free(secret.p);
    if (bad || hmac_sha256(k, 32, cred->region, k) != 0 ||
        hmac_sha256(k, 32, cred->service, k) != 0 || hmac_sha256(k, 32, "aws4_request", k) != 0)
      goto crypto;
  }
  if (sts.oom)
    goto oom;
  {
    unsigned char sig[32];
    if (hmac_sha256(k, 32, sts.p, sig) != 0)
      goto crypto;
    tide_sigv4_hex(sig, 32, res->signature);
  }
  sb_add(&auth, "AWS4-HMAC-SHA256 Credential=");
  sb_add(&auth, cred->access_key);
  sb_addc(&auth, '/');
  sb_add(&auth, scope);
  sb_add(&auth, ", SignedHeaders=");
  sb_add(&auth, signed_names.p ? signed_names.p : "");
  sb_add(&auth, ", Signature=");
  sb_add(&auth, res->signature);
  if (auth.oom)
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
