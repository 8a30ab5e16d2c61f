/* s3xml.c: the S3 documents tide reads and writes: values of an <Error>, an UploadId, a
 * ListObjectsV2 page, a ListMultipartUploads page, and the CompleteMultipartUpload body. Only
 * what S3 sends is read (no DTDs, no CDATA): bounded searches, the five predefined entities. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3xml.h"

/* The first occurrence of s that lies wholly inside [p, end), or NULL. */
static const char *find_in(const char *p, const char *end, const char *s) {
  size_t n = strlen(s);
  while ((size_t)(end - p) >= n) {
    if (!(p = memchr(p, s[0], (size_t)(end - p) - n + 1)))
      return NULL;
    if (memcmp(p, s, n) == 0)
      return p;
    p++;
  }
  return NULL;
}

/* The first <tag>text</tag> wholly inside [p, end): the raw text is [*a, *b), *after points past
 * the closing tag. Bounded so that a lookup inside one element cannot run on into the next. */
static int xml_find(const char *p, const char *end, const char *tag, const char **a, const char **b,
                    const char **after) {
  char open[64], close[64];
  snprintf(open, sizeof open, "<%s>", tag);
  snprintf(close, sizeof close, "</%s>", tag);
  if (!(p = find_in(p, end, open)))
    return 0;
  *a = p + strlen(open);
  if (!(*b = find_in(*a, end, close)))
    return 0;
  if (after)
    *after = *b + strlen(close);
  return 1;
}

/* Unescapes the five predefined entities of [a, b) into out (outsz bytes, truncated, always
 * terminated when outsz > 0). Returns the full unescaped length, as snprintf does. */
static size_t xml_unescape(const char *a, const char *b, char *out, size_t outsz) {
  static const struct {
    const char *e;
    char c;
  } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
  size_t o = 0;
  for (const char *p = a; p < b; p++) {
    char c = *p;
    for (size_t i = 0; c == '&' && i < sizeof ents / sizeof ents[0]; i++) {
      size_t l = strlen(ents[i].e);
      if ((size_t)(b - p) >= l && strncmp(p, ents[i].e, l) == 0) {
        c = ents[i].c;
        p += l - 1;
        break;
      }
    }
    if (o + 1 < outsz)
      out[o] = c;
    o++;
  }
  if (outsz > 0)
    out[o < outsz ? o : outsz - 1] = '\0';
  return o;
}

int tide_xml_value(const char *xml, const char *tag, char *out, size_t outsz, const char **from) {
  const char *start, *a, *b, *after;
  if (!xml)
    return 0;
  start = from && *from ? *from : xml;
  if (!xml_find(start, start + strlen(start), tag, &a, &b, &after))
    return 0;
  xml_unescape(a, b, out, outsz);
  if (from)
    *from = after;
  return 1;
}

/* Seconds since the epoch of an S3 time, "2026-11-24T10:18:34.000Z" (UTC); 0 when [a, b) is
 * not one. Days from the civil date as in Howard Hinnant's algorithm: no timegm needed. */
static long long parse_time(const char *a, const char *b) {
  int y, mo, d, h, mi, sec, used = 0;
  char text[40];
  long long era, yoe, doy, doe;
  if (b - a >= (long)sizeof text)
    return 0;
  memcpy(text, a, (size_t)(b - a));
  text[b - a] = '\0';
  if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &used) != 6 ||
      used != 19 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 ||
      y < 1970)
    return 0;
  y -= mo <= 2;
  era = y / 400;
  yoe = y - era * 400;
  doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return (era * 146097 + doe - 719468) * 86400 + h * 3600 + mi * 60 + sec;
}

/* A <Size>: decimal digits only, no sign, no overflow (strtoull would take "-1" and " 7"). */
static int parse_size(const char *a, const char *b, unsigned long long *size) {
  unsigned long long v = 0;
  if (a == b)
    return 0;
  for (const char *p = a; p < b; p++) {
    if (*p < '0' || *p > '9' || v > (ULLONG_MAX - (unsigned)(*p - '0')) / 10)
      return 0;
    v = v * 10 + (unsigned)(*p - '0');
  }
  *size = v;
  return 1;
}

int tide_s3_parse_list(const char *body, const char *prefix, tide_dest_entry **out, size_t *n,
                       char *token, size_t tokensz, tide_error *err) {
  tide_dest_entries es = {0};
  const char *end, *from, *a, *b;
  size_t plen = strlen(prefix);
  char truncated[16] = "false";
  int rc = 0;
  *out = NULL;
  *n = 0;
  if (tokensz > 0)
    token[0] = '\0';
  if (!body)
    return 0;
  end = body + strlen(body);
  for (from = body; (from = find_in(from, end, "<Contents>"));) {
    const char *close = find_in(from, end, "</Contents>"), *sa, *sb;
    unsigned long long size;
    if (!close)
      break;
    /* Key and Size of this element only; an element lacking either (or with a Size that is not
     * a number) is skipped rather than completed from the next one */
    if (xml_find(from, close, "Key", &a, &b, NULL) &&
        xml_find(from, close, "Size", &sa, &sb, NULL) && parse_size(sa, sb, &size)) {
      size_t len = xml_unescape(a, b, NULL, 0);
      char *key = malloc(len + 1);
      long long mtime =
          xml_find(from, close, "LastModified", &sa, &sb, NULL) ? parse_time(sa, sb) : 0;
      if (!key)
        goto oom;
      xml_unescape(a, b, key, len + 1);
      if (strncmp(key, prefix, plen) != 0) {
        free(key);
      } else {
        memmove(key, key + plen, len - plen + 1);
        if (tide_dest_entries_take(&es, &(tide_dest_entry){key, size, mtime}, 1) != 0) {
          free(key);
          goto oom;
        }
      }
    }
    from = close + strlen("</Contents>");
  }
  tide_xml_value(body, "IsTruncated", truncated, sizeof truncated, NULL);
  /* a missing or empty token ends the listing: asking again without one would restart it */
  if (strcmp(truncated, "true") == 0 &&
      xml_find(body, end, "NextContinuationToken", &a, &b, NULL) && a < b) {
    if (xml_unescape(a, b, token, tokensz) >= tokensz) {
      tide_error_set(err, NULL, "the continuation token is longer than %zu bytes",
                     tokensz ? tokensz - 1 : 0);
      goto fail;
    }
    rc = 1;
  }
  *out = es.e;
  *n = es.n;
  return rc;
oom:
  tide_error_set(err, NULL, "out of memory");
fail:
  tide_dest_entries_free(es.e, es.n);
  if (tokensz > 0)
    token[0] = '\0';
  return -1;
}

int tide_s3_next_upload(const char **from, const char *end, char *key, size_t keysz, char *id,
                        size_t idsz, long long *initiated) {
  const char *p = *from, *close_tag, *a, *b;
  char when[64];
  for (; p && (p = find_in(p, end, "<Upload>")); p = close_tag) {
    if (!(close_tag = find_in(p, end, "</Upload>")))
      break;
    if (!xml_find(p, close_tag, "Key", &a, &b, NULL) || xml_unescape(a, b, key, keysz) >= keysz ||
        !xml_find(p, close_tag, "UploadId", &a, &b, NULL) || xml_unescape(a, b, id, idsz) >= idsz ||
        !xml_find(p, close_tag, "Initiated", &a, &b, NULL) ||
        xml_unescape(a, b, when, sizeof when) >= sizeof when)
      continue;
    *initiated = parse_time(when, when + strlen(when));
    *from = close_tag;
    return 1;
  }
  *from = NULL;
  return 0;
}

int tide_s3_complete_xml(tide_buf *xml, char (*etags)[128], unsigned long long nparts) {
  tide_buf_str(xml, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
  for (unsigned long long i = 0; i < nparts; i++) {
    char p[256];
    snprintf(p, sizeof p, "<Part><PartNumber>%llu</PartNumber><ETag>\"%s\"</ETag></Part>", i + 1,
             etags[i]);
    tide_buf_str(xml, p);
  }
  return tide_buf_str(xml, "</CompleteMultipartUpload>");
}
