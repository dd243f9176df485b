/* libgraphroot basics: errors, allocation, cleanup attributes, growable buffers.  */
#ifndef GR_UTILS_H
#define GR_UTILS_H

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define GR_PRINTF(a, b) __attribute__ ((format (printf, a, b)))
#define GR_UNUSED __attribute__ ((unused))

/* An error: the errno it stems from (0 if none) and a one-line message.
   Functions that can fail take `gr_error_t *err` last; on failure they fill
   it and return a negative value (or NULL).  The caller owns the error and
   must release it with gr_error_release().  */
struct gr_error_s
{
  int status;
  char *msg;
};
typedef struct gr_error_s *gr_error_t;

int gr_make_error (gr_error_t *err, int status, const char *fmt, ...) GR_PRINTF (3, 4);
/* Prefix the message of *ERR with context: "context: old message".  Returns
   the same negative value as gr_make_error.  */
int gr_error_wrap (gr_error_t *err, const char *fmt, ...) GR_PRINTF (2, 3);
int gr_error_status (const gr_error_t *err);
const char *gr_error_msg (const gr_error_t *err);
void gr_error_release (gr_error_t *err);

/* Allocation never fails: OOM aborts.  */
void *xmalloc (size_t size);
void *xzalloc (size_t size);
void *xrealloc (void *ptr, size_t size);
char *xstrdup (const char *s);
char *xstrndup (const char *s, size_t n);
char *xasprintf (const char *fmt, ...) GR_PRINTF (1, 2);

/* Cleanup attributes.  */
static inline void
gr_cleanup_freep (void *p)
{
  free (*(void **) p);
}
static inline void
gr_cleanup_closep (int *fd)
{
  if (*fd >= 0)
    {
      int saved = errno;
      close (*fd);
      errno = saved;
    }
}
static inline void
gr_cleanup_dirp (DIR **d)
{
  if (*d)
    closedir (*d);
}
static inline void
gr_cleanup_filep (FILE **f)
{
  if (*f)
    fclose (*f);
}
static inline void
gr_cleanup_errorp (gr_error_t *err)
{
  gr_error_release (err);
}
#define cleanup_free __attribute__ ((cleanup (gr_cleanup_freep)))
#define cleanup_close __attribute__ ((cleanup (gr_cleanup_closep)))
#define cleanup_dir __attribute__ ((cleanup (gr_cleanup_dirp)))
#define cleanup_file __attribute__ ((cleanup (gr_cleanup_filep)))
#define cleanup_error __attribute__ ((cleanup (gr_cleanup_errorp)))

/* Take ownership out of a cleanup variable.  */
#define gr_steal(p)                                                                                \
  ({                                                                                               \
    __typeof__ (p) _tmp = (p);                                                                     \
    (p) = NULL;                                                                                    \
    _tmp;                                                                                          \
  })
#define gr_steal_fd(fd)                                                                            \
  ({                                                                                               \
    int _tmp = (fd);                                                                               \
    (fd) = -1;                                                                                     \
    _tmp;                                                                                          \
  })

/* A growable, always NUL-terminated byte buffer.  */
struct gr_buf
{
  char *data;
  size_t len;
  size_t cap;
};
void gr_buf_reserve (struct gr_buf *b, size_t extra);
void gr_buf_append (struct gr_buf *b, const void *data, size_t len);
void gr_buf_puts (struct gr_buf *b, const char *s);
void gr_buf_printf (struct gr_buf *b, const char *fmt, ...) GR_PRINTF (2, 3);
void gr_buf_reset (struct gr_buf *b);
/* Hand out the data (never NULL) and reset B.  */
char *gr_buf_steal (struct gr_buf *b);
void gr_buf_free (struct gr_buf *b);
static inline void
gr_cleanup_bufp (struct gr_buf *b)
{
  gr_buf_free (b);
}
#define cleanup_buf __attribute__ ((cleanup (gr_cleanup_bufp)))

/* Layer IDs as dockerd sends them: [0-9a-f]+ with an optional "-init"
   suffix; we accept [A-Za-z0-9_.-]+ without leading '.', bounded to 128
   chars, so nothing can name a path outside its directory.  */
int gr_id_validate (const char *id, gr_error_t *err);

/* Write all of BUF to FD, retrying on EINTR and short writes.  */
int gr_write_all (int fd, const void *buf, size_t len, gr_error_t *err);

#endif
