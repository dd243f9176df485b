/* Layer tars: apply (extract a layer tar into a layer directory) and diff
   (a tar of one layer directory's own changes).  */
#ifndef GR_ARCHIVE_H
#define GR_ARCHIVE_H

#include "utils.h"
#include "whiteout.h"

#include <jansson.h>

struct gr_apply_opts
{
  enum gr_whiteout_format whiteouts; /* how the target dir stores deletions */
  /* Mode of the parent directories a tar does not list, which moby makes
     itself: 0755 in archive.Unpack (overlay2 with native diff, aufs), 0600
     in archive.UnpackLayer (vfs; overlay2 with naive diff).  0: the
     extractor's default.  */
  mode_t implicit_dir_mode;
};

/* Read an uncompressed tar stream from TAR_FD (to EOF; bytes after the end
   blocks are drained) and write it into the layer directory LAYER_DIRFD.
   Paths resolve as if LAYER_DIRFD were "/" (absolute symlinks stay inside);
   every breakout is refused (names with `..` or a leading `/`, symlinks
   whose target leaves the layer lexically, whiteouts through symlinks,
   hardlinks to directories or outside).  Whiteouts: aufs keeps the `.wh.`
   entries as they are, overlay converts them, delete applies them (opaque:
   removes what this tar did not create).  `.wh..wh.*` aufs internals are
   skipped.  Non-ASCII names keep their raw bytes whatever the locale.
   Runs as root.  On failure the directory may hold a partial result:
   callers empty it; the stream is then not drained.  */
int gr_archive_apply (int layer_dirfd, int tar_fd, const struct gr_apply_opts *opts,
                      gr_error_t *err);

/* Write to OUT_FD an uncompressed tar of the layer directory LAYER_DIRFD
   (its own files; whiteouts in format F become `.wh.` entries; aufs
   internals are left out), as moby's archive.TarWithOptions would.  */
int gr_archive_diff (int out_fd, int layer_dirfd, enum gr_whiteout_format f, gr_error_t *err);

enum gr_change_kind
{
  GR_CHANGE_MODIFY = 0,
  GR_CHANGE_ADD = 1,
  GR_CHANGE_DELETE = 2,
};

/* `docker diff` of the layer directory LAYER_DIRFD over its lower layer
   directories LOWER_FDS (N_LOWERS of them, nearest first; NULL if none),
   all with whiteouts in format F: *OUT becomes a new JSON array of
   {"Path":"/a","Kind":N} (gr_change_kind; bytes of a path that are not
   UTF-8 become U+FFFD).  The same list as dockerd's naive diff
   (archive.ChangesDirs of the mounted layer against its mounted parent),
   which is what `docker diff` shows on the built-in overlay2 of Docker
   20.10, computed from the layer directories without mounting: only real
   changes (a file copied up unchanged is not one), whiteouts of what is
   there, the lower entries an opaque directory hides; in walk order
   (bytewise sorted, depth first; a directory's Deletes after its other
   entries).  On failure *OUT is left alone.  */
int gr_archive_changes_merged (json_t **out, int layer_dirfd, const int *lower_fds, size_t n_lowers,
                               enum gr_whiteout_format f, gr_error_t *err);

#endif
