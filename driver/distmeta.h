/* dockerd's distribution metadata: `image/<D>/distribution/`
   diffid-by-digest/sha256/<blob hex> = "sha256:<diffID>" and
   v2metadata-by-diffid/sha256/<diffID hex> = JSON array of
   {"Digest","SourceRepository","HMAC"}.  */
#ifndef GR_DISTMETA_H
#define GR_DISTMETA_H

#include "graphroot.h"

#include <jansson.h>

/* Record that blob BLOB_DIGEST (compressed, as in the manifest) of
   repository SOURCE_REPO (normalized, e.g. "docker.io/library/ubuntu")
   has diffID DIFF_ID, as dockerd's V2MetadataService.Add: the entry is
   moved to the end of the array (deduplicated), at most 50 kept, HMAC "".  */
int gr_distmeta_add (struct gr_graphroot *root, const char *blob_digest, const char *diff_id,
                     const char *source_repo, gr_error_t *err);
/* diffID of a blob.  Returns 1 and *DIFF_ID if known, 0 if not.  */
int gr_distmeta_diff_id_by_digest (struct gr_graphroot *root, char **diff_id, const char *blob_digest,
                                   gr_error_t *err);
/* The v2metadata array of DIFF_ID (an empty array if none).  */
int gr_distmeta_by_diff_id (struct gr_graphroot *root, json_t **out, const char *diff_id, gr_error_t *err);

#endif
