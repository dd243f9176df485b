/* File system helpers, all relative to directory fds.  */
#ifndef GR_FSUTIL_H
#define GR_FSUTIL_H

#include "utils.h"

#include <sys/stat.h>
#include <sys/types.h>

/* Durable write: DIRFD/NAME.tmp-XXXX, fsync, rename over NAME, fsync DIRFD.  */
int gr_write_file_atomic (int dirfd, const char *name, const void *data, size_t len, mode_t mode,
                          gr_error_t *err);
/* Read a whole (small) file; *OUT is NUL-terminated, *LEN may be NULL.
   MAX bounds the size (0 = 64 MiB).  */
int gr_read_file_at (char **out, size_t *len, int dirfd, const char *name, size_t max,
                     gr_error_t *err);
/* mkdir -p of a relative PATH under DIRFD; the last component gets MODE,
   intermediate ones 0755 (only when created).  */
int gr_mkdir_p_at (int dirfd, const char *path, mode_t mode, gr_error_t *err);
/* rm -rf DIRFD/NAME, never following symlinks, not crossing mounts.
   A missing NAME is not an error.  */
int gr_rm_rf_at (int dirfd, const char *name, gr_error_t *err);
/* Remove everything inside the directory DIRFD (which stays).  */
int gr_empty_dir_at (int dirfd, gr_error_t *err);
int gr_fsync_dir (int dirfd, gr_error_t *err);
/* Open a directory below DIRFD without following any symlink.  */
int gr_open_dir_at (int dirfd, const char *path, gr_error_t *err);
/* A directory stream on a duplicate of DIRFD (which stays open), rewound.  */
DIR *gr_dir_open_fd (int dirfd, gr_error_t *err);
/* A directory stream on DIRFD/PATH, opened without following symlinks.  */
DIR *gr_dir_open_at (int dirfd, const char *path, gr_error_t *err);
/* openat2 with RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS: PATH is resolved as
   if ROOTFD were "/" (absolute symlinks stay inside).  Falls back to a
   userspace resolver when openat2 is missing.  */
int gr_open_in_root (int rootfd, const char *path, int flags, mode_t mode, gr_error_t *err);
/* Sum of st_size of every non-directory entry below DIRFD, hard links
   counted once (as moby's directory.Size).  */
int gr_dir_size_at (int dirfd, int64_t *out, gr_error_t *err);

#endif
