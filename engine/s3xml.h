/* s3xml.h: the S3 documents tide reads and writes (s3xml.c); plain C, no network. */
#ifndef TIDE_S3XML_H
#define TIDE_S3XML_H

#include <stddef.h>

#include "dest.h"
#include "util.h"

/* The unescaped text of the first <tag>..</tag> from *from (or xml); 1 if found. */
int tide_xml_value(const char *xml, const char *tag, char *out, size_t outsz, const char **from);
/* One ListObjectsV2 page: every <Contents> with a Key starting with prefix (name = the Key without
 * it) and a decimal Size, in order, into *out / *n (free with tide_dest_entries_free). Returns
 * 1 with the NextContinuationToken in token when another page follows, 0 on the last page (token
 * ""), -1 with err (nothing to free) when out of memory or the token does not fit tokensz. */
int tide_s3_parse_list(const char *body, const char *prefix, tide_dest_entry **out, size_t *n,
                       char *token, size_t tokensz, tide_error *err);
/* The next <Upload> of a ListMultipartUploads page in [*from, end) with a Key, an UploadId and
 * an Initiated that fit (others are skipped): 1 with *from moved past it, 0 when none is left. */
int tide_s3_next_upload(const char **from, const char *end, char *key, size_t keysz, char *id,
                        size_t idsz, long long *initiated);
/* The CompleteMultipartUpload body for nparts parts of these ETags; -1 when out of memory. */
int tide_s3_complete_xml(tide_buf *xml, char (*etags)[128], unsigned long long nparts);

#endif
