/* sha256 digests ("sha256:<64 hex>") and random IDs.  */
#ifndef GR_DIGEST_H
#define GR_DIGEST_H

#include "utils.h"

#define GR_SHA256_HEX_LEN 64

struct gr_sha256;
struct gr_sha256 *gr_sha256_new (void);
void gr_sha256_update (struct gr_sha256 *h, const void *data, size_t len);
/* Write 64 hex chars + NUL into HEX and free H.  */
void gr_sha256_final (struct gr_sha256 *h, char hex[GR_SHA256_HEX_LEN + 1]);
void gr_sha256_free (struct gr_sha256 *h);
void gr_sha256_hex (const void *data, size_t len, char hex[GR_SHA256_HEX_LEN + 1]);

/* Is S "sha256:" followed by 64 lowercase hex chars?  */
bool gr_digest_valid (const char *s);
bool gr_hex64_valid (const char *s);
/* 64 random lowercase hex chars (as dockerd's stringid.GenerateRandomID).  */
int gr_random_id (char out[GR_SHA256_HEX_LEN + 1], gr_error_t *err);

#endif
