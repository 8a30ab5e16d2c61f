/* test_s3xml.c: the S3 response parsing of s3xml.c, without a network: tide_xml_value
 * (entities, truncation, the cursor) and tide_s3_parse_list (one ListObjectsV2 page: elements
 * read on their own, the prefix, the continuation token, the time of each object).
 * spec/fuzz/fuzz_s3xml.c holds the properties; these pin the cases. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "tide.h"
#include "s3xml.h"

static void values(void) {
  const char *err =
      "<Error><Code>SignatureDoesNotMatch</Code>"
      "<Message>a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos; &amp;amp; &bogus; &amp"
      "</Message></Error>";
  const char *etags = "<Part><ETag>&quot;1&quot;</ETag></Part><Part><ETag>&quot;2&quot;</ETag>";
  const char *from = NULL;
  char out[128], small[6], tiny[3];

  CHECK(tide_xml_value(err, "Message", out, sizeof out, NULL) == 1, "Message found");
  CHECK(strcmp(out, "a & b <c> \"d\" 'e' &amp; &bogus; &amp") == 0, "entities: %s", out);
  /* truncated to the buffer, always terminated, an entity counting as its one character */
  CHECK(tide_xml_value(err, "Code", small, sizeof small, NULL) == 1, "Code found");
  CHECK(strcmp(small, "Signa") == 0, "truncated: %s", small);
  CHECK(tide_xml_value("<ETag>&quot;&quot;&quot;</ETag>", "ETag", tiny, sizeof tiny, NULL) == 1 &&
            strcmp(tiny, "\"\"") == 0,
        "truncated after entities: %s", tiny);
  /* not found, or not closed: 0, out untouched */
  strcpy(out, "untouched");
  CHECK(tide_xml_value(err, "UploadId", out, sizeof out, NULL) == 0, "no UploadId");
  CHECK(tide_xml_value("<UploadId>abc", "UploadId", out, sizeof out, NULL) == 0, "unclosed");
  CHECK(strcmp(out, "untouched") == 0, "out written: %s", out);
  /* the cursor moves past each element */
  CHECK(tide_xml_value(etags, "ETag", out, sizeof out, &from) == 1 && strcmp(out, "\"1\"") == 0,
        "first ETag: %s", out);
  CHECK(tide_xml_value(etags, "ETag", out, sizeof out, &from) == 1 && strcmp(out, "\"2\"") == 0,
        "second ETag: %s", out);
  CHECK(tide_xml_value(etags, "ETag", out, sizeof out, &from) == 0, "no third ETag");
}

static void list(void) {
  const char *page = "<ListBucketResult><IsTruncated>true</IsTruncated>"
                     "<Contents><Key>backups/1/app.dump</Key><Size>48213504</Size></Contents>"
                     "<Contents><LastModified>x</LastModified><Size>17</Size></Contents>"
                     "<Contents><Key>backups/2/R&amp;D.dump</Key></Contents>"
                     "<Contents><Key>backups/3/bad</Key><Size>-1</Size></Contents>"
                     "<Contents><Key>other/4</Key><Size>4</Size></Contents>"
                     "<Contents><Key>backups/5/manifest.json</Key><Size>812</Size></Contents>"
                     "<NextContinuationToken>1ue/Gcx+LPR&amp;=</NextContinuationToken>"
                     "</ListBucketResult>";
  tide_dest_entry *e;
  size_t n;
  char token[1024], small[8];
  tide_error err = {{0}, {0}};

  /* a <Contents> without Key or with a bad Size is skipped, not completed from the next one */
  CHECK(tide_s3_parse_list(page, "backups/", &e, &n, token, sizeof token, &err) == 1, "more");
  CHECK(n == 2, "entries: %zu", n);
  if (n == 2) {
    CHECK(strcmp(e[0].name, "1/app.dump") == 0 && e[0].size == 48213504ULL, "first: %s %llu",
          e[0].name, e[0].size);
    CHECK(strcmp(e[1].name, "5/manifest.json") == 0 && e[1].size == 812, "second: %s %llu",
          e[1].name, e[1].size);
  }
  CHECK(strcmp(token, "1ue/Gcx+LPR&=") == 0, "token: %s", token);
  tide_dest_entries_free(e, n);

  /* no prefix: every complete element, the Key unescaped */
  CHECK(tide_s3_parse_list(page, "", &e, &n, token, sizeof token, &err) == 1 && n == 3,
        "entries without a prefix: %zu", n);
  if (n == 3)
    CHECK(strcmp(e[1].name, "other/4") == 0, "other: %s", e[1].name);
  tide_dest_entries_free(e, n);

  /* a token that does not fit fails the page rather than being cut */
  CHECK(tide_s3_parse_list(page, "", &e, &n, small, sizeof small, &err) == -1 && !e && n == 0,
        "small token buffer");
  CHECK(strstr(err.message, "continuation token") != NULL, "message: %s", err.message);

  /* the last page: not truncated, or truncated with an empty token (asking again would loop) */
  CHECK(tide_s3_parse_list("<IsTruncated>false</IsTruncated><NextContinuationToken>t"
                           "</NextContinuationToken>",
                           "", &e, &n, token, sizeof token, &err) == 0 &&
            !token[0] && n == 0,
        "not truncated");
  tide_dest_entries_free(e, n);
  CHECK(tide_s3_parse_list("<IsTruncated>true</IsTruncated><NextContinuationToken>"
                           "</NextContinuationToken>",
                           "", &e, &n, token, sizeof token, &err) == 0,
        "empty token");
  tide_dest_entries_free(e, n);
  CHECK(tide_s3_parse_list(NULL, "", &e, &n, token, sizeof token, &err) == 0 && !e && n == 0,
        "no body");
}

/* LastModified becomes the entry's mtime (seconds since the epoch, UTC); 0 when missing or not
 * a time: the sweep of stale objects must never take a bad date for an old one. */
static void times(void) {
  const char *page = "<Contents><Key>a</Key><LastModified>2026-11-24T10:18:34.000Z</LastModified>"
                     "<Size>1</Size></Contents>"
                     "<Contents><Key>b</Key><Size>1</Size></Contents>"
                     "<Contents><Key>c</Key><LastModified>yesterday</LastModified><Size>1</Size>"
                     "</Contents>"
                     "<Contents><Key>d</Key><LastModified>2024-02-29T23:59:59Z</LastModified>"
                     "<Size>1</Size></Contents>";
  tide_dest_entry *e;
  size_t n;
  char token[16];
  tide_error err = {{0}, {0}};
  CHECK(tide_s3_parse_list(page, "", &e, &n, token, sizeof token, &err) == 0 && n == 4,
        "entries: %zu", n);
  if (n == 4) {
    CHECK(e[0].mtime == 1795515514LL, "a: %lld", e[0].mtime);
    CHECK(e[1].mtime == 0 && e[2].mtime == 0, "b, c: %lld %lld", e[1].mtime, e[2].mtime);
    CHECK(e[3].mtime == 1709251199LL, "d (a leap day): %lld", e[3].mtime);
  }
  tide_dest_entries_free(e, n);
}

int main(void) {
  values();
  list();
  times();
  if (!failures)
    printf("ok: s3 xml\n");
  return failures ? 1 : 0;
}
