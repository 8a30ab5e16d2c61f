/* util.c: the helpers every engine file shares (see util.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "util.h"

void tide_hex(const unsigned char *bytes, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 15];
  }
  out[2 * n] = '\0';
}

int tide_hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int tide_unhex(const char *hex, unsigned char *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int hi = tide_hex_digit(hex[2 * i]), lo = hi < 0 ? -1 : tide_hex_digit(hex[2 * i + 1]);
    if (lo < 0)
      return -1;
    out[i] = (unsigned char)(hi * 16 + lo);
  }
  return 0;
}

int tide_base64(const unsigned char *in, size_t n, char *out) {
  return EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

double tide_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void tide_sleep(double s) {
  struct timespec ts;
  if (s <= 0)
    return;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !tide_interrupted)
    ;
}

/* ---- growable buffer ------------------------------------------------------------------- */

int tide_buf_add(tide_buf *b, const void *s, size_t n) {
  if (b->failed)
    return -1;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    char *grown;
    if (b->max && b->len + n + 1 > b->max) {
      b->failed = b->overflow = 1;
      return -1;
    }
    while (cap < b->len + n + 1)
      cap *= 2;
    if (!(grown = realloc(b->p, cap))) {
      b->failed = 1;
      return -1;
    }
    b->p = grown;
    b->cap = cap;
  }
  if (n)
    memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

int tide_buf_str(tide_buf *b, const char *s) {
  return tide_buf_add(b, s, strlen(s));
}

int tide_buf_addc(tide_buf *b, char c) {
  return tide_buf_add(b, &c, 1);
}

void tide_buf_clear(tide_buf *b) {
  b->len = 0;
  b->failed = b->overflow = 0;
  if (b->p)
    b->p[0] = '\0';
}

/* ---- digests --------------------------------------------------------------------------- */

int tide_digest_init(tide_digest *d) {
  d->sha = EVP_MD_CTX_new();
  d->md5 = EVP_MD_CTX_new();
  if (!d->sha || !d->md5 || !EVP_DigestInit_ex(d->sha, EVP_sha256(), NULL) ||
      !EVP_DigestInit_ex(d->md5, EVP_md5(), NULL))
    return -1;
  return 0;
}

void tide_digest_update(tide_digest *d, const void *p, size_t n) {
  EVP_DigestUpdate(d->sha, p, n);
  EVP_DigestUpdate(d->md5, p, n);
}

void tide_digest_final(tide_digest *d, char *sha256_hex, unsigned char *md5, char *md5_hex) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(d->sha, md, &n);
  if (sha256_hex)
    tide_hex(md, n, sha256_hex);
  EVP_DigestFinal_ex(d->md5, md, &n);
  if (md5)
    memcpy(md5, md, 16);
  if (md5_hex)
    tide_hex(md, n, md5_hex);
}

void tide_digest_free(tide_digest *d) {
  EVP_MD_CTX_free(d->sha);
  EVP_MD_CTX_free(d->md5);
  d->sha = d->md5 = NULL;
}

int tide_digest_range(int fd, const char *data, off_t off, unsigned long long len,
                      char sha256_hex[65], unsigned char md5[16], tide_error *err) {
  tide_digest d;
  unsigned char *buf = data ? NULL : malloc(1 << 20);
  unsigned long long done = 0;
  int rc = -1;
  if (tide_digest_init(&d) != 0 || (!data && !buf)) {
    tide_error_set(err, NULL, "out of memory");
    goto cleanup;
  }
  if (data)
    tide_digest_update(&d, data, (size_t)len);
  while (!data && done < len) {
    size_t want = len - done > (1 << 20) ? (1 << 20) : (size_t)(len - done);
    ssize_t n = pread(fd, buf, want, off + (off_t)done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      tide_error_set(err, NULL, "reading the archive: %s", n < 0 ? strerror(errno) : "file shrank");
      goto cleanup;
    }
    tide_digest_update(&d, buf, (size_t)n);
    done += (unsigned long long)n;
  }
  tide_digest_final(&d, sha256_hex, md5, NULL);
  rc = 0;
cleanup:
  free(buf);
  tide_digest_free(&d);
  return rc;
}
