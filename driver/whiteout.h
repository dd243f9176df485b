/* Whiteouts in both encodings: aufs (`.wh.<name>`, `.wh..wh..opq`, what
   every layer tar carries) and overlayfs (char device 0/0,
   `trusted.overlay.opaque=y`).  */
#ifndef GR_WHITEOUT_H
#define GR_WHITEOUT_H

#include "utils.h"

#include <sys/stat.h>

#define GR_WH_PREFIX ".wh."
#define GR_WH_META_PREFIX ".wh..wh."
#define GR_WH_OPAQUE ".wh..wh..opq"
#define GR_OVL_OPAQUE_XATTR "trusted.overlay.opaque"

/* How a layer directory on disk encodes deletions.  */
enum gr_whiteout_format
{
  GR_WHITEOUT_AUFS,    /* .wh. files, as kernel aufs reads them */
  GR_WHITEOUT_OVERLAY, /* char 0/0 and the opaque xattr, as overlayfs reads them */
  GR_WHITEOUT_DELETE,  /* no whiteouts kept: deletions are applied (vfs) */
};

const char *gr_whiteout_format_name (enum gr_whiteout_format f);
int gr_whiteout_format_parse (const char *name, enum gr_whiteout_format *out, gr_error_t *err);

enum gr_whiteout_kind
{
  GR_WH_NONE,     /* an ordinary entry */
  GR_WH_FILE,     /* deletes the sibling named by *target */
  GR_WH_OPAQUE_DIR, /* the parent directory is opaque */
  GR_WH_INTERNAL, /* .wh..wh.aufs, .wh..wh.orph, .wh..wh.plnk and other .wh..wh. metadata */
};

/* Classify a basename in the aufs/tar encoding.  On GR_WH_FILE, *TARGET
   (if not NULL) points into NAME at the deleted name.  A whiteout whose
   target is empty, ".", ".." or contains '/' is refused.  */
int gr_whiteout_classify_name (const char *name, enum gr_whiteout_kind *kind, const char **target,
                               gr_error_t *err);

/* Is this stat an overlay whiteout (char device 0/0)?  */
bool gr_whiteout_is_overlay_file (const struct stat *st);
/* Is directory DIRFD/NAME (NAME may be "" for DIRFD itself) overlay-opaque?  */
bool gr_whiteout_is_overlay_opaque (int dirfd, const char *name);

/* Create, in directory DIRFD, a whiteout for NAME (a basename) in format
   F: aufs, an empty 0444 file `.wh.NAME`; overlay, a char device 0/0 NAME
   (EEXIST if NAME exists and is not one already); delete, rm -rf NAME
   without following symlinks.  The caller removes NAME first if needed.  */
int gr_whiteout_create (int dirfd, const char *name, enum gr_whiteout_format f, gr_error_t *err);
/* Mark directory DIRFD (as a whole) opaque in format F: aufs, a
   `.wh..wh..opq` file; overlay, the xattr (DIRFD may be O_PATH); delete,
   empty the directory.  */
int gr_whiteout_make_opaque (int dirfd, enum gr_whiteout_format f, gr_error_t *err);

#endif
