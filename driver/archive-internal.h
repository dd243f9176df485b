/* Private helpers shared by the archive-*.c files.  */
#ifndef GR_ARCHIVE_INTERNAL_H
#define GR_ARCHIVE_INTERNAL_H

#include "utils.h"

/* The names in directory DIRFD (without "." and ".."), sorted bytewise as
   Go's filepath.Walk visits them.  Free with gr_archive_free_names.  */
int gr_archive_read_names (char ***names, size_t *n, int dirfd, gr_error_t *err);
void gr_archive_free_names (char **names, size_t n);

#endif
