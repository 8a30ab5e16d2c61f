/* util.h: the small helpers every engine file shares (util.c): hex, base64, a growable buffer,
 * SHA-256 + MD5 of a stream, and a monotonic clock. */
#ifndef TIDE_UTIL_H
#define TIDE_UTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "tide.h"

/* Lowercase hex of n bytes into out (2n + 1 bytes, terminated). */
void tide_hex(const unsigned char *bytes, size_t n, char *out);
/* The value of one hex digit, or -1. */
int tide_hex_digit(char c);
/* n bytes from 2n hex digits; -1 when one is not a hex digit. */
int tide_unhex(const char *hex, unsigned char *out, size_t n);
/* Base64 of n bytes into out (4 * ceil(n / 3) + 1 bytes); returns the length. */
int tide_base64(const unsigned char *in, size_t n, char *out);

/* Seconds on a monotonic clock; tide_sleep sleeps s seconds unless a caught signal arrives. */
double tide_now(void);
void tide_sleep(double s);

/* A growable byte string, always terminated. Appends fail closed: after one failure (out of
 * memory, or past max bytes when max is not 0) failed is set and every later append is ignored;
 * overflow says the failure was max. Free p. */
typedef struct tide_buf {
  char *p;
  size_t len, cap, max;
  int failed, overflow;
} tide_buf;

int tide_buf_add(tide_buf *b, const void *s, size_t n);
int tide_buf_str(tide_buf *b, const char *s);
int tide_buf_addc(tide_buf *b, char c);
void tide_buf_clear(tide_buf *b); /* empty again, keeping the memory and max */

/* SHA-256 and MD5 of one stream, side by side (an archive's two digests in one read). */
typedef struct tide_digest {
  void *sha, *md5; /* EVP_MD_CTX */
} tide_digest;

int tide_digest_init(tide_digest *d); /* -1 when out of memory; tide_digest_free either way */
void tide_digest_update(tide_digest *d, const void *p, size_t n);
/* Ends the stream: sha256_hex (65 bytes) and md5 (raw 16 bytes) and/or md5_hex (33); each may
 * be NULL. */
void tide_digest_final(tide_digest *d, char *sha256_hex, unsigned char *md5, char *md5_hex);
void tide_digest_free(tide_digest *d);
/* The digests of len bytes of fd from off (data NULL), or of data; err on a read failure. */
int tide_digest_range(int fd, const char *data, off_t off, unsigned long long len,
                      char sha256_hex[65], unsigned char md5[16], tide_error *err);

#endif
