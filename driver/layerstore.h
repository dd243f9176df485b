/* dockerd's layer store: `image/<D>/layerdb/sha256/<chainID>/` and the
   push-style layer writer that fills a backend layer from a tar stream.  */
#ifndef GR_LAYERSTORE_H
#define GR_LAYERSTORE_H

#include "graphroot.h"
#include "utils.h"

/* "sha256:" + 64 hex + NUL */
#define GR_DIGEST_LEN 71

/* chainID of DIFF_ID on top of PARENT_CHAIN_ID (NULL or "" for a base
   layer): chain[0] = diffID[0]; chain[n] = "sha256:" +
   hex(sha256(chain[n-1] + " " + diffID[n])).  Fails on an invalid digest.  */
int gr_layer_chain_id (char out[GR_DIGEST_LEN + 1], const char *parent_chain_id, const char *diff_id,
                       gr_error_t *err);

/* One registered layer (the files of layerdb/sha256/<chainID>/).  */
struct gr_layer_info
{
  char chain_id[GR_DIGEST_LEN + 1];
  char diff_id[GR_DIGEST_LEN + 1];
  char parent[GR_DIGEST_LEN + 1];   /* "" for a base layer */
  char cache_id[GR_DIGEST_LEN + 1]; /* the backend's layer ID */
  int64_t size;
};

/* Is CHAIN_ID registered (its layerdb dir holds a valid diff and cache-id
   and the backend layer exists)?  */
bool gr_layerstore_has (struct gr_graphroot *root, const char *chain_id);
/* Read a registered layer.  ENOENT if absent.  */
int gr_layerstore_get (struct gr_graphroot *root, struct gr_layer_info *out, const char *chain_id,
                       gr_error_t *err);
/* Find a registered layer by diffID (any parent): the first chainID whose
   `diff` is DIFF_ID, in *CHAIN_ID_OUT.  Returns 1 if found, 0 if not.  */
int gr_layerstore_find_by_diff_id (struct gr_graphroot *root, char **chain_id_out, const char *diff_id,
                                   gr_error_t *err);

/* A layer being written.  Lifecycle: _new, any number of _write with the
   decompressed tar bytes as they arrive, then _commit; _free (always
   called, NULL-safe) aborts an uncommitted writer: its backend layer is
   removed and nothing is registered.

   Internally: sha256 of the whole stream (the diffID, bytes past the tar
   end blocks included), a streaming tar-split gzip'd into a temp file
   under layerdb/tmp/, and the backend's apply_diff reading a pipe fed by
   _write, in a worker thread, into a new layer with a random cache ID on
   top of the parent's.

   Writers of one root may run in parallel threads.  PARENT_CHAIN_ID must
   be registered already, or be the chainID of another live writer of the
   same root (then, for overlay2/aufs the child is created at once on the
   parent's cache ID; for vfs, whose create copies the parent's files,
   _new waits until the parent is committed).  Commit of a child waits
   for its parent's commit and fails if the parent writer was aborted.  */

/* DIFF_ID: the expected diffID (from the image config's rootfs.diff_ids).
   PARENT_CHAIN_ID: NULL or "" for a base layer.  */
int gr_layer_writer_new (struct gr_layer_writer **out, struct gr_graphroot *root, const char *parent_chain_id,
                         const char *diff_id, gr_error_t *err);
/* The chainID this writer will register (valid from _new on).  */
const char *gr_layer_writer_chain_id (const struct gr_layer_writer *w);
/* Feed decompressed tar bytes.  Fails if the tar is malformed or the
   extraction failed (the extraction error is reported).  */
int gr_layer_writer_write (struct gr_layer_writer *w, const void *buf, size_t len, gr_error_t *err);
/* End of the stream: wait for the extraction, check the diffID (mismatch:
   EINVAL "layer sha256:..: diffID sha256:.. does not match expected .."),
   wait for the parent's commit, then register the layer atomically
   (layerdb/tmp/write-set-XXXX with diff,size,cache-id,parent,
   tar-split.json.gz each fsync'd, one rename, directory fsync).  If the
   chainID got registered meanwhile (another pull), the new backend layer is
   removed and the existing one kept (success).  *CHAIN_ID_OUT (may be
   NULL) receives the chainID.  On failure nothing is registered and the
   backend layer is removed.  */
int gr_layer_writer_commit (struct gr_layer_writer *w, char **chain_id_out, gr_error_t *err);
/* Abort if not committed, release.  NULL-safe.  */
void gr_layer_writer_free (struct gr_layer_writer *w);

/* Convenience: write a whole layer from an uncompressed tar read from
   TAR_FD (to EOF).  */
int gr_layer_register_fd (struct gr_graphroot *root, char **chain_id_out, const char *parent_chain_id,
                          const char *diff_id, int tar_fd, gr_error_t *err);

#endif
