/* fuzz_s3xml.c: libFuzzer target for the S3 response documents s3xml.c reads: tide_xml_value
 * (an <Error>'s Code and Message, an UploadId, an ETag) and tide_s3_parse_list (one
 * ListObjectsV2 page). Every output must be terminated inside its buffer, agree across buffer
 * sizes and be text the input holds; each listed entry must come whole from one <Contents>, and
 * the listing under a prefix must be the full listing filtered and stripped. No Lua needed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tide.h"
#include "s3xml.h"

#define PREFIX "backups/"
#define TOKEN_SIZE 1024 /* s3_list's */

static const char *xml; /* the input, NUL-terminated (stops at its first NUL byte) */
static size_t xml_len;
static int has_entities; /* with a '&' the text need not occur in the input as it was returned */

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "property failed: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  abort();
}

/* Whether <tag>text</tag> occurs in s. */
static int holds(const char *s, const char *tag, const char *text) {
  size_t n = 2 * strlen(tag) + strlen(text) + 6;
  char *want = malloc(n);
  int found;
  if (!want)
    abort();
  snprintf(want, n, "<%s>%s</%s>", tag, text, tag);
  found = strstr(s, want) != NULL;
  free(want);
  return found;
}

/* A lookup with four buffer sizes, and with a cursor; they must agree with each other. */
static void check_value(const char *tag) {
  size_t whole_sz = xml_len + 1, len;
  char *whole = malloc(whole_sz), small[8], one[1] = {'x'};
  char close[64];
  const char *from = NULL;
  int found;
  if (!whole)
    abort();
  memset(whole, 'x', whole_sz);
  memset(small, 'x', sizeof small);
  found = tide_xml_value(xml, tag, whole, whole_sz, NULL);
  if (tide_xml_value(xml, tag, small, sizeof small, NULL) != found ||
      tide_xml_value(xml, tag, one, sizeof one, NULL) != found ||
      tide_xml_value(xml, tag, NULL, 0, NULL) != found ||
      tide_xml_value(xml, tag, whole, whole_sz, &from) != found)
    fail("found with one buffer size and not another", tag);
  if (!found) {
    /* nothing written, and the cursor left alone */
    if (whole[0] != 'x' || small[0] != 'x' || one[0] != 'x' || from)
      fail("a lookup that found nothing wrote something", tag);
    free(whole);
    return;
  }
  /* unescaping only shortens, so a buffer as large as the input never truncates */
  if ((len = strnlen(whole, whole_sz)) >= whole_sz)
    fail("value not terminated", tag);
  if (strnlen(small, sizeof small) >= sizeof small || one[0] != '\0')
    fail("small buffer not terminated", tag);
  if (strlen(small) != (len < sizeof small - 1 ? len : sizeof small - 1) ||
      memcmp(small, whole, strlen(small)) != 0)
    fail("truncated value is not a prefix of the whole one", tag);
  if (!has_entities && !holds(xml, tag, whole))
    fail("value is not the input's text", whole);
  snprintf(close, sizeof close, "</%s>", tag);
  if (!from || from < xml + strlen(close) || from > xml + xml_len ||
      memcmp(from - strlen(close), close, strlen(close)) != 0)
    fail("cursor not left just past the closing tag", tag);
  /* the cursor moves on: a second lookup finds a later element or nothing */
  {
    const char *before = from;
    if (tide_xml_value(xml, tag, whole, whole_sz, &from) && from <= before)
      fail("cursor went backwards", tag);
  }
  free(whole);
}

/* One <Contents>..</Contents> after *at, as a string of its own; NULL when there is none. */
static char *next_element(const char **at) {
  const char *a = strstr(*at, "<Contents>"), *b;
  char *e;
  if (!a || !(b = strstr(a, "</Contents>")))
    return NULL;
  if (!(e = strndup(a, (size_t)(b - a))))
    abort();
  *at = b + strlen("</Contents>");
  return e;
}

/* Every entry of the full listing is the Key and Size of one <Contents>, in document order. */
static void check_entries_in_order(const tide_dest_entry *e, size_t n) {
  const char *at = xml;
  for (size_t i = 0; i < n; i++) {
    char size[32], *el;
    int matched = 0;
    snprintf(size, sizeof size, "%llu</Size>", e[i].size);
    while (!matched && (el = next_element(&at))) {
      matched = holds(el, "Key", e[i].name) && strstr(el, size);
      free(el);
    }
    if (!matched)
      fail("entry is not the Key and Size of one <Contents>, in order", e[i].name);
  }
}

static size_t count(const char *s, const char *what) {
  size_t n = 0;
  for (; (s = strstr(s, what)); s += strlen(what))
    n++;
  return n;
}

static void check_list(void) {
  tide_dest_entry *all, *sub, *tiny;
  size_t nall, nsub, ntiny, j = 0, plen = strlen(PREFIX);
  char token[TOKEN_SIZE], sub_token[TOKEN_SIZE], small_token[8];
  tide_error err;
  int rc;
  memset(&err, 0, sizeof err);
  rc = tide_s3_parse_list(xml, "", &all, &nall, token, sizeof token, &err);
  if (rc < 0) {
    /* only a continuation token too long for the buffer (or no memory) fails a page */
    if (all || nall || token[0] || !err.message[0] || xml_len < sizeof token)
      fail("failed page", err.message);
    return;
  }
  if (rc > 1)
    fail("unknown return code", NULL);
  if (strnlen(token, sizeof token) >= sizeof token)
    fail("token not terminated", NULL);
  if ((rc == 1) != (token[0] != '\0'))
    fail("a token without a next page, or a next page without a token", token);
  if (rc == 1 && !has_entities &&
      (!holds(xml, "NextContinuationToken", token) || !holds(xml, "IsTruncated", "true")))
    fail("token is not the input's NextContinuationToken of a truncated page", token);
  if (nall > count(xml, "<Contents>"))
    fail("more entries than <Contents>", NULL);
  for (size_t i = 0; i < nall; i++)
    if (!all[i].name || strlen(all[i].name) > xml_len)
      fail("entry name missing or too long", NULL);
  if (!has_entities)
    check_entries_in_order(all, nall);

  /* under a prefix: the same page, filtered, the prefix taken off each name */
  if (tide_s3_parse_list(xml, PREFIX, &sub, &nsub, sub_token, sizeof sub_token, &err) != rc ||
      strcmp(sub_token, token) != 0)
    fail("the prefix changed the continuation", NULL);
  for (size_t i = 0; i < nall; i++) {
    if (strncmp(all[i].name, PREFIX, plen) != 0)
      continue;
    if (j >= nsub || strcmp(sub[j].name, all[i].name + plen) != 0 || sub[j].size != all[i].size)
      fail("prefixed listing is not the full one filtered", all[i].name);
    j++;
  }
  if (j != nsub)
    fail("prefixed listing holds entries the full one lacks", NULL);

  /* a token that does not fit fails the page, leaving nothing to free */
  memset(&err, 0, sizeof err);
  rc = tide_s3_parse_list(xml, "", &tiny, &ntiny, small_token, sizeof small_token, &err);
  if (strlen(token) >= sizeof small_token) {
    if (rc != -1 || tiny || ntiny || small_token[0] || !err.message[0])
      fail("a token longer than its buffer did not fail the page", token);
  } else if (rc < 0 || ntiny != nall || strcmp(small_token, token) != 0) {
    fail("a small token buffer changed a page whose token fits", token);
  }
  tide_dest_entries_free(tiny, ntiny);
  tide_dest_entries_free(sub, nsub);
  tide_dest_entries_free(all, nall);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static const char *const tags[] = {"Code", "Message", "UploadId", "ETag"};
  char *copy = malloc(size + 1);
  if (!copy)
    abort();
  memcpy(copy, data, size);
  copy[size] = '\0';
  xml = copy;
  xml_len = strlen(copy);
  has_entities = strchr(copy, '&') != NULL;
  for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
    check_value(tags[i]);
  check_list();
  free(copy);
  return 0;
}
