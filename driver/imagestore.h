/* dockerd's image store: `image/<D>/imagedb/{content,metadata}/sha256/`.  */
#ifndef GR_IMAGESTORE_H
#define GR_IMAGESTORE_H

#include "graphroot.h"
#include "layerstore.h"

/* Store the raw image config CONFIG (LEN bytes) as dockerd's image store
   Create does: content/sha256/<id> (0600, atomic), id = sha256 of the
   bytes.  Checks that it is a JSON object with rootfs.type "layers" and
   that the top layer (the chainID of rootfs.diff_ids) is registered, like
   dockerd.  Writes no lastUpdated (dockerd's pull does not either; see
   gr_imagestore_set_last_updated).  *ID_OUT (may be NULL) receives
   "sha256:<hex>".  Storing an image that exists is a no-op.  */
int gr_imagestore_put (struct gr_graphroot *root, char id_out[GR_DIGEST_LEN + 1], const void *config,
                       size_t len, gr_error_t *err);
bool gr_imagestore_has (struct gr_graphroot *root, const char *image_id);
/* Raw config bytes of IMAGE_ID ("sha256:<hex>" or bare hex).  */
int gr_imagestore_get (struct gr_graphroot *root, char **config, size_t *len, const char *image_id,
                       gr_error_t *err);
/* metadata/sha256/<id>/lastUpdated = NOW as RFC3339Nano (UTC), as
   dockerd's SetLastUpdated (docker load / tag).  */
int gr_imagestore_set_last_updated (struct gr_graphroot *root, const char *image_id, gr_error_t *err);
/* The chainID of the image's top layer from its config (rootfs.diff_ids);
   "" for an image with no layers.  */
int gr_imagestore_top_layer (char out[GR_DIGEST_LEN + 1], const void *config, size_t len, gr_error_t *err);
/* Every image ID in the store ("sha256:<hex>"), as a JSON array.  */
int gr_imagestore_list (struct gr_graphroot *root, json_t **out, gr_error_t *err);

#endif
