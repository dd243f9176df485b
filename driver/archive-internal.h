/* Private helpers shared by the archive-*.c files.  */
#ifndef GR_ARCHIVE_INTERNAL_H
#define GR_ARCHIVE_INTERNAL_H

#include "archive.h"
#include "utils.h"

#include <sys/stat.h>

/* The names in directory DIRFD (without "." and ".."), sorted bytewise as
   Go's filepath.Walk visits them.  Free with gr_archive_free_names.  */
int gr_archive_read_names (char ***names, size_t *n, int dirfd, gr_error_t *err);
void gr_archive_free_names (char **names, size_t n);

/* A {"Path","Kind"} object; bytes that are not UTF-8 become U+FFFD, as
   Go's encoding/json writes them.  */
json_t *gr_archive_change_new (const char *path, size_t len, enum gr_change_kind kind);

/* moby's sameFsTimeSpec: equal, or the same second with either side
   without nanoseconds (tar keeps whole seconds).  */
static inline bool
gr_archive_same_fs_time (const struct timespec *a, const struct timespec *b)
{
  return a->tv_sec == b->tv_sec && (a->tv_nsec == b->tv_nsec || a->tv_nsec == 0 || b->tv_nsec == 0);
}

/* Deep trees without running out of fds: a walker at depth DEPTH (the
   layer root is 0) about to walk its open subdirectory CHILDFD calls
   gr_archive_walk_leave (&PARENTFD, DEPTH) first and, when the child is
   done, gr_archive_walk_back (&PARENTFD, CHILDFD, PARENT_ST).  From depth
   GR_WALK_FD_DEPTH on, the parent's fd is closed meanwhile and reopened
   through the child's "..", checked to be the same directory.  */
#define GR_WALK_FD_DEPTH 64
void gr_archive_walk_leave (int *parentfd, unsigned depth);
int gr_archive_walk_back (int *parentfd, int childfd, const struct stat *parent_st, gr_error_t *err);

#endif
